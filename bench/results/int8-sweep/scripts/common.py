# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
import sys, pickle, time, logging

sys.path.insert(0, "/work/w4")
import numpy as np
from services.embedder import gate, onnx_query
from services.embedder.bulk import OnnxBulkEncoder
from services.embedder.model import load, resolve
from services.embedder.settings import DEFAULT_MODEL

REF = pickle.load(open("/tmp/w4/ref.pkl", "rb"))
M = load(resolve(DEFAULT_MODEL))
TOK = M.model.tokenizer
CORPUS = gate.chat_texts(gate.CORPUS_TEXTS, seed=7)
ASKED = gate.query_texts(gate.CORPUS_QUERIES, seed=99)
BQ = gate.query_texts(200, seed=99)
FP32 = "/tmp/w4/fp32.onnx"


def session(path, threads=2, level=None):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if level is not None:
        o.graph_optimization_level = level
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def encoder(path, threads=2, batch=64, level=None):
    return OnnxBulkEncoder(session(path, threads, level), TOK, REF["inputs"], M.max_tokens, batch)


def quality(path, level=None, bench=True):
    e = encoder(path, level=level)
    q = encoder(path, threads=1, level=level)
    pm, pmin = gate.agreement(e.encode(gate.PROBES), REF["probes"])
    c = e.encode(CORPUS)
    aq = np.concatenate([q.encode([t]) for t in ASKED])
    r = gate.recall_at_10(REF["corpus"], REF["asked"], c, aq)
    out = dict(probe_mean=pm, probe_min=pmin, gate_recall=r)
    if bench:
        ch = e.encode(REF["chunks_text"])
        bq = np.concatenate([q.encode([t]) for t in BQ])
        cm, cmin = gate.agreement(ch, REF["chunks"])
        out.update(
            chunk_mean=cm,
            chunk_min=cmin,
            bench_recall=gate.recall_at_10(REF["chunks"], REF["bq"], ch, bq),
        )
    return out


def passes(qd):
    return qd["probe_mean"] >= 0.98 and qd["probe_min"] >= 0.95 and qd["gate_recall"] >= 0.97
