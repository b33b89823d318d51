#!/usr/bin/env bash
# Bit-exact parity of edgeskin on x86 and on emulated aarch64 (Raspberry Pi 4 = Cortex-A72, Pi 5 = Cortex-A76).
#
#   sudo scripts/check-aarch64.sh [N]        # N PH2 images (default 50); `make test-arm64` runs it
#
# Builds (once, cached in $EDGESKIN_ARM64_ROOT, default /var/cache/edgeskin-arm64) a Debian 12 bookworm
# arm64 root with debootstrap and qemu-user-static, installs the edgeskin wheel built from this tree into
# a venv there with the aarch64 wheels of numpy, opencv-python-headless and ai-edge-litert at the host
# venv's versions (from the configured package index: the local wheel mirror is x86 only), then runs
# scripts/parity_run.py on the first N PH2 images (sorted by name) on x86 and under qemu-user with
# QEMU_CPU=cortex-a72 and cortex-a76, threads=1. Fails unless boxes, scores, probabilities, refer flags
# and CAMs (and the model input tensors) are bit-identical, and unless OpenCV's exact operations match the
# pure-numpy references of tests/core/exact_reference.py on each machine. Results: $OUT_DIR (default
# test-artifacts/arm64). Needs root (debootstrap, chroot, mounts). Idempotent: rerunning reuses the root
# and the venv and reinstalls only the edgeskin wheel.
#
# Emulated timings mean nothing: this checks answers, never speed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-${N:-50}}
ROOT=${EDGESKIN_ARM64_ROOT:-/var/cache/edgeskin-arm64}
IMAGES=${PH2_IMAGES:-$REPO/../shared/data/ph2/images}
CPUS=${QEMU_CPUS:-cortex-a72 cortex-a76}
OUT=${OUT_DIR:-$REPO/test-artifacts/arm64}
PY=${PYTHON:-$REPO/.venv/bin/python}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NICE=${NICE:-nice -n 15}

say() { echo "check-aarch64: $*"; }
die() { echo "check-aarch64: error: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and bind mounts)"
CHROOT=$(command -v chroot) || die "no chroot command"
[ -x "$PY" ] || die "no Python at $PY (run make setup-dev, or set PYTHON=)"
[ -d "$IMAGES" ] || die "no PH2 images at $IMAGES (set PH2_IMAGES=)"
case "$N" in '' | *[!0-9]* | 0) die "N must be a positive number of images, got '$N'" ;; esac

# -- host tools: debootstrap, qemu-user-static, binfmt -------------------------------------------------
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null \
    || ! command -v update-binfmts >/dev/null; then
    say "installing debootstrap qemu-user-static binfmt-support"
    apt-get update -qq && apt-get install -y -qq debootstrap qemu-user-static binfmt-support >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || die "binfmt qemu-aarch64 lacks the F (fix-binary) flag: the chroot cannot find its interpreter"

# -- the arm64 root (cached) ---------------------------------------------------------------------------
if [ ! -e "$ROOT/.edgeskin-bootstrapped" ]; then
    [ -e "$ROOT" ] && { say "removing the unfinished root $ROOT"; rm -rf --one-file-system "$ROOT"; }
    say "debootstrap bookworm arm64 into $ROOT (several minutes, once)"
    $NICE debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || die "debootstrap failed: see $ROOT.debootstrap.log"
    touch "$ROOT/.edgeskin-bootstrapped"
fi
mkdir -p "$ROOT/opt/edgeskin" "$ROOT/etc/edgeskin" "$OUT"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

# Raspberry Pi style /proc/cpuinfo per CPU: under qemu-user the chroot would see the host's x86 one and
# XNNPACK (cpuinfo) then crashes with SIGSEGV.
cpuinfo() { # $1 = part number, $2 = features
    for core in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$core" "$2"
        printf 'CPU architecture: 8\nCPU variant\t: 0x%s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$3" "$1" "$4"
    done
    printf 'Hardware\t: BCM2835\nRevision\t: %s\nModel\t\t: %s\n' "$5" "$6"
}
cpuinfo 0xd08 "fp asimd evtstrm crc32 cpuid" 0 3 c03111 "Raspberry Pi 4 Model B Rev 1.1" >"$ROOT/etc/edgeskin/cpuinfo-cortex-a72"
cpuinfo 0xd0b "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
    4 1 d04170 "Raspberry Pi 5 Model B Rev 1.0" >"$ROOT/etc/edgeskin/cpuinfo-cortex-a76"

MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" || true; done
}
trap cleanup EXIT
mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc"); }
mountpoint -q "$ROOT/dev" || { mount --bind /dev "$ROOT/dev"; MOUNTS+=("$ROOT/dev"); }
# cpuinfo also reads /sys/devices/system/cpu/{possible,present}: without them it fails to initialise and
# LiteRT silently runs its built-in kernels instead of XNNPACK (other rounding: answers differ).
mountpoint -q "$ROOT/sys" || { mount -t sysfs sysfs "$ROOT/sys"; MOUNTS+=("$ROOT/sys"); }

in_root() { # run a command in the arm64 root with a clean environment (plus "$EXTRA_ENV")
    # shellcheck disable=SC2086
    $NICE env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 ${EXTRA_ENV:-} "$CHROOT" "$ROOT" "$@"
}

