"""The AsyncAPI documents of a deployment: one per service and one for all of engram,
written to a folder (``engram docs export``) or served over HTTP (``engram docs serve``).

The combined document is the union of the services' documents: their channels,
operations, messages and schemas are keyed so that two services never claim the same
key for different things (a consumer's channel is ``<service>:<subject>``); a key two
services define differently is a bug in a declaration, and building the union says which.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from services.runtime.docs import MSG_ID_RULE, asyncapi_document
from services.runtime.spec import Catalog

COMBINED = "engram"
SECTIONS = (("channels",), ("operations",), ("components", "messages"), ("components", "schemas"))


class ConflictingDeclarations(ValueError):
    """Two services' documents define one key differently."""


def service_documents(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Each service's document, from its worker app (never started)."""
    from services.runtime.service import create_worker

    documents: dict[str, dict[str, Any]] = {}
    for spec in catalog:
        app, _ = create_worker(spec)
        documents[spec.name] = asyncapi_document(app)
    return documents


def combined_document(documents: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """One document for every subject of every service."""
    first = next(iter(documents.values()))
    combined: dict[str, Any] = {
        "asyncapi": first["asyncapi"],
        "defaultContentType": first.get("defaultContentType", "application/json"),
        "info": {
            "title": "engram",
            "version": first["info"]["version"],
            "description": "Every subject engram's workers ("
            + ", ".join(documents)
            + ") consume, publish or answer.\n\n"
            + MSG_ID_RULE,
        },
        "servers": first["servers"],
    }
    for service, document in documents.items():
        for path in SECTIONS:
            source = _section(document, path)
            target = _section(combined, path)
            for key, value in source.items():
                if key in target and target[key] != value:
                    where = "/".join((*path, key))
                    raise ConflictingDeclarations(
                        f"{service} declares {where} differently from another service"
                    )
                target[key] = value
    return combined


def all_documents(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """``engram`` (combined) first, then one per service, by name."""
    documents = service_documents(catalog)
    return {COMBINED: combined_document(documents), **documents}


def export(documents: Mapping[str, dict[str, Any]], folder: Path) -> list[Path]:
    """Write ``<name>.asyncapi.json`` for each document; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in documents.items():
        path = folder / f"{name}.asyncapi.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written


class DocsServer:
    """Serves the documents: ``/`` lists them, ``/<name>.asyncapi.json`` is one."""

    def __init__(self, documents: Mapping[str, dict[str, Any]], host: str, port: int) -> None:
        bodies = {
            f"/{name}.asyncapi.json": json.dumps(document, indent=2).encode()
            for name, document in documents.items()
        }
        bodies["/"] = _index(list(documents)).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = bodies.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(404, "no such document; see /")
                    return
                kind = "text/html" if self.path == "/" else "application/json"
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a docs page needs no access log

        self.server = ThreadingHTTPServer((host, port), Handler)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests); ``stop`` ends it."""
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _index(names: list[str]) -> str:
    items = "\n".join(
        f'<li><a href="/{html.escape(n)}.asyncapi.json">{html.escape(n)}</a></li>' for n in names
    )
    return (
        "<!doctype html><meta charset=utf-8><title>engram AsyncAPI</title>"
        f"<h1>engram AsyncAPI documents</h1><ul>\n{items}\n</ul>"
        "<p>AsyncAPI 3.0 JSON; open one in AsyncAPI Studio or any AsyncAPI tool.</p>\n"
    )


def _section(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    found = document
    for key in path:
        found = found.setdefault(key, {})
    return found
