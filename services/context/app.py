"""The context worker's parts: the query.context.* subjects and the builder that asks the
other services. Run with ``engram run context``."""

from __future__ import annotations

from faststream import FastStream

from contracts.context import (
    CONTEXT_BUILD_SUBJECT,
    CONTEXT_SNAPSHOT_SUBJECT,
    ContextBuildRequest,
    ContextSnapshotRequest,
)
from services.context import build, sources, templates
from services.context.retention import SnapshotRetention
from services.context.settings import ContextSettings
from services.context.spec import SPEC
from services.runtime.component import Component
from services.runtime.router import QueryRoute
from services.runtime.service import build_worker_app
from services.runtime.spec import Assembly
from services.runtime.worker import Worker


def assemble(settings: ContextSettings) -> Assembly:
    builder = build.Builder(settings)
    components: list[Component] = [builder]
    if settings.snapshot_keep_days is not None:
        components.append(SnapshotRetention(settings))
    return Assembly(
        consumes=templates.consumes(settings),
        queries=[
            QueryRoute(
                CONTEXT_BUILD_SUBJECT,
                ContextBuildRequest,
                builder.build,
                description="The context of the next model call under a token budget: "
                "system text, state, summaries, memories, knowledge, recent messages.",
                hint=build.BUILD_HINT,
                # Builds mostly wait on the other services: several at once per replica.
                max_workers=settings.max_builds,
            ),
            QueryRoute(
                CONTEXT_SNAPSHOT_SUBJECT,
                ContextSnapshotRequest,
                builder.snapshot,
                description="A recorded build: what the model was shown.",
                hint=build.SNAPSHOT_HINT,
            ),
        ],
        components=components,
        asks=sources.ASKS,
    )


def create_app(settings: ContextSettings | None = None) -> tuple[FastStream, Worker]:
    return build_worker_app(SPEC, settings or ContextSettings())
