#!/usr/bin/env bash
set -u
out=/tmp/bench-cmp
run() {
  local name=$1; shift
  for side in old new; do
    if [ $side = old ]; then dir=/tmp/old-engram; py=/tmp/oldvenv/bin/python; else dir=/work/main; py=/work/main/.venv/bin/python; fi
    echo "=== $name $side$R $(date +%T)" >> $out/log
    (cd $dir && if [ $side = old ]; then export PYTHONPATH=/tmp/old-engram; else unset PYTHONPATH; fi && timeout 1200 $py bench/$name.py "$@" --out $out/$name-$side$R.json > $out/$name-$side$R.txt 2>&1; echo "rc=$?" >> $out/$name-$side$R.txt)
  done
}
R=6; run audit --quick
R=6; run memory --quick
R=6; run embedder --texts 500 --runs 1 --chunks 2000 --queries 100 --runtimes torch
R=6; run pipeline --events 2000 --runs 1 --runtimes torch
R=7; run memory --quick
echo "=== done3 $(date +%T)" >> $out/log
