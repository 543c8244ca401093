#!/usr/bin/env bash
# System packages for building and running deltawkv on Debian 12 (run as root), and a check that
# the Rust toolchain (rust-version in Cargo.toml) is installed.
#  - libgtk-3-dev: native file dialogs (rfd's gtk3 backend, works under plain X11)
#  - cmake: builds the CharLS JPEG-LS codec used by dicom-pixeldata
#  - mesa-vulkan-drivers + libvulkan1: Vulkan loader and lavapipe, the software GPU used without a
#    real GPU (and by the test suite)
#  - libxkbcommon-x11-0, libwayland-client0: window system libraries loaded by winit at run time
#  - xvfb: a virtual X server; tests/app_display.rs opens the real viewer window on it and kills
#    it, checking that a lost display ends with a message and exit code 1 rather than a panic
#  - slurm-wlm + munge: scripts/test-slurm.sh starts a one-node Slurm cluster for `deltawkv batch`
#  - python3-torch (+ a venv adding safetensors): the Python suite, train/tests
# With --deb, also what scripts/test-deb.sh needs to build and check the Debian package: cargo-deb
# (cargo install --locked, into ~/.cargo/bin), dpkg-dev (dpkg-shlibdeps for the package's
# dependencies), desktop-file-utils (desktop-file-validate), and the MIME database and gio that
# the test queries.
set -euo pipefail
deb=""
for arg in "$@"; do
  case "$arg" in
    --deb) deb=yes ;;
    *)
      echo "usage: $0 [--deb]" >&2
      exit 2
      ;;
  esac
done
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential pkg-config cmake libgtk-3-dev \
  mesa-vulkan-drivers libvulkan1 libxkbcommon-x11-0 libwayland-client0 libegl1 xvfb \
  python3-numpy python3-scipy python3-pytest >/dev/null
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
# The derived DICOM series' checks (tests/volume/derived.rs): dciodvfy (dicom3tools) validates every
# written instance against its IOD, pydicom (Debian's python3) reads the series back.
apt-get install -y -qq --no-install-recommends dicom3tools python3-pydicom >/dev/null
# The PACS tests (tests/pacs/) start a real Orthanc and cross-check with dcmtk's findscu; the
# DICOM TLS tests make a throwaway CA and certificates with openssl.
apt-get install -y -qq --no-install-recommends orthanc dcmtk openssl >/dev/null

# The Python suite (train/tests) and the golden self-check (train/tools/gen_golden.py --check):
# Debian's CPU build of PyTorch, and a venv on top of Debian's python3 (system site packages:
# torch, numpy, scipy, pytest) adding safetensors, which Debian 12 does not package, from PyPI.
apt-get install -y -qq --no-install-recommends python3-torch python3-venv >/dev/null
PYENV_DIR=${DELTAWKV_PY:-/opt/deltawkv-py}
if [ ! -x "$PYENV_DIR/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$PYENV_DIR"
fi
"$PYENV_DIR/bin/python" -m pip install -q --disable-pip-version-check safetensors==0.4.5

# The Rust toolchain is not a Debian 12 package of the right version: check for it and say how to
# get it (rust-version in Cargo.toml is the oldest that builds the project).
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
  echo "error: no Rust toolchain found (cargo, rustc). deltawkv needs Rust $need or newer:" >&2
  echo "  install rustup (https://rustup.rs), then run: rustup toolchain install stable" >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "error: rustc $have is older than the $need that deltawkv needs: run 'rustup update stable'" >&2
  exit 1
fi
echo "Rust toolchain: rustc $have (needs $need or newer)"

if [ -n "$deb" ]; then
  apt-get install -y -qq --no-install-recommends dpkg-dev desktop-file-utils shared-mime-info \
    libglib2.0-bin hicolor-icon-theme >/dev/null
  # The version is pinned so that CI builds the same package every time.
  cargo_deb=3.8.0
  if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$cargo_deb" ]; then
    cargo install cargo-deb --version "$cargo_deb" --locked
  fi
  echo "cargo-deb: $(cargo deb --version)"
fi
