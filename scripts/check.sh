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
# It uses the binary `cargo test` has just built for the integration tests: a plain `cargo build`
# would build every dependency again (dev-dependencies change their features), about ten minutes
# of CI's two cores.
echo "== scripts/test-slurm.sh"
./scripts/test-slurm.sh "${CARGO_TARGET_DIR:-target}/debug/deltawkv"
# The fuzz crate (fuzz/: the loaders' own source files, by path) still builds, and every seed and
# regression input replays without a crash or a runaway allocation (FUZZING.md).
echo "== scripts/fuzz-replay.sh"
./scripts/fuzz-replay.sh
# The Python suite (train/tests: the PyTorch model against the spec, the checkpoint loader, the
# scan, the trainer, the numpy twins of the metrics and degradations) and the golden self-check,
# on the venv scripts/install-deps.sh makes (Debian's CPU PyTorch plus safetensors). Under CI
# (DELTAWKV_CI=1) a missing package or a skipped test fails the check instead of passing quietly.
PY=${DELTAWKV_PY:-/opt/deltawkv-py}/bin/python
[ -x "$PY" ] || PY=/usr/bin/python3
echo "== pytest (train/) with $PY"
if ! missing=$("$PY" -c "import numpy, scipy, pytest, torch, safetensors" 2>&1); then
  echo "${missing##*$'\n'}" >&2
  if [ "${DELTAWKV_CI:-}" = 1 ]; then
    echo "error: the Python suite cannot run (run scripts/install-deps.sh)" >&2
    exit 1
  fi
  echo "warning: the Python suite was NOT run (run scripts/install-deps.sh)" >&2
else
  t0=$(date +%s)
  (cd train && "$PY" -m pytest -q -rs tests) 2>&1 | tee /tmp/deltawkv-pytest.log
  [ "${PIPESTATUS[0]}" = 0 ] || exit 1
  if [ "${DELTAWKV_CI:-}" = 1 ] && grep -q " skipped" /tmp/deltawkv-pytest.log; then
    echo "error: Python tests were skipped under CI (see the SKIPPED lines above)" >&2
    exit 1
  fi
  echo "== gen_golden.py --check"
  "$PY" train/tools/gen_golden.py --check
  echo "== gen_golden_extra.py --check (head-32 and shipped-weights goldens)"
  "$PY" train/tools/gen_golden_extra.py --check
  echo "Python suite and golden check: $(( $(date +%s) - t0 )) s"
fi
