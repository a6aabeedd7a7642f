"""``query.context.build`` and ``query.context.snapshot``: the fan-out, the budget, the
check that the total is within it, and the snapshot of every build."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Mapping

import asyncpg
from nats.aio.client import Client as NatsClient

from contracts.context import (
    SOURCE_KINDS,
    ContextBuildReply,
    ContextBuildRequest,
    ContextSnapshot,
    ContextSnapshotReply,
    ContextSnapshotRequest,
    Segment,
)
from contracts.errors import ErrorCode
from services.context import repo, sources, templates
from services.context.asking import Timeouts
from services.context.budget import Item, Plan, plan
from services.context.counts import CountCache, CountOnce
from services.context.settings import ContextSettings
from services.context.templates import Template
from services.context.tokens import Tokenizer, loaded, tokenizer
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.replies import QueryFailed

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILD_HINT = "ask with a smaller token_budget"
SNAPSHOT_HINT = "a snapshot too large for one message cannot be read over NATS yet"


def fill(text: str, values: Mapping[str, str]) -> str:
    """``{name}`` replaced by its value; ``{{`` / ``}}`` are literal braces; a name with
    no value is an ``invalid`` request (never a silent blank in a prompt)."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name not in values:
            raise QueryFailed(
                ErrorCode.invalid,
                f"segment placeholder {{{name}}} has no value",
                hint="add it to `variables`",
                detail={"variable": name},
            )
        return values[name]

    return PLACEHOLDER.sub(one, text)


def system_items(req: ContextBuildRequest, template: Template | None = None) -> list[Item]:
    """The template's segments (when named), then the request's, variables filled: the
    request's over the template's defaults, and the request's own ids."""
    values = {
        **(template.defaults if template else {}),
        **req.variables,
        "agent_id": req.agent_id,
        "user_id": req.user_id,
        "query": req.query,
    }
    items = (
        [
            Item(f"{template.name}/{seg.name or i}", fill(seg.text, values))
            for i, seg in enumerate(template.segments)
        ]
        if template
        else []
    )
    return items + [
        Item(seg.name or f"segment:{i}", fill(seg.text, values))
        for i, seg in enumerate(req.segments)
    ]


def checked(result: Plan, budget: int, tok: Tokenizer) -> list[Segment]:
    """The segments, after counting every text again: a total over the budget (a bug)
    is an ``internal`` error, never a reply."""
    counted = [tok.count(s.text) for s in result.segments]
    if sum(counted) > budget or any(
        n != s.tokens for n, s in zip(counted, result.segments, strict=True)
    ):
        raise QueryFailed(
            ErrorCode.internal,
            f"the built context counts {sum(counted)} tokens for a budget of {budget}",
            detail={"counted": counted, "claimed": [s.tokens for s in result.segments]},
        )
    return [
        Segment(
            kind=s.kind,
            text=s.text,
            tokens=s.tokens,
            source_ids=s.source_ids,
            status=s.status,
            reason=s.reason,
            truncated=s.truncated,
            source_tokens=s.source_tokens,
        )
        for s in result.segments
    ]


