# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
"""Interleaved speed, one thread each: CPU seconds per text (time.process_time, robust to
other processes on a loaded machine) and wall texts/s; medians of rounds."""

import sys, time, json, statistics, os
from common import *
import torch, onnxruntime as ort

torch.set_num_threads(1)
names = sys.argv[1].split(",")
rounds, n = int(sys.argv[2]), int(sys.argv[3])
texts = REF["chunks_text"][:n]
BATCH = 64


def torch_enc(t):
    return M.model.encode(
        list(t),
        batch_size=BATCH,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


encs = {"torch-fp32": torch_enc, "onnx-fp32": encoder(FP32, threads=1, batch=BATCH).encode}
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
for name in names:
    base, _, lvl = name.partition("@")
    encs[name] = encoder(
        f"/tmp/w4/v/{base}.onnx", threads=1, batch=BATCH, level=LEVELS.get(lvl)
    ).encode
for e in encs.values():
    e(texts[:32])
cpu = {k: [] for k in encs}
wall = {k: [] for k in encs}
for r in range(rounds):
    for k, e in encs.items():
        c, w = time.process_time(), time.perf_counter()
        e(texts)
        cpu[k].append(len(texts) / (time.process_time() - c))
        wall[k].append(len(texts) / (time.perf_counter() - w))
    print(
        "round",
        r,
        {k: round(v[-1], 1) for k, v in cpu.items()},
        "load",
        os.getloadavg()[0],
        flush=True,
    )
res = {}
for k in encs:
    rc = [a / b for a, b in zip(cpu[k], cpu["torch-fp32"])]
    ro = [a / b for a, b in zip(cpu[k], cpu["onnx-fp32"])]
    rw = [a / b for a, b in zip(wall[k], wall["torch-fp32"])]
    res[k] = dict(
        cpu_rate=statistics.median(cpu[k]),
        cpu_vs_torch=statistics.median(rc),
        cpu_vs_onnx=statistics.median(ro),
        cpu_vs_torch_rounds=rc,
        wall_vs_torch=statistics.median(rw),
        wall_vs_torch_rounds=rw,
    )
    print(
        f"{k:24s} cpu {res[k]['cpu_rate']:6.1f} texts/cpu-s  x{res[k]['cpu_vs_torch']:.2f} torch ({min(rc):.2f}-{max(rc):.2f})  x{res[k]['cpu_vs_onnx']:.2f} onnx  wall x{res[k]['wall_vs_torch']:.2f} torch",
        flush=True,
    )
json.dump(
    dict(texts=n, rounds=rounds, threads=1, results=res), open("/tmp/w4/speed2.json", "w"), indent=1
)
