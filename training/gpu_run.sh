#!/usr/bin/env bash
# Train the classifier on a GPU machine with the same trainer, from a data pack (training/pack_for_gpu.py).
#
# Here (a checkout with ../shared), once per config:
#   python -m training.pack_for_gpu --config training/configs/teacher-m1.json --out .gpu/pack
#   training/gpu_run.sh --dry-run --pack .gpu/pack --config training/configs/teacher-m1.json --out training/runs/NAME
# There (the working tree, with .gpu/pack and .whl carried), a new run or one committed in the tree:
#   OUT=/path/for/results training/gpu_run.sh --pack .gpu/pack --config training/configs/teacher-m1.json \
#       --out training/runs/NAME --budget 420
#   OUT=/path/for/results training/gpu_run.sh --pack .gpu/pack --resume training/runs/NAME --budget 420
# Back here: cat RESULTS/run-NAME.tar.* | tar -xf - -C training/runs; commit; continue with --resume on either.
#
# The trainer stops at the last epoch boundary inside --budget seconds of training (data loading not counted;
# exit status 3 = stopped, resumable). OUT receives train.log, gpu_run.txt (command, backend, device, status)
# and the run folder as run-NAME.tar.00, .01, ... (15 MiB parts: a device call returns files of 16 MiB at
# most; checkpoint.keras and ema.keras are left out, `train_classifier --materialize` rebuilds them).
#
# Software: the GPU image has PyTorch (CUDA) and JAX but neither TensorFlow nor Keras nor albumentations.
# Carry their wheels (Python 3.12, x86-64) in .whl/; they are installed into a temporary folder:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0 albumentations==2.0.8 \
#     albucore==0.0.24 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#     simsimd==6.5.16 stringzilla==5.3.2
# The Keras backend: KERAS_BACKEND if set, else torch when it sees a CUDA device, else jax when it sees a
# GPU, else tensorflow, torch or jax on the CPU (whichever is installed, in that order).
#
# --dry-run (or DRY_RUN=1) checks the arguments, the software (installing no wheels), the pack (manifest, sizes,
# SHA-256, a frame for every image of the config), adds up what a device call would carry from this checkout
# (64 MiB at most: a warning when over) and prints the trainer command without training. Errors: one line, status 2.
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  echo "usage: training/gpu_run.sh [--dry-run] [--pack DIR] (--config FILE --out RUN | --resume RUN)"
  echo "                           [--budget SECONDS] [--workers N] [--limit N] [-- TRAINER_OPTIONS...]"
}
die() {
  echo "gpu_run.sh: $*" >&2
  exit 2
}
value() { # value OPTION NEXT_WORD: the option's value, or an error when it has none
  [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value (see --help)"
}

bytes_of() { # total size of the files named on stdin (NUL-separated)
  xargs -0 -r stat -c %s -- 2>/dev/null | awk '{ total += $1 } END { print total + 0 }'
}
travel_report() { # what a device call would carry from this checkout: at most 64 MiB
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 0
  local tree pack wheels total
  tree=$({ git ls-files -z; git ls-files -z -o --exclude-standard; } | bytes_of)
  pack=$(find "$PACK" -type f -print0 | bytes_of)
  wheels=$( ((${#WHEEL_FILES[@]})) && printf '%s\0' "${WHEEL_FILES[@]}" | bytes_of || echo 0)
  total=$((tree + pack + wheels))
  awk -v t="$tree" -v p="$pack" -v w="$wheels" -v s="$total" 'BEGIN { m = 2^20
    printf "travel: working tree %.1f MiB + pack %.1f MiB + wheels %.1f MiB = %.1f MiB of a device call'"'"'s 64 MiB\n", t/m, p/m, w/m, s/m }'
  ((total <= 64 * 1048576)) || echo "WARNING: over 64 MiB: a device call would refuse it; see training/README.md (GPU path)"
}

PACK=.gpu/pack CONFIG="" RUN="" RESUME="" BUDGET=420 LIMIT=""
WORKERS=$(($(nproc 2>/dev/null || echo 3) - 2))
((WORKERS >= 1)) || WORKERS=1
DRY=${DRY_RUN:-0}
EXTRA=()
while (($#)); do
  case $1 in
    --dry-run) DRY=1; shift ;;
    --pack) value "$@"; PACK=$2; shift 2 ;;
    --config) value "$@"; CONFIG=$2; shift 2 ;;
    --out) value "$@"; RUN=$2; shift 2 ;;
    --resume) value "$@"; RESUME=$2; shift 2 ;;
    --budget) value "$@"; BUDGET=$2; shift 2 ;;
    --workers) value "$@"; WORKERS=$2; shift 2 ;;
    --limit) value "$@"; LIMIT=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ -f training/train_classifier.py ]] || die "run it from the repository root (training/train_classifier.py not found)"
