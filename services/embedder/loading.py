"""Which model a worker loads and how it encodes: the runtime that EMBEDDER_RUNTIME and
EMBEDDER_DEVICE ask for on this machine, and the active model encoded the way its
vectors were (an int8 index with int8, an fp32 index with fp32)."""

from __future__ import annotations

import asyncio
import logging

from services.embedder import bulk, gate
from services.embedder.model import LoadedModel, load, resolve
from services.embedder.quantize import INT8_SUFFIX, cpu_int8_support
from services.embedder.repo_models import ModelRow
from services.embedder.settings import EmbedderSettings

log = logging.getLogger("engram.embedder")


def choose_runtime(settings: EmbedderSettings) -> tuple[str, str]:
    """(runtime, device) that EMBEDDER_RUNTIME and EMBEDDER_DEVICE ask for here."""
    cuda = False
    if settings.device == "auto" or settings.runtime == "auto":
        import torch

        cuda = bool(torch.cuda.is_available())
    return bulk.choose(settings.runtime, settings.device, cuda=cuda, int8_cpu=cpu_int8_support())


async def load_model(
    settings: EmbedderSettings,
    source: str,
    model_id: str | None,
    runtime: str | None,
    *,
    forced: bool = False,
) -> LoadedModel:
    """Load ``source`` on a thread (seconds); ``runtime`` None: the one the settings ask
    for; ``forced``: int8 even below the quality gate."""
    s = settings

    def loading() -> LoadedModel:
        chosen, device = choose_runtime(s)
        limits = gate.Gate(s.int8_min_mean_cosine, s.int8_min_cosine, s.int8_min_recall)
        return load(
            resolve(source, model_id),
            device=device,
            batch_size=s.model_batch_size if device == "cpu" else s.gpu_batch_size,
            runtime=runtime or chosen,
            gate=gate.Gate(-1.0, -1.0, -1.0) if forced else limits,
            cache_dir=s.onnx_cache_dir or None,
            query_threads=s.query_threads,
        )

    return await asyncio.to_thread(loading)


async def load_active(settings: EmbedderSettings, active: ModelRow) -> LoadedModel:
    """The active model, encoded the way its vectors were: an index of int8 vectors
    (`<id>#int8`) with int8 whatever the setting, an fp32 index with fp32."""
    if active.model_id.endswith(INT8_SUFFIX):
        base_id = active.model_id.removesuffix(INT8_SUFFIX)
        model = await load_model(settings, active.source, base_id, "onnx-int8")
        if model.model_id != active.model_id:  # the gate failed here: keep the space
            log.error(
                "the active index is int8 (%s) but int8 failed this worker's gate; "
                "encoding with int8 anyway so its vectors match the index",
                active.model_id,
            )
            model = await load_model(settings, active.source, base_id, "onnx-int8", forced=True)
        return model
    runtime, _ = await asyncio.to_thread(choose_runtime, settings)
    if runtime == "onnx-int8":
        log.info(
            "the active index is fp32 (%s): encoding with fp32; `engram reembed --model "
            "%s --runtime onnx-int8` moves it to int8 (%s%s, about 2x faster here)",
            active.model_id,
            active.source,
            active.model_id,
            INT8_SUFFIX,
        )
        runtime = "torch"
    return await load_model(settings, active.source, active.model_id, runtime)