# -- the venv: aarch64 wheels of the host venv's versions, then this tree's wheel -------------------------
version() { "$PY" -c "from importlib.metadata import version; print(version('$1'))"; }
PINS="numpy==$(version numpy) opencv-python-headless==$(version opencv-python-headless) ai-edge-litert==$(version ai-edge-litert)"
# pip in the root uses the host's CA bundle and its http(s) package index (not the x86-only local mirror).
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/edgeskin/host-ca.crt"
INDEX=${PIP_INDEX_URL:-$("$PY" -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.index-url='\(https\{0,1\}:[^']*\)'$/\1/p" | head -n 1)}
PIP_ENV="PIP_CERT=/etc/edgeskin/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-180}"
[ -n "$INDEX" ] && PIP_ENV="$PIP_ENV PIP_INDEX_URL=$INDEX"
VENV=/opt/edgeskin/venv
[ -x "$ROOT$VENV/bin/python" ] || { say "creating $VENV in the root"; in_root python3 -m venv "$VENV"; }
if [ "$(EXTRA_ENV="$PIP_ENV" in_root "$VENV/bin/pip" freeze 2>/dev/null | grep -ciE "^(numpy|opencv-python-headless|ai-edge-litert)==($(echo "$PINS" | tr ' ' '\n' | sed 's/.*==//' | paste -sd'|'))$")" != 3 ]; then
    say "installing $PINS (aarch64 wheels only) in the root"
    # shellcheck disable=SC2086
    EXTRA_ENV="$PIP_ENV" in_root "$VENV/bin/pip" install -q --only-binary=:all: $PINS
fi
say "building the edgeskin wheel"
rm -rf "$OUT/wheel" && mkdir -p "$OUT/wheel"
(cd "$REPO" && "$PY" -m pip wheel -q --no-deps --no-build-isolation --no-index -w "$OUT/wheel" . >/dev/null)
WHEEL=$(ls "$OUT"/wheel/edgeskin-*.whl | head -n 1)
rm -f "$ROOT"/opt/edgeskin/edgeskin-*.whl && cp "$WHEEL" "$ROOT/opt/edgeskin/"
EXTRA_ENV="$PIP_ENV" in_root "$VENV/bin/pip" install -q --no-deps --force-reinstall "/opt/edgeskin/$(basename "$WHEEL")"
cp "$REPO/scripts/parity_run.py" "$REPO/tests/core/exact_reference.py" "$ROOT/opt/edgeskin/"

# -- the same script on the same images, x86 and each emulated CPU ---------------------------------------
rm -rf "$ROOT/opt/edgeskin/images" "$ROOT/opt/edgeskin/out" && mkdir -p "$ROOT/opt/edgeskin/images" "$ROOT/opt/edgeskin/out"
mapfile -t FILES < <(find "$IMAGES" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.png' -o -iname '*.bmp' \) | sort | head -n "$N")
[ "${#FILES[@]}" = "$N" ] || die "expected $N images in $IMAGES, found ${#FILES[@]}"
cp "${FILES[@]}" "$ROOT/opt/edgeskin/images/"
INNER=()
for file in "${FILES[@]}"; do INNER+=("/opt/edgeskin/images/$(basename "$file")"); done

say "x86_64: $N images"
$NICE "$PY" "$REPO/scripts/parity_run.py" "$OUT/x86_64.npz" "${FILES[@]}"
RESULTS=("$OUT/x86_64.npz")
# Each emulated CPU runs in its own mount namespace with its own cpuinfo bind-mounted over /proc/cpuinfo,
# so the CPUs run side by side (PARALLEL=0: one after the other); each one's output goes to a log.
PIDS=()
for cpu in $CPUS; do
    [ -e "$ROOT/etc/edgeskin/cpuinfo-$cpu" ] || die "no cpuinfo for $cpu (known: cortex-a72 cortex-a76)"
    say "aarch64 QEMU_CPU=$cpu: $N images (emulated; minutes) -> $OUT/aarch64-$cpu.log"
    rm -f "$ROOT/opt/edgeskin/out/$cpu.npz"
    # shellcheck disable=SC2016
    $NICE unshare --mount --propagation private sh -c 'mount --bind "$1" "$2/proc/cpuinfo" && shift 2 && exec "$@"' \
        sh "$ROOT/etc/edgeskin/cpuinfo-$cpu" "$ROOT" \
        env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$cpu" "$CHROOT" "$ROOT" \
        "$VENV/bin/python" /opt/edgeskin/parity_run.py "/opt/edgeskin/out/$cpu.npz" "${INNER[@]}" \
        >"$OUT/aarch64-$cpu.log" 2>&1 &
    PIDS+=("$!")
    [ "${PARALLEL:-1}" = 1 ] || wait "$!" || true
done
for i in "${!PIDS[@]}"; do
    cpu=$(echo $CPUS | cut -d' ' -f$((i + 1)))
    status=0
    wait "${PIDS[$i]}" || status=$?
    tail -n 1 "$OUT/aarch64-$cpu.log"
    [ "$status" = 0 ] && [ -e "$ROOT/opt/edgeskin/out/$cpu.npz" ] \
        || die "the aarch64 run with QEMU_CPU=$cpu failed (exit $status, see $OUT/aarch64-$cpu.log)"
    cp "$ROOT/opt/edgeskin/out/$cpu.npz" "$OUT/aarch64-$cpu.npz"
    RESULTS+=("$OUT/aarch64-$cpu.npz")
done

say "comparing"
status=0
"$PY" "$REPO/scripts/parity_run.py" --compare "${RESULTS[@]}" | tee "$OUT/compare.txt" || status=${PIPESTATUS[0]}
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "images: $N (first $N of $IMAGES, sorted)"
    echo "cpus: x86_64 $CPUS"
    echo "pins: $PINS"
    echo "wheel: $(basename "$WHEEL") sha256 $(sha256sum "$WHEEL" | cut -c1-16)"
    echo "result: $([ "$status" = 0 ] && echo bit-identical || echo DIFFERENT)"
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"
exit "$status"