[[ $BUDGET =~ ^[0-9]+([.][0-9]+)?$ ]] && [[ ! $BUDGET =~ ^0+([.]0*)?$ ]] || die "--budget must be a positive number of seconds, got '$BUDGET'"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer, got '$WORKERS'"
[[ -z $LIMIT || $LIMIT =~ ^[1-9][0-9]*$ ]] || die "--limit must be a positive integer, got '$LIMIT'"
[[ -f $PACK/manifest.json ]] || die "no data pack at '$PACK' (no manifest.json): build one with python -m training.pack_for_gpu"
if [[ -n $RESUME ]]; then
  [[ -z $CONFIG && -z $RUN ]] || die "--resume RUN continues a run with its recorded config: give neither --config nor --out"
  [[ -f $RESUME/config.json && -f $RESUME/resume/training_metadata.json ]] ||
    die "--resume '$RESUME' is not a run with a backup (no config.json or resume/training_metadata.json)"
  [[ -z $LIMIT ]] || die "--limit is recorded in a run's config: a resumed run keeps its own"
  RUN=$RESUME
  CONFIG_FOR_CHECK=$RESUME/config.json
else
  [[ -n $CONFIG && -n $RUN ]] || die "give --config FILE and --out RUN for a new run, or --resume RUN"
  [[ -f $CONFIG ]] || die "config '$CONFIG' not found"
  [[ ! -e $RUN/resume/training_metadata.json ]] || die "'$RUN' holds a run already: continue it with --resume $RUN"
  CONFIG_FOR_CHECK=$CONFIG
fi
[[ $DRY == 1 || -n ${OUT:-} ]] || die "set OUT to the folder that receives the log and the run (the device's \$OUT)"

PY=${PY:-python3}
command -v "$PY" >/dev/null || die "python '$PY' not found (set PY)"
WHEELS=${WHEELS-.whl}
shopt -s nullglob
WHEEL_FILES=()
[[ -z $WHEELS ]] || WHEEL_FILES=("$WHEELS"/*.whl)
if [[ $DRY != 1 && ${#WHEEL_FILES[@]} -gt 0 ]]; then
  SITE=$(mktemp -d /tmp/gpu_run_site.XXXXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${WHEEL_FILES[@]}" ||
    die "could not install the wheels of $WHEELS: they must suit this machine's Python (WHEELS= skips them)"
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
missing=$("$PY" -c '
import importlib.util, sys
need = ["keras", "albumentations", "sklearn", "cv2", "h5py", "numpy"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))')
if [[ -n $missing ]]; then
  # A dry run installs nothing: wheels for the GPU machine's Python need not install here.
  [[ $DRY == 1 && ${#WHEEL_FILES[@]} -gt 0 ]] ||
    die "python modules missing: $missing (carry their wheels in ${WHEELS:-.whl}; see --help)"
  echo "note: $missing not importable by $PY here; a real run installs the ${#WHEEL_FILES[@]} wheels of $WHEELS first"
fi

if [[ -z ${KERAS_BACKEND:-} ]]; then
  KERAS_BACKEND=$("$PY" - <<'EOF'
import importlib.util

def has(name):
    return importlib.util.find_spec(name) is not None

choice = None
if has("torch"):
    import torch
    choice = "torch" if torch.cuda.is_available() else None
if choice is None and has("jax"):
    import jax
    choice = "jax" if any(d.platform == "gpu" for d in jax.devices()) else None
print(choice or next((n for n in ("tensorflow", "torch", "jax") if has(n)), ""))
EOF
  )
  [[ -n $KERAS_BACKEND ]] || die "no Keras backend installed (torch, jax or tensorflow)"
fi
export KERAS_BACKEND
DEVICE=$(nvidia-smi -L 2>/dev/null | head -1)
DEVICE=${DEVICE:-no NVIDIA GPU seen (nvidia-smi)}

CHECK=("$PY" -m training.pack_for_gpu --check "$PACK" --config "$CONFIG_FOR_CHECK" ${LIMIT:+--limit "$LIMIT"})
"${CHECK[@]}" 2>&1 | grep -v -E "^[0-9-]+ [0-9:,]+ |UserWarning|warnings.warn"
((PIPESTATUS[0] == 0)) || die "the data pack '$PACK' does not serve this run (see above)"

CMD=("$PY" -m training.train_classifier --data-pack "$PACK" --workers "$WORKERS" --time-budget "$BUDGET")
if [[ -n $RESUME ]]; then
  CMD+=(--resume "$RESUME")
else
  CMD+=(--config "$CONFIG" --out "$RUN" ${LIMIT:+--limit "$LIMIT"})
fi
CMD+=("${EXTRA[@]}")
echo "backend: KERAS_BACKEND=$KERAS_BACKEND; device: $DEVICE"
echo "trainer: $(printf '%q ' "${CMD[@]}")"
if [[ $DRY == 1 ]]; then
  travel_report
  echo "dry run: arguments, software and pack OK; nothing trained"
  exit 0
fi

mkdir -p "$OUT" || die "cannot create OUT '$OUT'"
"${CMD[@]}" 2>&1 | tee "$OUT/train.log"
status=${PIPESTATUS[0]}
name=$(basename "$RUN")
if [[ -d $RUN ]]; then
  tar -C "$(dirname "$RUN")" -cf - --exclude=checkpoint.keras --exclude=ema.keras "$name" |
    split -b 15M -d - "$OUT/run-$name.tar."
fi
{
  echo "command: $(printf '%q ' "${CMD[@]}")"
  echo "backend: $KERAS_BACKEND; device: $DEVICE; trainer exit status: $status (0 done, 3 stopped by the budget)"
  echo "restore: cat run-$name.tar.* | tar -xf - -C $(dirname "$RUN")"
} >"$OUT/gpu_run.txt"
cat "$OUT/gpu_run.txt"
ls -la "$OUT"
exit "$status"
