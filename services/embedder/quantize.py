"""The model's graph in ONNX, fp32 or with int8 weights, built from the installed model.

Nothing is downloaded: the graph is exported from the weights already in memory
(``onnx_query.export``) and, for int8, quantized with ONNX Runtime's dynamic quantization
of the MatMul weights only, per output channel, signed 8 bits. How one quantizes decides
the quality: every op in int8 measured cosine mean 0.962 / min 0.934 against fp32 on
chat texts; the MatMul weights only, per channel, 0.9935 / 0.986, at the same speed.
Other recipes were measured against the gate (docs/benchmarks.md, "Embedder runtimes"):
the ones that pass its recall@10 (8-bit blocks of 16-32 weights) are slower than fp32, and
every one faster than fp32 fails it, this one included; so this, the fastest, stays.

Building takes a few seconds (export, then quantize), so the result is kept in a cache
folder, keyed by the SHA-256 of the model's files and the versions that made it: the next
start reads it in milliseconds, and a changed model or library builds anew. Files are
written under a temporary name and renamed, so processes starting at once never read a
half-written file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.embedder import onnx_query

log = logging.getLogger("engram.embedder.quantize")

INT8_SUFFIX = "#int8"  # appended to the model id of vectors encoded with int8 weights
FORMAT = 1  # bump when the export or the quantization recipe changes
CPU_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_support(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI, AMX), with which ONNX
    Runtime's int8 MatMul is about twice as fast as fp32. Without them int8 is barely
    faster and less exact, so ``auto`` keeps fp32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return any(flag in flags for flag in CPU_INT8_FLAGS)


def files_digest(folder: str | Path) -> str:
    """SHA-256 over the names and contents of a model folder's files (a name in the
    Hugging Face cache: its snapshot's files)."""
    root = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def cache_key(model_path: str, kind: str) -> str:
    import onnxruntime
    import torch

    versions = {
        "format": FORMAT,
        "kind": kind,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "files": files_digest(model_path) if Path(model_path).is_dir() else model_path,
    }
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Built:
    graph: bytes
    inputs: tuple[str, ...]
    cached: bool  # read from the cache folder
    gate: dict[str, float] | None  # the gate's figures measured on this graph before
    meta: Path | None = None

    def remember_gate(self, figures: dict[str, float]) -> None:
        """Keep the gate's figures beside the graph: the next start skips measuring."""
        if self.meta is not None:
            content = json.dumps({"inputs": list(self.inputs), "gate": figures}).encode()
            try:
                _write(self.meta, content)
            except OSError as exc:
                log.warning("could not keep the gate's figures in %s: %s", self.meta, exc)


def graph(
    model: Any, tokenizer: Any, model_path: str, *, int8: bool, cache_dir: str | None
) -> Built:
    """The model's graph (int8 or fp32), from the cache folder when it is there."""
    kind = "int8-matmul-per-channel" if int8 else "fp32"
    target: Path | None = None
    if cache_dir:
        target = Path(cache_dir) / f"{cache_key(model_path, kind)}.onnx"
        meta = target.with_suffix(".json")
        if target.is_file() and meta.is_file():
            saved = json.loads(meta.read_text())
            inputs = tuple(saved["inputs"])
            return Built(target.read_bytes(), inputs, True, saved.get("gate"), meta)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="engram-onnx-") as folder:
        fp32 = Path(folder) / "model.onnx"
        inputs = onnx_query.export(model, tokenizer, fp32)
        path = fp32
        if int8:
            path = Path(folder) / "model.int8.onnx"
            quantize(fp32, path)
        data = path.read_bytes()
    log.info("built the %s graph in %.1fs", kind, time.perf_counter() - started)
    built = Built(data, inputs, False, None)
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(target, data)
            built.meta = target.with_suffix(".json")
            _write(built.meta, json.dumps({"inputs": list(inputs)}).encode())
        except OSError as exc:  # a read-only home: build again next time
            log.warning("could not cache the ONNX graph in %s: %s", target.parent, exc)
            built.meta = None
    return built


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the MatMul weights, per output channel (QInt8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs a line per tensor on the root logger at INFO: not worth a worker's log.
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )
    finally:
        logging.disable(previous)


def _write(path: Path, content: bytes) -> None:
    """Write under a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
