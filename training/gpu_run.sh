#!/usr/bin/env bash
# Train the classifiers on a GPU machine that has PyTorch but no TensorFlow (Keras 3, torch backend),
# then score and time the float models there. Run from the repository root:
#
#   python -m training.pack_for_gpu --split training/runs/classifier/split.json \
#       --weights ../shared/weights/keras/mobilenet_v2_1.0_224_no_top.derived.h5 --out .gpu/ham
#   OUT=artifacts/gpu training/gpu_run.sh        # on the GPU machine, with .gpu/ham (and .whl) copied there
#
# Three runs share the GPU: the shipped MobileNetV2 (ImageNet start, training/configs/classifier_gpu.json)
# and the ResNet50 / EfficientNetB0 float baselines from scratch (no ImageNet weights offline). Each
# fits its epochs to its time budget at the speed it measures (train_classifier --time-budget).
# Keras wheels that the machine lacks can travel in .whl/ (installed into /tmp/site).
set -uo pipefail
# Out of date: this script and training/pack_for_gpu.py were written for the HAM10000-only recipe. The
# multi-source trainer takes its data from its config and no longer accepts --images/--metadata/--split,
# so it stops here with that message instead of failing half-way on a GPU machine's time. The rest is kept as
# the starting point for a multi-source version.
echo "gpu_run.sh: out of date for the multi-source classifier recipe (see README, 'Training and conversion')" >&2
exit 2
DATA=${DATA:-.gpu/ham}
OUT=${OUT:-artifacts/gpu}
RUNS=${RUNS:-artifacts/gpu-runs}
BUDGET=${BUDGET:-300}
BASELINE_BUDGET=${BASELINE_BUDGET:-260}
PY=${PY:-python3}
EXTRA=${EXTRA:-}
WHEELS=${WHEELS-.whl}
mkdir -p "$OUT" "$RUNS"
if [[ -n "$WHEELS" ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=torch PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
common=(--images "$DATA/images" --metadata "$DATA/HAM10000_metadata.csv" --split "$DATA/split.json" --workers 5 $EXTRA)
weights=$(ls "$DATA"/weights/*.h5 2>/dev/null | head -1)
"$PY" -m training.train_classifier --config training/configs/classifier_gpu.json "${common[@]}" \
  ${weights:+--weights "$weights"} --time-budget "$BUDGET" --out "$RUNS/mobilenetv2" > "$OUT/mobilenetv2.log" 2>&1 &
for backbone in resnet50 efficientnetb0; do
  "$PY" -m training.train_classifier --config training/configs/classifier_gpu.json "${common[@]}" \
    --backbone "$backbone" --weights none --learning-rate 0.002 --epochs 60 --time-budget "$BASELINE_BUDGET" \
    --out "$RUNS/$backbone" > "$OUT/$backbone.log" 2>&1 &
done
wait
for log in "$OUT"/*.log; do echo "== $log"; grep -E "measured|epoch [0-9]+:|done in|Error|error" "$log" | tail -8; done
"$PY" -m benchmarks.float_baseline --runs "$RUNS"/mobilenetv2 "$RUNS"/resnet50 "$RUNS"/efficientnetb0 \
  --images "$DATA/images" --metadata "$DATA/HAM10000_metadata.csv" --out "$OUT/float_baseline.json"
# What comes back: the shipped run whole (model.keras without optimizer state, ~9 MB); the baselines'
# records only (their .keras files are too large to bring back and are not shipped).
tar -cf "$OUT/mobilenetv2.tar" -C "$RUNS" mobilenetv2
tar -cf "$OUT/baselines.tar" -C "$RUNS" --exclude=model.keras resnet50 efficientnetb0
ls -la "$OUT"
