# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
"""What int8's misses cost: fp32 score of what int8 returns vs fp32's own top 10."""

import sys
from common import *

for name in sys.argv[1:]:
    e = encoder(f"/tmp/w4/v/{name}.onnx")
    q = encoder(f"/tmp/w4/v/{name}.onnx", threads=1)
    c = e.encode(CORPUS)
    aq = np.concatenate([q.encode([t]) for t in ASKED])
    truth = REF["corpus"] @ REF["asked"].T
    found = c @ aq.T
    rows = []
    for j in range(truth.shape[1]):
        t = np.argsort(-truth[:, j])
        f = np.argsort(-found[:, j])
        tenth = truth[t[9], j]
        rows.append(
            (
                len(set(t[:10]) & set(f[:10])) / 10,
                len(set(t[:10]) & set(f[:20])) / 10,
                np.mean(truth[f[:10], j] >= tenth - 0.005),
                truth[t[:10], j].mean() - truth[f[:10], j].mean(),
            )
        )
    r = np.array(rows)
    print(
        name,
        "recall@10 %.3f  recall 10@20 %.3f  within 0.005 of 10th %.3f  mean score loss %.5f"
        % tuple(r.mean(axis=0)),
        flush=True,
    )
