"""The checkpointer worker's parts: versioned agent state from STATE (and session ends
from CHAT), the query.state.* subjects, and its background loops. Run with
``engram run checkpointer``."""

from __future__ import annotations

from faststream import FastStream

from contracts.state import StateConflict
from services.checkpointer.api import query_routes
from services.checkpointer.components import QueryPool, parked_sweep, periodic_prune
from services.checkpointer.handlers import consumes
from services.checkpointer.lg_api import LangGraphReadPool, WritePool, langgraph_routes
from services.checkpointer.lg_commands import LangGraphStore
from services.checkpointer.ordering import OrderingGate
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.spec import SPEC
from services.checkpointer.writer import StateWriter
from services.runtime.bus import STATE
from services.runtime.component import Component
from services.runtime.service import build_worker_app
from services.runtime.spec import Assembly
from services.runtime.worker import Worker


def assemble(settings: CheckpointerSettings) -> Assembly:
    gate = OrderingGate(STATE.name, settings.service) if settings.ordering_gate else None
    writer = StateWriter(settings, SPEC.outbox, gate)
    reads = QueryPool(settings.query_pool_max)
    lg_writes = WritePool(settings.langgraph_pool_max)
    lg_reads = LangGraphReadPool(settings.langgraph_read_pool_max)
    lg_store = LangGraphStore(
        level=settings.langgraph_level,
        keyframe_every=settings.langgraph_keyframe_every,
        cache_bytes=settings.langgraph_cache_bytes,
    )
    components: list[Component] = [reads, lg_writes, lg_reads]
    if gate is not None:
        components += [gate, parked_sweep(writer, settings.sweep_every_s, settings.roles)]
    if settings.prune_keep_days:
        components.append(
            periodic_prune(
                settings.prune_keep_days,
                settings.prune_every_s,
                settings.compress_above,
                settings.roles,
            )
        )
    return Assembly(
        consumes=consumes(writer),
        queries=[
            *query_routes(reads),
            *langgraph_routes(lg_store, lg_writes, lg_reads, settings.langgraph_concurrency),
        ],
        components=components,
        publishes=(StateConflict,),
    )


def create_app(settings: CheckpointerSettings | None = None) -> tuple[FastStream, Worker]:
    return build_worker_app(SPEC, settings or CheckpointerSettings())
