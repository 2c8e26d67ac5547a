#!/bin/bash
# usage: run_fm_seeds.sh TAG "EXTRA ARGS" SEED...   (from this folder, after gen_mixture.py; FM=path of the fm binary)
set -euo pipefail
tag=$1; extra=$2; shift 2
fm=${FM:-fm}
mkdir -p runs
for s in "$@"; do
  $fm train --source gaussian --target data/train.csv --matcher icfm --sigma 0.1 \
    --hidden 256,256,256 --activation selu --batch 256 --lr 1e-3 --steps 20000 --ema 0 --seed "$s" \
    --threads 1 --quiet --out "runs/fm-$tag-s$s.safetensors" $extra >> "runs/fm-$tag.log" 2>&1
done
echo finished >> "runs/fm-$tag.log"
