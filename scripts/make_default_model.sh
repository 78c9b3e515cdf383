#!/usr/bin/env bash
# How the shipped default model (srresnet_gdq x2) is made, on CPU. Every step resumes:
# re-running the script continues the training runs from their last checkpoints.
# RUNS: where the training runs live (default runs/). Needs: pip install -e ".[dev]".
set -euo pipefail
cd "$(dirname "$0")/.."
R=${RUNS:-runs}
A=src/granular_mobile/assets
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }

# 1. full precision (1600 iterations of batch 16 x 32x32 LR crops, warm-up + cosine, lr 1e-3)
gdq train -o "$R/fp_x2" --model srresnet --scale 2 --patch 32 --batch 16 --iters 1600 --lr 1e-3 --warmup 100 \
  --eval-every 500 --ckpt-every 50 --threads 2 $(resume "$R/fp_x2")

# 2. Granular-DQ fine-tuning, bit budget 4.5 (shipped) and 4.0 (reported)
for f in 4.5 4.0; do
  gdq quantize --init "$R/fp_x2/final.pt" -o "$R/gdq_x2_f$f" --target-fab "$f" --iters 150 --patch 32 --batch 16 \
    --lr 1e-4 --warmup 20 --eval-every 100 --ckpt-every 20 --threads 1 $(resume "$R/gdq_x2_f$f")
done

# 3. ship: compact weights, evaluation, export, golden vectors for the Android core
gdq pack "$R/fp_x2/final.pt" -o "$A/srresnet_x2.pt"
gdq pack "$R/gdq_x2_f4.5/final.pt" -o "$A/srresnet_gdq_x2.pt"
gdq eval --data Set5,Set14,BSD100 --json docs/eval_default_f4.5.json
gdq pack "$R/gdq_x2_f4.0/final.pt" -o "$R/gdq_x2_f4.0/packed.pt"
gdq eval -m "$R/gdq_x2_f4.0/packed.pt" --fp "$A/srresnet_x2.pt" --data Set5,Set14,BSD100 --no-bicubic \
  --json docs/eval_default_f4.0.json
gdq export --target all -o "$A/export" --verify
python -m granular_mobile.runtime.golden android_demo/core/src/test/resources/golden
