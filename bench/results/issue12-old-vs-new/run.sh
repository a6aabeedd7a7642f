#!/usr/bin/env bash
# Old (5e4056a, /tmp/old-engram) and new (/work/main) side by side, interleaved.
set -u
out=/tmp/bench-cmp
run() {  # name, args...
  local name=$1; shift
  for side in old new; do
    if [ $side = old ]; then dir=/tmp/old-engram; py=/tmp/oldvenv/bin/python; else dir=/work/main; py=/work/main/.venv/bin/python; fi
    echo "=== $name $side $(date +%T)" >> $out/log
    (cd $dir && timeout 1200 $py bench/$name.py "$@" --out $out/$name-$side$R.json > $out/$name-$side$R.txt 2>&1; echo "rc=$?" >> $out/$name-$side$R.txt)
  done
}
R=1
run ingest --quick
run audit --quick
run checkpointer --runs 1
run memory --quick
run embedder --texts 500 --runs 1 --chunks 2000 --queries 100 --runtimes torch
run pipeline --events 2000 --runs 1 --runtimes torch
R=2
run ingest --quick
run checkpointer --runs 1
echo "=== done $(date +%T)" >> $out/log
