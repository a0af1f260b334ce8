#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then checks formatting,
# lints, and runs every test (Debian's thin_* tools and the real kernel's
# dm-thin under QEMU included).  This is the README's test command and what
# CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --all-features -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
