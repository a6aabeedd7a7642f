# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
"""Interleaved speed: torch fp32, ONNX fp32, variants; medians of rounds; texts/s on chunk texts."""

import sys, time, json, statistics, os
from common import *
import torch

names = sys.argv[1].split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
n = int(sys.argv[3]) if len(sys.argv) > 3 else 400
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


encs = {"torch-fp32": torch_enc, "onnx-fp32": encoder(FP32, batch=BATCH).encode}
for name in names:
    path = name if name.endswith(".onnx") else f"/tmp/w4/v/{name}.onnx"
    lvl = None
    encs[name] = encoder(path, batch=BATCH).encode
for e in encs.values():
    e(texts[:64])  # warm
rates = {k: [] for k in encs}
for r in range(rounds):
    for k, e in encs.items():
        s = time.perf_counter()
        e(texts)
        rates[k].append(len(texts) / (time.perf_counter() - s))
    print(
        "round",
        r,
        {k: round(v[-1], 1) for k, v in rates.items()},
        "load",
        os.getloadavg()[0],
        flush=True,
    )
med = {k: statistics.median(v) for k, v in rates.items()}
res = {
    k: dict(
        rate=med[k],
        vs_torch=med[k] / med["torch-fp32"],
        vs_onnx=med[k] / med["onnx-fp32"],
        ratios=[a / b for a, b in zip(rates[k], rates["torch-fp32"])],
    )
    for k in encs
}
for k, v in res.items():
    print(
        f"{k:28s} {v['rate']:7.1f}/s  x{v['vs_torch']:.2f} torch  x{v['vs_onnx']:.2f} onnx  per-round {[round(x, 2) for x in v['ratios']]}"
    )
json.dump(res, open(f"/tmp/w4/speed-{int(time.time())}.json", "w"))