class Builder:
    """The component that builds: it holds the worker's NATS connection (to ask the other
    services) and pool (to record snapshots), and loads the default tokenizer at start."""

    name = "builder"

    def __init__(self, settings: ContextSettings) -> None:
        self.settings = settings
        self._nc: NatsClient | None = None
        self._pool: asyncpg.Pool | None = None
        self._snapshots: asyncpg.Pool | None = None
        self.counts = CountCache(settings.token_count_cache)

    async def start(self, ctx: WorkerContext) -> None:
        # ~1.5 s for a BPE encoding: at start, not in the first build's latency.
        await asyncio.to_thread(tokenizer, self.settings.tokenizer)
        self._snapshots = await repo.snapshot_pool(
            self.settings.database_url, self.settings.max_builds
        )
        self._nc, self._pool = ctx.nc, ctx.pool

    async def stop(self) -> None:
        snapshots, self._snapshots = self._snapshots, None
        self._nc = self._pool = None
        if snapshots is not None:
            await snapshots.close()

    def health(self) -> Health:
        if self._nc is None:
            return Health(self.name, False, "not started")
        c = self.counts
        return Health(self.name, True, f"token counts remembered: {c.hits} hits, {c.misses} misses")

    def _running(self) -> tuple[NatsClient, asyncpg.Pool, asyncpg.Pool]:
        if self._nc is None or self._pool is None or self._snapshots is None:
            raise NotStarted("the context builder")
        return self._nc, self._pool, self._snapshots

    async def build(self, req: ContextBuildRequest, limit: int) -> ContextBuildReply:
        del limit  # a reply over one message is too_large (BUILD_HINT)
        nc, pool, snapshots = self._running()
        started = time.perf_counter()
        name = req.options.tokenizer or self.settings.tokenizer
        # Loaded once per process; a thread only the first time (loading takes seconds).
        tok = loaded(name)
        if tok is None:
            tok = await asyncio.to_thread(tokenizer, name)
        timeouts = Timeouts.of(self.settings, req.options.timeout_ms)
        template, found = await asyncio.gather(
            self._template(pool, req), sources.gather(nc, req, timeouts)
        )
        system = system_items(req, template)
        shares = {kind: getattr(req.options.shares, kind.value) for kind in SOURCE_KINDS}
        result = plan(req.token_budget, system, found, shares, CountOnce(tok, self.counts))
        segments = checked(result, req.token_budget, tok)
        total = sum(s.tokens for s in segments)
        source_total = sum(s.source_tokens for s in segments)
        ratio = source_total / total if total else 1.0
        build_ms = (time.perf_counter() - started) * 1000
        snapshot_id = uuid.uuid4()
        await repo.record(
            snapshots,
            req.tenant_id,
            (
                snapshot_id,
                req.agent_id,
                req.user_id,
                req.conversation_id,
                req.message_id,
                req.model_dump(mode="json"),
                [s.model_dump(mode="json") for s in segments],
                name,
                req.token_budget,
                total,
                source_total,
                ratio,
                len(segments),
                build_ms,
            ),
            req.template,
        )
        return ContextBuildReply(
            snapshot_id=snapshot_id,
            tokenizer=name,
            token_budget=req.token_budget,
            total_tokens=total,
            source_tokens=source_total,
            compression_ratio=round(ratio, 4),
            build_ms=round(build_ms, 3),
            segments=segments,
        )

    async def _template(self, pool: asyncpg.Pool, req: ContextBuildRequest) -> Template | None:
        if req.template is None:
            return None
        found = await templates.read(pool, req.tenant_id, req.template)
        if found is None:
            raise QueryFailed(
                ErrorCode.not_found,
                f"no template {req.template!r} in tenant {req.tenant_id!r}",
                hint="put it with a context.template.put event, or send `segments`",
            )
        return found

    async def snapshot(self, req: ContextSnapshotRequest, limit: int) -> ContextSnapshotReply:
        del limit
        _, pool, _ = self._running()
        row = await repo.read(pool, req.tenant_id, req.snapshot_id, req.message_id)
        if row is None:
            what = (
                f"snapshot {req.snapshot_id}"
                if req.snapshot_id
                else f"a build for message {req.message_id}"
            )
            raise QueryFailed(ErrorCode.not_found, f"no {what} in tenant {req.tenant_id!r}")
        return ContextSnapshotReply(
            snapshot=ContextSnapshot(
                snapshot_id=row["snapshot_id"],
                created_at=row["created_at"],
                request=ContextBuildRequest.model_validate(row["request"]),
                tokenizer=row["tokenizer"],
                total_tokens=row["total_tokens"],
                source_tokens=row["source_tokens"],
                compression_ratio=row["compression_ratio"],
                segment_count=row["segment_count"],
                build_ms=row["build_ms"],
                segments=[Segment.model_validate(s) for s in row["segments"]],
            )
        )
