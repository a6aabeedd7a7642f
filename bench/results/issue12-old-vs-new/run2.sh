#!/usr/bin/env bash
set -u
out=/tmp/bench-cmp
run() {
  local name=$1; shift
  for side in old new; do
    if [ $side = old ]; then dir=/tmp/old-engram; py=/tmp/oldvenv/bin/python; else dir=/work/main; py=/work/main/.venv/bin/python; fi
    echo "=== $name $side$R $(date +%T)" >> $out/log
    (cd $dir && timeout 1200 $py bench/$name.py "$@" --out $out/$name-$side$R.json > $out/$name-$side$R.txt 2>&1; echo "rc=$?" >> $out/$name-$side$R.txt)
  done
}
R=3; run checkpointer --runs 1
R=4; run checkpointer --runs 1
R=3; run audit --quick
R=5; run ingest --quick
echo "=== done2 $(date +%T)" >> $out/log
