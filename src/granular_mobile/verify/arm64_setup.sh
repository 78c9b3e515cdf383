#!/usr/bin/env bash
# The arm64 userland that `gdq verify --arch arm64` (granular_mobile/verify/arm64.py) runs
# the exported graphs in, under QEMU user-mode emulation. Idempotent: a complete root is left
# as it is (delete the folder, or change a pin, to rebuild).
#
#   gdq verify --arch arm64 --setup      # from an install: the installed runtimes' versions
#   bash src/granular_mobile/verify/arm64_setup.sh   # from a checkout: pyproject.toml's pins
#
# The root is in ${GDQ_ARM64_CACHE:-~/.cache/granular-mobile/arm64}/root.
# Made from Debian packages only (bookworm: Debian's qemu-user-static on the host; an arm64
# minbase + python3.11 unpacked by debootstrap's first stage, no second stage, so no binfmt_misc
# is needed) and the aarch64 wheels of the pinned runtimes from PyPI, installed from the host
# (pip --platform, nothing is built or run under emulation but a final import check).
# Needs root (apt-get, or sudo) the first time; about 400 MB on disk.
set -euo pipefail
CACHE="${GDQ_ARM64_CACHE:-$HOME/.cache/granular-mobile/arm64}"
ROOT="$CACHE/root"
MIRROR="${GDQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# the runtimes' versions: GDQ_ARM64_ORT / GDQ_ARM64_LITERT (`gdq verify --setup` sets the
# installed ones), else the checkout's pins (pyproject.toml, three folders up);
# numpy is the one the x86 side uses
PYPROJECT="$(dirname "$0")/../../../pyproject.toml"
pin() { [ -f "$PYPROJECT" ] && grep -o "\"$1==[^\"]*\"" "$PYPROJECT" | head -1 | tr -d '"' | cut -d= -f3; }
ORT="${GDQ_ARM64_ORT:-$(pin onnxruntime || true)}"
LITERT="${GDQ_ARM64_LITERT:-$(pin ai-edge-litert || true)}"
if [ -z "$ORT" ] || [ -z "$LITERT" ]; then
  echo "no runtime versions: set GDQ_ARM64_ORT and GDQ_ARM64_LITERT, or run \`gdq verify --arch arm64 --setup\`" >&2
  exit 2
fi
NUMPY="${GDQ_ARM64_NUMPY:-2.4.6}"
PY="${PYTHON:-}"  # a python with pip, to install the aarch64 wheels (default: a venv in the cache)
# the emulator: bookworm's qemu-user-static (7.2, the default), or trixie's qemu-user (10.0;
# GDQ_ARM64_QEMU=trixie), which `gdq verify --cpu max` (SVE2) needs: 7.2 miscomputes XNNPack's
# SVE kernels (9 dB on sr_a4.tflite), 10.0 gives x86's output exactly
QEMU_SUITE="${GDQ_ARM64_QEMU:-bookworm}"
WANT="debian=$SUITE qemu=$QEMU_SUITE onnxruntime=$ORT ai-edge-litert=$LITERT numpy=$NUMPY"
if [ -f "$ROOT/.gdq-arm64-ready" ] && grep -qF "\"pins\": \"$WANT\"" "$ROOT/.gdq-arm64-ready"; then
  echo "arm64 root ready: $ROOT ($WANT)"; exit 0
fi

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  $SUDO apt-get update -q && $SUDO apt-get install -y -q qemu-user-static debootstrap
fi

mkdir -p "$CACHE"
rm -f "$ROOT/.gdq-arm64-ready"
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
  rm -rf "$ROOT"
  # first stage only: downloads the arm64 packages and unpacks the required ones
  $SUDO debootstrap --arch=arm64 --variant=minbase --foreign --include=python3.11 "$SUITE" "$ROOT" "$MIRROR"
  # unpack every downloaded package (what the second stage would do, minus the maintainer
  # scripts, which a root that only runs python does not need); the merged-/usr links stay
  for d in "$ROOT"/var/cache/apt/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$d" | $SUDO tar -C "$ROOT" --keep-directory-symlink --skip-old-files -xf -
  done
  $SUDO rm -f "$ROOT"/var/cache/apt/archives/*.deb
fi
# /proc and /sys are plain folders with the files arm64.py writes (never the host's)
for d in proc sys; do
  if [ -L "$ROOT/$d" ]; then $SUDO rm "$ROOT/$d"; fi
  $SUDO mkdir -p "$ROOT/$d"
done
$SUDO mkdir -p "$ROOT/tmp" && $SUDO chmod 1777 "$ROOT/tmp"
QEMU_BIN="$(command -v qemu-aarch64-static)"
if [ "$QEMU_SUITE" != bookworm ]; then
  # one package of another Debian suite, fetched with apt's own client into the cache (the
  # host's apt sources are not touched); its qemu-aarch64 is statically linked
  A="$CACHE/apt-$QEMU_SUITE"
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/deb"
  echo "deb $MIRROR $QEMU_SUITE main" > "$A/sources.list"
  AO=(-o "Dir::Etc::sourcelist=$A/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$A/lists"
      -o "Dir::Cache=$A/cache" -o APT::Sandbox::User=root)
  $SUDO apt-get "${AO[@]}" update -q
  (cd "$A/deb" && rm -f qemu-user_*.deb && $SUDO apt-get "${AO[@]}" download "qemu-user/$QEMU_SUITE")
  rm -rf "$A/x" && dpkg-deb -x "$A"/deb/qemu-user_*.deb "$A/x"
  QEMU_BIN="$A/x/usr/bin/qemu-aarch64"
fi
$SUDO cp "$QEMU_BIN" "$ROOT/usr/bin/qemu-aarch64-static"

if [ -z "$PY" ]; then
  [ -x "$CACHE/venv/bin/python" ] || python3 -m venv "$CACHE/venv"
  PY="$CACHE/venv/bin/python"
fi
# the aarch64 wheels (onnxruntime: manylinux_2_28, ai-edge-litert and numpy: manylinux_2_27;
# bookworm's glibc is 2.36)
$SUDO rm -rf "$ROOT/opt/gdq-site"
$SUDO "$PY" -m pip install -q --no-compile --disable-pip-version-check --only-binary=:all: \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
  --python-version 3.11 --implementation cp --target "$ROOT/opt/gdq-site" \
  "numpy==$NUMPY" "onnxruntime==$ORT" "ai-edge-litert==$LITERT"

# check: the emulated python imports both runtimes
ENTER=(chroot "$ROOT"); [ "$(id -u)" -eq 0 ] || ENTER=(unshare --map-root-user "--root=$ROOT")
got="$("${ENTER[@]}" /usr/bin/qemu-aarch64-static /usr/bin/python3.11 -c '
import sys, platform; sys.path.insert(0, "/opt/gdq-site")
import numpy, onnxruntime, ai_edge_litert.interpreter
print(platform.machine(), onnxruntime.__version__, ai_edge_litert.__version__, numpy.__version__)' 2>/dev/null)"
[ "$got" = "aarch64 $ORT $LITERT $NUMPY" ] || { echo "arm64 root check failed: got '$got'" >&2; exit 1; }
QEMU_VER="$("$ROOT/usr/bin/qemu-aarch64-static" --version | head -1 | grep -o 'version [0-9.]*' | cut -d' ' -f2)"
printf '{"pins": "%s", "qemu": "%s", "python": "3.11"}\n' "$WANT" "$QEMU_VER" | $SUDO tee "$ROOT/.gdq-arm64-ready" >/dev/null
echo "arm64 root ready: $ROOT ($WANT, QEMU $QEMU_VER)"
