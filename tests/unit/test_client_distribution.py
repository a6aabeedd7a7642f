"""The client distribution (client/, `engram-bus-client`) installs without the server:
its requirements name no heavy or server-side package, and importing its packages loads
none of them. The README's install command installs it; these tests read what pip
installed (importlib.metadata), not the source tree."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIST = "engram-bus-client"
ALLOWED = {"pydantic", "nats-py"}  # the base install: contracts (pydantic) + the bus
FORBIDDEN = {"torch", "asyncpg", "sentence-transformers", "faststream", "transformers"}
FORBIDDEN_MODULES = ("torch", "asyncpg", "sentence_transformers", "faststream", "services")


def name_of(requirement: str) -> str:
    """The normalized project name of a requirement string (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_installed_client_requires_only_pydantic_and_nats() -> None:
    requires = metadata.requires(DIST) or []
    base = [r for r in requires if "extra ==" not in r.replace('"', "").replace("'", "")]
    assert {name_of(r) for r in base} == ALLOWED, base
    assert not {name_of(r) for r in requires} & FORBIDDEN, requires


def test_server_requires_the_client_of_its_own_checkout() -> None:
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [r for r in server["dependencies"] if name_of(r) == DIST]
    assert pins == [f"{DIST}=={client['version']}"]
    assert metadata.version(DIST) == client["version"]


def test_importing_the_client_loads_no_server_code() -> None:
    probe = (
        "import importlib, json, pkgutil, sys\n"
        "import contracts, engram_client, engram_client.sync\n"
        "for m in pkgutil.iter_modules(contracts.__path__):\n"
        "    importlib.import_module('contracts.' + m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in FORBIDDEN_MODULES]
    assert heavy == []
    assert "contracts.registry" in loaded  # the probe did import every contract module
