#!/usr/bin/env bash
# Install edgeskin on Raspberry Pi OS (Bookworm or later, 64-bit) for the camera, the live loop and the kiosk.
#
#   devices/install-rpi.sh                 # from a checkout of edgeskin, as the user who will run it
#   EDGESKIN_SPEC=edgeskin devices/install-rpi.sh        # install from PyPI instead of this checkout
#   EDGESKIN_EXTRAS= devices/install-rpi.sh              # skip the [ui] extra (Streamlit)
#   EDGESKIN_VENV=/opt/edgeskin/venv devices/install-rpi.sh
#
# What it does, and why:
#  1. apt: python3-picamera2 (libcamera's Python bindings cannot be built by pip; Raspberry Pi ships them
#     as a system package), python3-tk (the kiosk), python3-venv.
#  2. A venv made with --system-site-packages, so the venv sees picamera2 and Tk from apt.
#  3. The system numpy is kept: picamera2's compiled helpers (simplejpeg, ...) are built against it, and a
#     numpy 2 from pip shadowing a system numpy 1 breaks them ("numpy.dtype size changed"). With a numpy 1
#     system, OpenCV is held below 4.12 (4.12 and later require numpy 2).
#  4. pip install edgeskin[ui] (the runtime: numpy, OpenCV, ai-edge-litert; plus Streamlit for `edgeskin ui`).
#  5. A check that the camera and the interpreter load, and how to enable the kiosk service.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="${EDGESKIN_VENV:-$HOME/edgeskin-venv}"
EXTRAS="${EDGESKIN_EXTRAS-ui}"
SPEC="${EDGESKIN_SPEC:-$REPO}"

if [[ ! -r /proc/device-tree/model ]] || ! grep -qa "Raspberry Pi" /proc/device-tree/model; then
  echo "install-rpi.sh: this is not a Raspberry Pi (no 'Raspberry Pi' in /proc/device-tree/model); on other" >&2
  echo "machines use: pip install edgeskin" >&2
  exit 1
fi
echo "== $(tr -d '\0' </proc/device-tree/model)"

echo "== apt: picamera2, Tk, venv"
sudo apt-get update
sudo apt-get install -y python3-picamera2 python3-tk python3-venv python3-pip

echo "== venv $VENV (--system-site-packages: it must see picamera2 and Tk from apt)"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
SYSTEM_NUMPY="$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
if [[ -n "$SYSTEM_NUMPY" ]]; then
  echo "numpy==$SYSTEM_NUMPY" >>"$CONSTRAINTS"
  if [[ "$SYSTEM_NUMPY" == 1.* ]]; then
    echo "opencv-python-headless<4.12" >>"$CONSTRAINTS"
  fi
  echo "== keeping the system numpy $SYSTEM_NUMPY ($(tr '\n' ' ' <"$CONSTRAINTS"))"
fi

TARGET="$SPEC"
if [[ -n "$EXTRAS" ]]; then
  TARGET="$SPEC[$EXTRAS]"
fi
echo "== pip install $TARGET"
"$VENV/bin/python" -m pip install -c "$CONSTRAINTS" "$TARGET"

echo "== check"
"$VENV/bin/python" - <<'PY'
import edgeskin
from edgeskin.devices import detect_profile, load_profile

profile = load_profile(detect_profile())
print(f"edgeskin {edgeskin.__version__}, device profile {profile.name}: {profile.description}")
try:
    import picamera2  # noqa: F401
    print("picamera2: importable")
except ImportError as exc:
    print(f"picamera2: NOT importable ({exc})")
try:
    import tkinter  # noqa: F401
    print("tkinter: importable")
except ImportError as exc:
    print(f"tkinter: NOT importable ({exc})")
from edgeskin.runtime.interpreter import interpreter_backend
print(f"TFLite interpreter: {interpreter_backend().name}")
PY

cat <<EOF

Installed. Try:
  $VENV/bin/edgeskin run --source picamera2 --max-frames 100 --json run.json
  $VENV/bin/edgeskin kiosk --source picamera2
For the kiosk at boot (desktop session, user $(id -un)):
  sed -e "s#/home/pi/edgeskin-venv#$VENV#g" -e "s#/home/pi#$HOME#g" -e "s#^User=pi#User=$(id -un)#" \\
    "$HERE/edgeskin-kiosk.service" \\
    | sudo tee /etc/systemd/system/edgeskin-kiosk.service >/dev/null
  sudo systemctl daemon-reload && sudo systemctl enable --now edgeskin-kiosk.service
EOF
