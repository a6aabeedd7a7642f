# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
"""Export the fp32 graph once and cache fp32 reference vectors."""

import sys, time, pickle

sys.path.insert(0, "/work/w4")
from pathlib import Path
import numpy as np
from services.embedder.model import load, resolve
from services.embedder.settings import DEFAULT_MODEL
from services.embedder import onnx_query, gate

sys.path.insert(0, "/work/w4")
from bench.embedder import chunk_texts

m = load(resolve(DEFAULT_MODEL))
out = Path("/tmp/w4")
inputs = onnx_query.export(m.model, m.model.tokenizer, out / "fp32.onnx")
print("inputs", inputs)
corpus = gate.chat_texts(gate.CORPUS_TEXTS, seed=7)
asked = gate.query_texts(gate.CORPUS_QUERIES, seed=99)
bench_texts = gate.chat_texts(2000, seed=7)
chunks = chunk_texts(m, bench_texts)
bq = gate.query_texts(200, seed=99)
enc = m.encode
ref = dict(
    inputs=inputs,
    probes=enc(gate.PROBES),
    corpus=enc(corpus),
    asked=enc(asked),
    chunks_text=chunks,
    chunks=enc(chunks),
    bq=enc(bq),
)
pickle.dump(ref, open(out / "ref.pkl", "wb"))
print(len(chunks), "chunks")
