"""`engram docs`: the AsyncAPI documents (one per service and one for all of engram),
exported to a folder or served over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from services.runtime.cli_env import console, fail, services

docs_cli = typer.Typer(
    no_args_is_help=True,
    help="The AsyncAPI documents: one per service and `engram` for all of them.",
)


def _documents(ctx: typer.Context) -> dict[str, dict[str, Any]]:
    from services.runtime.docs_bundle import ConflictingDeclarations, all_documents

    try:
        return all_documents(services(ctx))
    except ConflictingDeclarations as exc:
        fail(str(exc))
        raise  # fail exits; this keeps the type checker sure


@docs_cli.command()
def export(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Folder to write <name>.asyncapi.json into.")],
) -> None:
    """Write every AsyncAPI document into FOLDER."""
    from services.runtime.docs_bundle import export as write

    try:
        written = write(_documents(ctx), folder)
    except OSError as exc:
        fail(f"cannot write into {folder}: {exc.strerror or exc}")
        return
    console.print(f"wrote {len(written)} AsyncAPI documents to {folder}/")


@docs_cli.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free one).")] = 8090,
) -> None:
    """Serve the AsyncAPI documents over HTTP until Ctrl-C."""
    from services.runtime.docs_bundle import DocsServer

    documents = _documents(ctx)
    try:
        server = DocsServer(documents, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port")
        return
    address = f"http://{host}:{server.port}/"
    console.print(f"serving {len(documents)} AsyncAPI documents on {address} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()
