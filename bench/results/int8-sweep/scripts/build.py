# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
import sys, logging, os

sys.path.insert(0, "/tmp/w4")
import numpy as np, onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    quantize_dynamic,
    quantize_static,
    QuantType,
    QuantFormat,
    CalibrationDataReader,
    CalibrationMethod,
)

logging.disable(logging.INFO)
FP32 = "/tmp/w4/fp32.onnx"
G = onnx.load(FP32)
INITS = {i.name for i in G.graph.initializer}
WEIGHT_MM = [n.name for n in G.graph.node if n.op_type == "MatMul" and n.input[1] in INITS]


def pick(kinds=None, layers=range(6)):
    out = []
    for name in WEIGHT_MM:
        layer = int(name.split("layer.")[1].split("/")[0])
        kind = {"query": "q", "key": "k", "value": "v"}.get(name.split("/")[-2], None)
        if "attention/output" in name:
            kind = "ao"
        if "intermediate" in name:
            kind = "fi"
        if "/output/dense" in name and "attention" not in name:
            kind = "fo"
        if layer in layers and (kinds is None or kind in kinds):
            out.append(name)
    return out


def dyn(target, nodes=None, per_channel=True, reduce_range=False, wt=QuantType.QInt8, extra=None):
    quantize_dynamic(
        FP32,
        target,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes or pick(),
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=wt,
        extra_options=extra or {},
    )


class Reader(CalibrationDataReader):
    def __init__(self):
        from common import TOK, M
        from services.embedder import gate

        texts = (
            list(gate.PROBES) + gate.chat_texts(200, seed=1234) + gate.query_texts(50, seed=4321)
        )
        self.feeds = []
        for i in range(0, len(texts), 1):
            enc = TOK(
                texts[i : i + 1], truncation=True, max_length=M.max_tokens, return_tensors="np"
            )
            self.feeds.append(
                {
                    k: enc[k].astype(np.int64)
                    for k in ("input_ids", "attention_mask", "token_type_ids")
                }
            )
        self.it = iter(self.feeds)

    def get_next(self):
        return next(self.it, None)


def static(
    target, act=QuantType.QUInt8, method=CalibrationMethod.MinMax, nodes=None, sym=False, extra=None
):
    ex = {"ActivationSymmetric": sym}
    ex.update(extra or {})
    quantize_static(
        FP32,
        target,
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes or pick(),
        per_channel=True,
        activation_type=act,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
        extra_options=ex,
    )


def nbits(target, block=32, accuracy=4, nodes=None, sym=True):
    m = onnx.load(FP32)
    inits = {i.name: i for i in m.graph.initializer}
    chosen = set(nodes or pick())
    new_nodes = []
    for n in m.graph.node:
        if n.name not in chosen:
            new_nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)  # [K, N]
        K, N = w.shape
        nb = (K + block - 1) // block
        wt = np.zeros((N, nb * block), np.float32)
        wt[:, :K] = w.T
        wb = wt.reshape(N, nb, block)
        if sym:
            scale = np.abs(wb).max(axis=2) / 127.0
            scale[scale == 0] = 1.0
            q = np.clip(np.round(wb / scale[..., None]), -128, 127).astype(np.int32) + 128
            zp = None
        else:
            lo, hi = np.minimum(wb.min(axis=2), 0), np.maximum(wb.max(axis=2), 0)
            scale = (hi - lo) / 255.0
            scale[scale == 0] = 1.0
            zpv = np.clip(np.round(-lo / scale), 0, 255).astype(np.int32)
            q = np.clip(np.round(wb / scale[..., None]) + zpv[..., None], 0, 255)
            zp = zpv.astype(np.uint8).reshape(-1)
        base = n.name.replace("/", "_")
        bq = numpy_helper.from_array(q.astype(np.uint8), base + "_Q8")
        sc = numpy_helper.from_array(scale.astype(np.float32).reshape(-1), base + "_scales")
        m.graph.initializer.extend([bq, sc])
        ins = [n.input[0], bq.name, sc.name]
        if zp is not None:
            z = numpy_helper.from_array(zp, base + "_zp")
            m.graph.initializer.append(z)
            ins.append(z.name)
        new_nodes.append(
            helper.make_node(
                "MatMulNBits",
                ins,
                list(n.output),
                name=n.name + "_Q8",
                domain="com.microsoft",
                K=K,
                N=N,
                bits=8,
                block_size=block,
                accuracy_level=accuracy,
            )
        )
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    used = {i for n in m.graph.node for i in n.input}
    keep = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(m, target)


VARIANTS = {
    "dyn-all-pc": lambda t: dyn(t),
    "dyn-all-pt": lambda t: dyn(t, per_channel=False),
    "dyn-all-pc-rr": lambda t: dyn(t, reduce_range=True),
    "dyn-all-pc-u8w": lambda t: dyn(t, wt=QuantType.QUInt8),
    "dyn-ffn": lambda t: dyn(t, pick({"fi", "fo"})),
    "dyn-ffn-in": lambda t: dyn(t, pick({"fi"})),
    "dyn-attn": lambda t: dyn(t, pick({"q", "k", "v", "ao"})),
    "dyn-qkv": lambda t: dyn(t, pick({"q", "k", "v"})),
    "dyn-no-first-last": lambda t: dyn(t, pick(layers=range(1, 5))),
    "dyn-no-last": lambda t: dyn(t, pick(layers=range(0, 5))),
    "dyn-all-but-fo": lambda t: dyn(t, pick({"q", "k", "v", "ao", "fi"})),
    "static-u8-minmax": lambda t: static(t),
    "static-s8-sym-minmax": lambda t: static(t, act=QuantType.QInt8, sym=True),
    "static-u8-percentile": lambda t: static(t, method=CalibrationMethod.Percentile),
    "nbits8-b32-acc4": lambda t: nbits(t, 32, 4),
    "nbits8-b128-acc4": lambda t: nbits(t, 128, 4),
    "nbits8-b32-acc0": lambda t: nbits(t, 32, 0),
    "nbits8-b32-acc4-asym": lambda t: nbits(t, 32, 4, sym=False),
}
if __name__ == "__main__":
    os.makedirs("/tmp/w4/v", exist_ok=True)
    for name in sys.argv[1:] or VARIANTS:
        target = f"/tmp/w4/v/{name}.onnx"
        if not os.path.exists(target):
            try:
                VARIANTS[name](target)
                print("built", name, flush=True)
            except Exception as e:
                print("FAILED", name, repr(e)[:300], flush=True)
