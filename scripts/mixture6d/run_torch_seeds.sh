#!/bin/bash
# usage: run_torch_seeds.sh TAG "EXTRA ARGS" SEED...   (from this folder, after gen_mixture.py; PYTHON=a python with torch)
set -euo pipefail
tag=$1; extra=$2; shift 2
py=${PYTHON:-python3}
mkdir -p runs
for s in "$@"; do
  $py torch_train.py "$s" "runs/torch-$tag-s$s.pt" $extra >> "runs/torch-$tag.log" 2>&1
done
echo finished >> "runs/torch-$tag.log"
