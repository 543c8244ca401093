#!/usr/bin/env bash
# The project's whole check, identical to CI: formatting, lints, and the test suite
# (GPU kernels run on Mesa's lavapipe software Vulkan driver).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --no-fail-fast 2>&1 | tee /tmp/deltawkv-test.log
# `deltawkv batch` as a Slurm job array on a one-node cluster started here (about a minute).
echo "== scripts/test-slurm.sh"
./scripts/test-slurm.sh
# Python twins of the metrics and degradations (numpy only; torch tests skip without torch).
# Debian's interpreter, which has the packages scripts/install-deps.sh installs.
PY=/usr/bin/python3
if [ -x "$PY" ] && "$PY" -c "import numpy, scipy, pytest" 2>/dev/null && [ -d train/tests ]; then
  echo "== pytest (train/)"
  (cd train && "$PY" -m pytest -q tests) || { rc=$?; [ "$rc" = 5 ] || exit "$rc"; }
fi
