#!/usr/bin/env bash
# The Debian package, end to end, on this machine (as root; CI runs it after scripts/check.sh):
#  1. build it with cargo-deb (`scripts/install-deps.sh --deb` installs cargo-deb);
#  2. install it with dpkg -i;
#  3. validate the installed desktop entry, run the installed binary (--version, info on the
#     installed sample, upscale with the installed checkpoint found without any variable), check
#     the MIME types and the association with the desktop entry, and run the viewer under Xvfb
#     for a few seconds on a file passed as the desktop entry's Exec line passes it;
#  4. remove it (dpkg -r, then dpkg -P) and check that nothing it installed is left behind.
# Refuses to run where a deltawkv package is already installed (it would remove it).
#
# Usage: scripts/test-deb.sh [--no-build DEB]   (--no-build: test an existing .deb)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { printf '== %s\n' "$*"; }
fail() {
  printf 'test-deb: FAIL: %s\n' "$*" >&2
  exit 1
}
t0=$(date +%s.%N)
phase_start=$t0
phase() { # phase NAME: prints the time since the previous phase
  local now
  now=$(date +%s.%N)
  awk -v a="$phase_start" -v b="$now" -v n="$1" 'BEGIN { printf "   (%s: %.1f s)\n", n, b - a }'
  phase_start=$now
}

[ "$(id -u)" = 0 ] || fail "run as root: the test installs and removes a package with dpkg"
for tool in dpkg dpkg-deb desktop-file-validate Xvfb; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh --deb"
done
# The package's state in dpkg's database: empty or not-installed when absent.
state() { dpkg-query -W -f='${db:Status-Status}' deltawkv 2>/dev/null || true; }
if [ -n "$(state)" ] && [ "$(state)" != not-installed ]; then
  fail "a deltawkv package is already installed: remove it first (dpkg -P deltawkv)"
fi

deb=""
if [ "${1:-}" = "--no-build" ]; then
  deb=${2:?"--no-build needs the .deb"}
else
  command -v cargo-deb >/dev/null || fail "cargo-deb is missing: run scripts/install-deps.sh --deb"
  say "cargo deb (profile and options: [package.metadata.deb] in Cargo.toml)"
  log=$(mktemp)
  cargo deb --locked 2>&1 | tee "$log"
  # cargo-deb prints the path of the package it wrote last.
  deb=$(grep -E '\.deb$' "$log" | tail -n1 | sed 's/^.* //')
  rm -f "$log"
  phase "package build"
fi
[ -f "$deb" ] || fail "no package at '$deb'"
say "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'

