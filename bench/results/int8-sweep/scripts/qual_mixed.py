# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
"""Recall with int8 documents but fp32 queries (ONNX fp32 query path): only one side moves."""

import sys, json
from common import *

for name in sys.argv[1:]:
    e = encoder(f"/tmp/w4/v/{name}.onnx")
    c = e.encode(CORPUS)
    r = gate.recall_at_10(REF["corpus"], REF["asked"], c, REF["asked"])
    print(name, "int8 docs + fp32 queries: gate recall %.4f" % r, flush=True)
