#!/usr/bin/env bash
# The one place that knows how edgeskin's dependencies install on this kind of machine.
# Usage: scripts/install.sh [runtime|dev|train|ui|all]...   (default: runtime dev)
# Installs into the Python given by $PYTHON (default: .venv/bin/python, created if missing).
#
# Known traps handled here:
#  - tf-keras and tensorflow-model-optimization are installed with --no-deps: otherwise pip pulls a
#    second, full (GPU) TensorFlow next to tensorflow-cpu.
#  - torch is pinned to the local CPU wheel version (2.13.0); an unpinned torch pulls several GB of CUDA.
#  - PyPI's torchvision is built against CUDA torch: its compiled ops (torchvision::nms) do not load on
#    CPU torch. It is installed with --no-deps for its Python API, and a pure torch CPU kernel for
#    torchvision::nms is registered before ultralytics runs (edgeskin/report/torch_compat.py, re-exported by
#    training/torch_compat.py for training/train_detector.py).
#  - tf2onnx pins protobuf~=3.20, which would downgrade TensorFlow's protobuf: --no-deps (Keras patches it
#    for numpy 2 itself).
#  - albumentations is pinned to 2.0.8, the last MIT-licensed line (its successor AlbumentationsX is AGPL).
#  - ultralytics is installed with --no-deps so that it cannot swap opencv-python-headless for
#    opencv-python or pull a CUDA torch; its real requirements are listed explicitly below.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  PYTHON="$VENV/bin/python"
fi
PIP=("$PYTHON" -m pip install -q --disable-pip-version-check)

TF_VERSION=2.21.0
TORCH_VERSION=2.13.0

install_runtime() {
  "${PIP[@]}" -e .
}

install_dev() {
  "${PIP[@]}" -e ".[dev]"
  # The official ISIC scorer (tests/test_isic_scoring.py). Its 5.6 calls DataFrame.applymap, which pandas 3 removed:
  # the test aliases it to DataFrame.map rather than pinning pandas < 3 here (a pandas < 2.2 pulls numpy 1.x back).
  "${PIP[@]}" "isic-challenge-scoring==5.6.0"
}

install_ui() {
  "${PIP[@]}" -e ".[ui]"
}

install_train() {
  "${PIP[@]}" "tensorflow-cpu==${TF_VERSION}" "keras>=3.15,<3.16" "torch==${TORCH_VERSION}" \
    scikit-learn matplotlib pandas tqdm "onnx>=1.23,<1.24" onnxruntime onnxslim \
    pyyaml requests scipy psutil polars "pillow>=9" sng4onnx onnx-graphsurgeon ai-edge-litert \
    "opencv-python-headless>=4.9" "albumentations==2.0.8" "scikit-image>=0.25"
  "${PIP[@]}" --no-deps "tf-keras==${TF_VERSION}" "tensorflow-model-optimization==0.8.1" dm-tree \
    "torchvision==0.29.*" "ultralytics>=8.4,<8.5" "ultralytics-thop>=2.0" "onnx2tf>=1.28,<1.30" \
    "tf2onnx==1.17.0"
  "${PIP[@]}" -e ".[train]" --no-deps
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(runtime dev)
for t in "${targets[@]}"; do
  case "$t" in
    runtime) install_runtime ;;
    dev) install_dev ;;
    ui) install_ui ;;
    train) install_train ;;
    all) install_runtime; install_dev; install_ui; install_train ;;
    *) echo "install.sh: unknown target '$t' (runtime|dev|train|ui|all)" >&2; exit 2 ;;
  esac
done
