# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
from common import *


def gaps(docs, qs):
    s = docs @ qs.T
    srt = -np.sort(-s, axis=0)
    return srt[9] - srt[10], srt


for name, d, qv in (("gate", REF["corpus"], REF["asked"]), ("bench", REF["chunks"], REF["bq"])):
    g, srt = gaps(d, qv)
    print(
        name,
        "docs",
        len(d),
        "gap10-11 median %.4f p10 %.4f min %.5f; top1 median %.3f, 10th median %.3f, 10th-50th median %.4f"
        % (
            np.median(g),
            np.percentile(g, 10),
            g.min(),
            np.median(srt[0]),
            np.median(srt[9]),
            np.median(srt[9] - srt[49]),
        ),
    )
    # exact ties
    print("  exact ties at 10/11:", int((g == 0).sum()))
    # near duplicates among docs
    sim = d @ d.T
    np.fill_diagonal(sim, 0)
    print(
        "  doc pairs cos>0.99: %d, >0.98: %d, >0.95: %d"
        % ((sim > 0.99).sum() // 2, (sim > 0.98).sum() // 2, (sim > 0.95).sum() // 2)
    )
# noise floor: ONNX fp32 vs torch fp32
print("onnx fp32 vs torch:", quality(FP32))
