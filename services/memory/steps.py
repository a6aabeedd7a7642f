"""The consolidation steps. Each runs in one transaction of the job's connection (its
writes and the job's progress row commit together), so a crash leaves no half step and a
re-run continues after the last step done. Every new memory's id derives from the job and
its sources, and every choice is deterministic: a re-run makes the same memories.

Vectors of different models never mix: each (type, model) group is consolidated alone.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from contracts.memory_jobs import Step, StepReport
from services.memory import llm, repo, repo_jobs, repo_steps
from services.memory.changes import Changes, derived_memory
from services.memory.clusters import by_degree, complete_linkage, star_clusters, unit_mean
from services.memory.facts import Facts, compatible, facts
from services.memory.job_context import Cluster, JobContext
from services.memory.logic import (
    combined_importance,
    working_to_expire,
)
from services.memory.rows import Consolidation, Link, MemoryRow, Supersession
from services.memory.summary import central_order, keywords

MERGED_TYPES = ("episodic", "semantic", "procedural")  # working memories only expire


def _most_important_first(rows: list[MemoryRow]) -> list[int]:
    return sorted(
        range(len(rows)),
        key=lambda i: (
            -rows[i].importance,
            -rows[i].access_count,
            -rows[i].written_at.timestamp(),
            str(rows[i].memory_id),
        ),
    )


async def merge(job: JobContext) -> StepReport:
    c = Changes()
    examined = 0
    for memory_type in MERGED_TYPES:
        for model, group in await job.load(memory_type):
            rows = group.rows
            examined += int(group.alive.sum())
            # A group is one user's memories (JobContext.load), so only the facts remain to check.
            stated = [facts(str(r.text)) for r in rows]

            def duplicable(a: int, b: int, stated: list[Facts] = stated) -> bool:
                return compatible(stated[a], stated[b])

            clusters = await asyncio.to_thread(
                complete_linkage,
                group.graph,
                group.vectors,
                _most_important_first(rows),
                job.merge_threshold,
                joinable=duplicable,
                alive=group.alive,
            )
            for members in clusters:
                lead = rows[members[0]]
                sources = [rows[i] for i in members]
                result = derived_memory(
                    job,
                    "merge",
                    sources,
                    memory_type=memory_type,
                    text=lead.text,
                    content=lead.content,
                    vector=group.vectors[members[0]],
                    model=model,
                    importance=combined_importance(r.importance for r in sources),
                )
                c.created.append(result)
                for s in sources:
                    c.superseded.append(Supersession(s.memory_id, result.memory_id))
                    c.links.append(Link(result.memory_id, s.memory_id, "merged_from", None))
                c.records.append(
                    Consolidation(
                        [s.memory_id for s in sources],
                        result.memory_id,
                        sum(s.tokens for s in sources) - result.tokens,
                    )
                )
                if not job.dry_run:  # the group now expects the merged memory instead
                    group.alive[members[1:]] = False
                    group.rows[members[0]] = result
    await c.write(job, "merge")
    return job.report(
        Step.merge,
        examined=examined,
        created=len(c.created),
        superseded=len(c.superseded),
        tokens_saved=c.tokens_saved,
    )


async def _episode_clusters(job: JobContext) -> list[Cluster]:
    """Clusters of similar episodes, computed once per job from the same state: abstract
    runs before summarize and changes no episode, so a re-run after a crash between the
    two finds the same clusters."""
    if job.episode_clusters is None:
        found = []
        t = job.settings.cluster_threshold
        for model, group in await job.load("episodic"):
            for members in star_clusters(
                group.graph,
                by_degree(group.graph, t, group.alive),
                t,
                alive=group.alive,
                min_size=job.settings.min_cluster,
            ):
                found.append(
                    Cluster(model, [group.rows[i] for i in members], group.vectors[members])
                )
        job.episode_clusters = found
    return job.episode_clusters


async def _summary(job: JobContext, cluster: Cluster) -> str:
    """The cluster's most central memories (its extractive summary), in time order; or the
    configured LLM's summary of the whole cluster."""
    s = job.settings
    if s.llm_url:
        texts = [str(r.text) for r in sorted(cluster.rows, key=_occurred)]
        if text := await llm.summarize(s.llm_url, s.llm_model, s.llm_api_key, texts):
            return text
    order = central_order(cluster.vectors)[: s.summary_sentences]
    chosen = sorted((cluster.rows[i] for i in order), key=_occurred)
    return " ".join(str(r.text).strip() for r in chosen)


