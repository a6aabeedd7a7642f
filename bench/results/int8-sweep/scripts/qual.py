# ruff: noqa
# Scratch script of the int8 sweep (issue 17), kept as run; paths under /tmp/w4.
import sys, json
from common import *

bench = "--nobench" not in sys.argv
for name in [a for a in sys.argv[1:] if not a.startswith("--")]:
    path = f"/tmp/w4/v/{name}.onnx"
    try:
        q = quality(path, bench=bench)
    except Exception as e:
        print(name, "FAILED", repr(e)[:300], flush=True)
        continue
    q["passes"] = passes(q)
    print(
        name,
        json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in q.items()}),
        flush=True,
    )
    with open("/tmp/w4/quality.jsonl", "a") as f:
        f.write(json.dumps({"name": name, **q}) + "\n")
