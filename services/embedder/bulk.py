"""Bulk embedding on ONNX Runtime (fp32 or int8 weights), its runtime choice and its
quality gate.

``EMBEDDER_RUNTIME`` picks what encodes chunks, re-embedding and memories:

* ``torch``: sentence-transformers in fp32 (on ``EMBEDDER_DEVICE``: a GPU when there is
  one);
* ``onnx``: the model's graph in ONNX Runtime, fp32 (the same vectors as torch: cosine
  1.0000000, so the same model id and index);
* ``onnx-int8``: the graph with int8 MatMul weights: about 2x torch on a CPU with VNNI,
  vectors a little different (cosine ~0.99), so they are stored under ``<model>#int8``,
  their own index, and queries are encoded with the same graph;
* ``auto`` (default): a GPU if there is one (torch), else int8 on a CPU with int8
  instructions (VNNI, AMX), else torch.

The gate: int8 is used only if its vectors agree with fp32 on probe texts (mean cosine and
minimum cosine at least the settings); otherwise the worker falls back to fp32 and says so
in its log and in ``LoadedModel.runtime_info``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from services.embedder import gate, onnx_query, quantize

log = logging.getLogger("engram.embedder.bulk")

Vectors = npt.NDArray[np.float32]
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")


@dataclass
class RuntimeInfo:
    """What encodes a worker's bulk work, and why (a worker's stats; `engram dev` and the
    logs show it)."""

    requested: str  # the setting
    runtime: str  # torch | onnx | onnx-int8
    device: str
    mean_cosine: float | None = None  # int8 against fp32 on the probes
    min_cosine: float | None = None
    recall: float | None = None  # recall@10 of fp32's exact top 10 (gate.measure)
    fallback: str | None = None  # why int8 was asked for (or chosen) and not used
    from_cache: bool = False
    build_s: float = 0.0


class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Vectors: ...


def choose(requested: str, device: str, *, cuda: bool, int8_cpu: bool) -> tuple[str, str]:
    """(runtime, device) for a setting: ``auto`` resolved, ``device`` ``auto`` too."""
    if requested not in RUNTIMES:
        raise ValueError(f"EMBEDDER_RUNTIME must be one of {', '.join(RUNTIMES)}")
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if requested != "auto":
        return requested, device
    if device != "cpu":
        return "torch", device
    return ("onnx-int8" if int8_cpu else "torch"), device


def token_batches(lengths: Sequence[int], size: int, slack: int = 4) -> list[list[int]]:
    """Indexes in batches of at most ``size``, longest first, a batch closed early when
    the next text would be padded by more than a quarter of the batch's width (and more
    than ``slack`` tokens): no 20-token text padded to 256. Besides the compute, this
    matters for int8: the activations' scale is taken over the whole batch, padding
    included, so a short text beside long ones is quantized coarsely."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < size:
            width = lengths[batches[-1][0]]
            if width - lengths[i] <= max(slack, width // 4):
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches


class OnnxBulkEncoder:
    """Unit vectors of many texts: each text tokenized once, the texts sorted by their
    token counts and cut into batches of ``batch_size``, each padded only to its own
    longest text, then mean pooling and normalization (the sentence-transformers pipeline
    the export reproduced)."""

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        inputs: Sequence[str],
        max_tokens: int,
        batch_size: int,
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = tuple(inputs)
        self._max_tokens = max_tokens
        self._batch_size = batch_size
        self._pad = int(tokenizer.pad_token_id or 0)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        ids: list[list[int]] = self._tokenizer(
            list(texts),
            truncation=True,
            max_length=self._max_tokens,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        out: Vectors | None = None
        for part in token_batches([len(t) for t in ids], self._batch_size):
            pooled = self._run([ids[i] for i in part])
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[part] = pooled
        assert out is not None
        return out

    def _run(self, batch: Sequence[Sequence[int]]) -> Vectors:
        width = max(len(t) for t in batch)
        input_ids = np.full((len(batch), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, tokens in enumerate(batch):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.asarray(pooled / norms, dtype=np.float32)


def providers(device: str) -> list[str]:
    """ONNX Runtime's execution providers for a device (CUDA when asked and present)."""
    import onnxruntime as ort

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def sessions(
    graph: bytes,
    inputs: Sequence[str],
    tokenizer: Any,
    max_tokens: int,
    *,
    batch_size: int,
    bulk_threads: int,
    query_threads: int,
    device: str,
) -> tuple[OnnxBulkEncoder, OnnxBulkEncoder]:
    """A bulk encoder (all threads) and a query encoder (few threads) of one graph, both
    batching by token length (int8 vectors depend a little on their batch's padding)."""
    chosen = providers(device)
    return (
        OnnxBulkEncoder(
            onnx_query.session(graph, bulk_threads, chosen),
            tokenizer,
            inputs,
            max_tokens,
            batch_size,
        ),
        OnnxBulkEncoder(
            onnx_query.session(graph, query_threads, chosen),
            tokenizer,
            inputs,
            max_tokens,
            batch_size,
        ),
    )


def build(
    model: Any,
    model_path: str,
    max_tokens: int,
    batch_size: int,
    fp32: gate.Encode,
    *,
    runtime: str,
    limits: gate.Gate,
    cache_dir: str | None,
    bulk_threads: int,
    query_threads: int,
    device: str,
) -> tuple[OnnxBulkEncoder | None, OnnxBulkEncoder | None, RuntimeInfo]:
    """(bulk encoder, query encoder, info) of ``model`` (a SentenceTransformer) on ONNX
    Runtime, or (None, None, info with the fallback's reason) when the graph cannot be
    built or fails the gate: fp32 must reproduce ``fp32`` (cosine >= 0.9999), int8 must
    pass ``limits`` (measured once per graph, kept in the cache folder)."""
    int8 = runtime == "onnx-int8"
    info = RuntimeInfo(runtime, runtime, device)
    started = time.perf_counter()
    try:
        built = quantize.graph(model, model.tokenizer, model_path, int8=int8, cache_dir=cache_dir)
        info.from_cache = built.cached
        runner, query = sessions(
            built.graph,
            built.inputs,
            model.tokenizer,
            max_tokens,
            batch_size=batch_size,
            bulk_threads=bulk_threads,
            query_threads=query_threads,
            device=device,
        )
        if int8:
            if built.gate is None:
                built.gate = gate.measure(fp32, runner.encode, query.encode).as_dict()
                built.remember_gate(built.gate)
            measured = gate.Measured(**built.gate)
        else:
            measured = gate.Measured(
                *gate.agreement(runner.encode(gate.PROBES), fp32(gate.PROBES)), 1.0
            )
            limits = gate.Gate(onnx_query.MIN_AGREEMENT, onnx_query.MIN_AGREEMENT, 1.0)
        info.mean_cosine, info.min_cosine = measured.mean_cosine, measured.min_cosine
        info.recall = measured.recall if int8 else None
        info.build_s = time.perf_counter() - started
        failed = gate.verdict(limits, measured)
        if failed is not None:
            info.fallback = f"{runtime} is below the quality gate against torch fp32: {failed}"
    except Exception as exc:  # an architecture the export does not take, no onnxruntime
        info.fallback = f"could not build the {runtime} graph: {exc}"
    if info.fallback is not None:
        log.warning("bulk encoding falls back to torch fp32: %s", info.fallback)
        info.runtime = "torch"
        return None, None, info
    log.info(
        "bulk encoding with ONNX Runtime %s (against torch fp32: cosine mean %.4f, min "
        "%.4f%s; ready in %.1fs%s)",
        runtime,
        info.mean_cosine or 0.0,
        info.min_cosine or 0.0,
        f", recall@10 {info.recall:.3f}" if info.recall is not None else "",
        info.build_s,
        ", cached" if info.from_cache else "",
    )
    return runner, query, info