def _occurred(row: MemoryRow) -> str:
    return str((row.content.get("temporal") or {}).get("occurred_at", ""))


async def summarize(job: JobContext) -> StepReport:
    c = Changes()
    examined = 0
    for cluster in await _episode_clusters(job):
        sources = cluster.rows
        examined += len(sources)
        text = await _summary(job, cluster)
        times = sorted(_occurred(r) for r in sources)
        ends = sorted(str(r.content["temporal"].get("ended_at") or _occurred(r)) for r in sources)
        content = {
            "event": text,
            "temporal": {
                "occurred_at": times[0],
                "ended_at": max(ends[-1], times[0]),
                "description": f"{len(sources)} episodes",
            },
        }
        result = derived_memory(
            job,
            "summarize",
            sources,
            memory_type="episodic",
            text=text,
            content=content,
            vector=unit_mean(cluster.vectors),
            model=cluster.model,
            importance=max(r.importance for r in sources),
        )
        c.created.append(result)
        for s in sources:
            c.superseded.append(Supersession(s.memory_id, result.memory_id))
            c.links.append(Link(result.memory_id, s.memory_id, "summarizes", None))
        c.records.append(
            Consolidation(
                [s.memory_id for s in sources],
                result.memory_id,
                sum(s.tokens for s in sources) - result.tokens,
            )
        )
    await c.write(job, "summarize")
    return job.report(
        Step.summarize,
        examined=examined,
        created=len(c.created),
        superseded=len(c.superseded),
        tokens_saved=c.tokens_saved,
    )


async def abstract(job: JobContext) -> StepReport:
    c = Changes()
    done_before = await repo_steps.abstracted_ids(job.conn, job.tenant, job.agent)
    examined = 0
    for cluster in await _episode_clusters(job):
        sources = cluster.rows
        if all(s.memory_id in done_before for s in sources):
            continue
        examined += len(sources)
        text = await _summary(job, cluster)
        concept = ", ".join(keywords([str(s.text) for s in sources])) or "episodes"
        result = derived_memory(
            job,
            "abstract",
            sources,
            memory_type="semantic",
            text=f"{concept}: {text}",
            content={"concept": concept, "definition": text},
            vector=unit_mean(cluster.vectors),
            model=cluster.model,
            importance=max(r.importance for r in sources),
        )
        c.created.append(result)
        c.links += [Link(result.memory_id, s.memory_id, "derived_from", None) for s in sources]
        c.records.append(
            Consolidation([s.memory_id for s in sources], result.memory_id, -result.tokens)
        )
    await c.write(job, "abstract")
    return job.report(
        Step.abstract, examined=examined, created=len(c.created), tokens_saved=c.tokens_saved
    )


async def expire(job: JobContext) -> tuple[StepReport, list[UUID]]:
    past, working = await repo_steps.expiry_candidates(job.conn, job.tenant, job.agent, job.clock)
    s = job.settings
    stale = set(
        working_to_expire(
            [(r.memory_id, r.last_used) for r in working],
            job.clock,
            s.working_ttl_days,
            s.working_capacity,
        )
    )
    tokens = {r.memory_id: r.tokens for r in past}
    tokens.update((r.memory_id, r.tokens) for r in working)
    ids = sorted({r.memory_id for r in past} | stale, key=str)
    if ids and not job.dry_run:
        await repo.forget(
            job.conn,
            job.tenant,
            ids=ids,
            agent_id=None,
            user_id=None,
            conversation_id=None,
            at=job.clock,
            by=f"consolidation:{job.row.job_id}",
            reason="expired",
        )
        await repo_jobs.record(
            job.conn, job.row.key, "expire", [Consolidation(ids, None, sum(tokens[i] for i in ids))]
        )
    report = job.report(
        Step.expire,
        examined=len(past) + len(working),
        forgotten=len(ids),
        tokens_saved=sum(tokens[i] for i in ids),
    )
    return report, ([] if job.dry_run else ids)


async def decay(job: JobContext) -> StepReport:
    if job.dry_run:
        n = await repo_steps.count_decay(job.conn, job.tenant, job.agent, job.clock)
    else:
        n = await repo_steps.decay(job.conn, job.tenant, job.agent, job.clock)
    return job.report(Step.decay, examined=n, changed=n)
