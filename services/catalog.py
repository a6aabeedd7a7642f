"""The composition root: the services of engram, in start order. Adding a service is one
package with a ``spec.py`` and one line here; the runtime iterates over this catalog and
names no service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from faststream import FastStream

from services.audit.spec import SPEC as AUDIT
from services.checkpointer.spec import SPEC as CHECKPOINTER
from services.context.spec import SPEC as CONTEXT
from services.embedder.spec import SPEC as EMBEDDER
from services.ingest.spec import SPEC as INGEST
from services.memory.spec import SPEC as MEMORY
from services.runtime import cli, service, worker
from services.runtime import migrate as migrations
from services.runtime.spec import Catalog

SERVICES = Catalog((INGEST, EMBEDDER, MEMORY, CHECKPOINTER, AUDIT, CONTEXT))


def main() -> None:
    """The `engram` command."""
    cli.main(SERVICES)


async def migrate(
    dsn: str,
    services: Sequence[str] | None = None,
    *,
    root: Path = migrations.SQL_ROOT,
    progress: migrations.Progress | None = None,
    passwords: Mapping[str, str] | None = None,
) -> list[str]:
    """Migrate the named services' schemas (default: all), as `engram migrate` does."""
    return await migrations.migrate(
        dsn, SERVICES.schemas(services), root=root, progress=progress, passwords=passwords
    )


def create_worker(name: str, **settings: Any) -> tuple[FastStream, worker.Worker]:
    """A service's app and worker state by name; ``settings`` win over the environment."""
    return service.create_worker(SERVICES.get(name), **settings)