work=$(mktemp -d /tmp/test-deb.XXXXXX)
xvfb_pid=""
viewer_pid=""
cleanup() {
  [ -n "$viewer_pid" ] && kill "$viewer_pid" 2>/dev/null || true
  [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
  # Never leave the package installed by this script behind, whatever failed.
  if [ -n "$(state)" ] && [ "$(state)" != not-installed ]; then
    dpkg -P deltawkv >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# What the package holds, and which of those paths exist before it is installed (the folders
# it shares with the system: /usr/share/applications, the icon theme, ...).
dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's#^\./#/#' -e 's#/$##' | grep -v '^/\?$' |
  sort >"$work/contents"
while read -r p; do [ -e "$p" ] && echo "$p"; done <"$work/contents" >"$work/existed"
generated=(/usr/share/mime/application/x-nifti.xml /usr/share/mime/application/x-nifti+gzip.xml)
for g in "${generated[@]}"; do [ -e "$g" ] && fail "$g exists before the install"; done

say "dpkg -i"
dpkg -i "$deb"
phase "install"
dpkg -L deltawkv | grep -v '^/\.$' | sort >"$work/listed"
diff -u "$work/contents" "$work/listed" || fail "dpkg -L differs from the package's contents"

say "desktop entry"
entry=/usr/share/applications/deltawkv.desktop
desktop-file-validate "$entry" || fail "desktop-file-validate $entry"
for f in /usr/share/icons/hicolor/scalable/apps/deltawkv.svg \
  /usr/share/icons/hicolor/{48x48,128x128,256x256}/apps/deltawkv.png; do
  [ -s "$f" ] || fail "icon $f missing"
done

say "installed binary, from a folder with no weights and without the weights variables"
unset DELTAWKV_WEIGHTS_DIR DELTAWKV_WEIGHTS DELTAWKV_LOG
cd "$work"
version=$(/usr/bin/deltawkv --version)
echo "$version"
pkg_version=$(dpkg-query -W -f='${Version}' deltawkv)
[[ "$version" =~ ^deltawkv\ ${pkg_version%-*}\ \(commit\ ([0-9a-f]{7,}|unknown)\;\ features:\ .*viewer.*\)$ ]] ||
  fail "--version: '$version' (package version $pkg_version)"
sample=/usr/share/deltawkv/assets/sample_pd.nii.gz
/usr/bin/deltawkv info "$sample" | tee "$work/info.txt"
grep -q '256 x 256 x 20' "$work/info.txt" || fail "info on the installed sample"
# A tiny DICOM series upscaled with the installed x2 checkpoint, found in /usr/share/deltawkv.
/usr/bin/deltawkv upscale "$repo/tests/data/fixtures/dicom_series_tiny16" "$work/sr.nii.gz" \
  --scale 2 --device cpu --json >"$work/upscale.json"
grep -q '"weights": *"/usr/share/deltawkv/weights/dwkv3m_x2.safetensors"' "$work/upscale.json" ||
  fail "upscale did not use the installed checkpoint: $(cat "$work/upscale.json")"
/usr/bin/deltawkv info "$work/sr.nii.gz" >/dev/null || fail "the upscaled volume does not read back"
cd "$repo"
phase "command line"

say "MIME types and the association"
cp "$repo/tests/data/fixtures/nifti/anatomical.nii" "$work/scan.nii"
cp "$sample" "$work/scan.nii.gz"
cp "$repo/tests/data/fixtures/dicom_single_mr_small/MR_small.dcm" "$work/image.dcm"
if command -v gio >/dev/null; then
  for f in scan.nii:application/x-nifti scan.nii.gz:application/x-nifti+gzip \
    image.dcm:application/dicom; do
    got=$(gio info -a standard::content-type "$work/${f%%:*}" | sed -n 's/.*content-type: //p')
    echo "${f%%:*}: $got"
    [ "$got" = "${f#*:}" ] || fail "${f%%:*} is $got, not ${f#*:}"
  done
  for t in application/x-nifti application/x-nifti+gzip application/dicom; do
    gio mime "$t" | tee "$work/gio-mime.txt"
    grep -q 'deltawkv.desktop' "$work/gio-mime.txt" || fail "no association of $t with deltawkv"
  done
else
  echo "(gio not installed: the database files are checked instead)"
  grep -q 'x-nifti' /usr/share/mime/globs2 || fail "*.nii is not in the MIME database"
fi
if [ -f /usr/share/applications/mimeinfo.cache ]; then
  grep -E '^application/(x-nifti|dicom)=' /usr/share/applications/mimeinfo.cache
  grep -q '^application/x-nifti=.*deltawkv.desktop' /usr/share/applications/mimeinfo.cache ||
    fail "mimeinfo.cache lacks deltawkv.desktop for application/x-nifti"
fi
if command -v xdg-mime >/dev/null; then
  echo "xdg-mime query default application/x-nifti: $(xdg-mime query default application/x-nifti)"
fi
phase "MIME"

say "the viewer under Xvfb, started as the desktop entry starts it"
exec_line=$(sed -n 's/^Exec=//p' "$entry")
cmd=${exec_line//%f/$work/scan.nii.gz}
echo "Exec=$exec_line  ->  $cmd"
display=""
for n in $(seq 90 130); do
  if [ ! -e "/tmp/.X11-unix/X$n" ] && [ ! -e "/tmp/.X$n-lock" ]; then
    display=":$n"
    break
  fi
done
[ -n "$display" ] || fail "no free X display number"
Xvfb "$display" -screen 0 1600x1000x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X${display#:}" ] && break; sleep 0.1; done
# A desktop session's environment: a home and a runtime folder of its own (libwayland says so on
# stderr when XDG_RUNTIME_DIR is missing, as it is in CI's shell).
mkdir -p "$work/home" "$work/run"
chmod 700 "$work/run"
# $cmd is the Exec line with its field code replaced: word splitting as the desktop would do.
# shellcheck disable=SC2086
env -C "$work" -i DISPLAY="$display" HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" \
  XDG_DATA_HOME="$work/home/.local/share" XDG_RUNTIME_DIR="$work/run" DELTAWKV_LOG=info \
  NO_COLOR=1 PATH=/usr/bin:/bin $cmd >"$work/viewer.out" 2>"$work/viewer.err" &
viewer_pid=$!
shown=""
for _ in $(seq 300); do # up to 30 s for the first frame (lavapipe on 2 cores)
  kill -0 "$viewer_pid" 2>/dev/null || break
  if grep -q 'first frame on screen' "$work/viewer.err"; then
    shown=yes
    break
  fi
  sleep 0.1
done
sleep 5 # a few seconds of running: loading the volume, the first SR slices
alive=yes
kill -0 "$viewer_pid" 2>/dev/null || alive=""
if [ -n "$alive" ]; then
  kill "$viewer_pid"
  wait "$viewer_pid" 2>/dev/null || true
else
  wait "$viewer_pid" 2>/dev/null || rc=$?
fi
viewer_pid=""
kill "$xvfb_pid" 2>/dev/null || true
wait "$xvfb_pid" 2>/dev/null || true
xvfb_pid=""
# Plain text, whatever the log's colours.
sed -i 's/\x1b\[[0-9;]*m//g' "$work/viewer.err"
grep -E 'first frame on screen|loaded' "$work/viewer.err" | head -n 5 || true
[ -n "$alive" ] || fail "the viewer exited (code ${rc:-?}) within seconds: $(cat "$work/viewer.err")"
[ -n "$shown" ] || fail "no first frame logged within 30 s: $(cat "$work/viewer.err")"
# Errors of any kind fail; warnings only from deltawkv itself (winit's about Xvfb's display and
# egui-wgpu's about a software rasteriser are the test machine's, shown but allowed).
if grep -E ' ERROR |panicked|error:| WARN deltawkv' "$work/viewer.err"; then
  fail "the viewer printed the errors or warnings above"
fi
grep ' WARN ' "$work/viewer.err" || true
phase "viewer"

say "dpkg -r, then dpkg -P"
dpkg -r deltawkv
[ ! -e /usr/bin/deltawkv ] || fail "/usr/bin/deltawkv is still there after dpkg -r"
if [ "$(state)" = config-files ]; then
  dpkg -P deltawkv
else
  echo "(dpkg -P: nothing left to purge, the package has no configuration files)"
fi
[ -z "$(state)" ] || [ "$(state)" = not-installed ] || fail "deltawkv is '$(state)' after dpkg -P"
left=$(comm -23 "$work/contents" "$work/existed" | while read -r p; do
  [ -e "$p" ] && echo "$p"
done || true)
[ -z "$left" ] || fail "left behind after dpkg -P: $left"
for g in "${generated[@]}"; do [ -e "$g" ] && fail "$g is left in the MIME database"; done
if [ -f /usr/share/applications/mimeinfo.cache ] &&
  grep -q 'deltawkv.desktop' /usr/share/applications/mimeinfo.cache; then
  fail "mimeinfo.cache still names deltawkv.desktop"
fi
phase "remove"

awk -v a="$t0" -v b="$(date +%s.%N)" -v d="$(basename "$deb")" \
  'BEGIN { printf "test-deb: OK (%s; %.0f s in all)\n", d, b - a }'
