# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
from common import *

rng = np.random.default_rng(0)
for name, d, qv in (("gate", REF["corpus"], REF["asked"]), ("bench", REF["chunks"], REF["bq"])):
    for sigma in (0.002, 0.004, 0.006, 0.008, 0.012, 0.02):

        def noisy(x):
            y = x + rng.normal(0, sigma, x.shape).astype(np.float32)
            return y / np.linalg.norm(y, axis=1, keepdims=True)

        nd, nq = noisy(d), noisy(qv)
        cos = np.sum(nd * d, axis=1)
        print(
            name,
            "sigma",
            sigma,
            "cos mean %.4f" % cos.mean(),
            "recall %.3f" % gate.recall_at_10(d, qv, nd, nq),
        )
