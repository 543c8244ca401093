#!/usr/bin/env bash
# System packages for building and running deltawkv on Debian 12 (run as root).
#  - libgtk-3-dev: native file dialogs (rfd's gtk3 backend, works under plain X11)
#  - cmake: builds the CharLS JPEG-LS codec used by dicom-pixeldata
#  - mesa-vulkan-drivers + libvulkan1: Vulkan loader and lavapipe, the software GPU used without a
#    real GPU (and by the test suite)
#  - libxkbcommon-x11-0, libwayland-client0: window system libraries loaded by winit at run time
#  - xvfb: a virtual X server; tests/app_display.rs opens the real viewer window on it and kills
#    it, checking that a lost display ends with a message and exit code 1 rather than a panic
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential pkg-config cmake libgtk-3-dev \
  mesa-vulkan-drivers libvulkan1 libxkbcommon-x11-0 libwayland-client0 libegl1 xvfb \
  python3-numpy python3-scipy python3-pytest >/dev/null
