#!/usr/bin/env bash
# Runs every check CI runs: format, lints, tier 0 (unit), tier 1 (host, root), tier 2 (qemu).
# Usage: bash scripts/test.sh [--skip-tier2]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
skip_tier2=0; [ "${1:-}" = --skip-tier2 ] && skip_tier2=1
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }
T0=$(date +%s)

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "tier 0: unit and in-process tests"
cargo test --workspace

step "tier 1: host integration (root, loop devices, mkfs, mount, blkio)"
cargo test --workspace --test 'tier1_*' -- --ignored --test-threads=1

if [ "$skip_tier2" = 0 ]; then
  step "tier 2: real Debian kernel under qemu (LVM, dm-crypt, DRBD)"
  bash tests/vm/run-tier2.sh
fi
echo "all tiers passed in $(( $(date +%s) - T0 ))s"
