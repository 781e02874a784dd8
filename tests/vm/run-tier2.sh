#!/bin/bash
# Tier 2 for CI: set up the harness, build every `tests/tier2_*.rs` target of
# the workspace, run each binary in its own qemu guest (cargo-runner.sh), then
# the two-guest targets (`tier2_*_pair`, run-pair.sh); `tier2_*_reboot` targets
# boot twice (cargo-runner.sh). Print one line per
# binary and a summary, and exit non-zero if anything failed.
#
#   bash tests/vm/run-tier2.sh [libtest args...]   e.g. a test-name filter
#
# Environment: TIER2_ONLY=<regex> selects target names; TIER2_JOBS=N single-guest
# binaries at once (default: the host's cores); TIER2_PACKAGES="a b"
# builds only those packages instead of the workspace; VM_TIMEOUT etc. as in
# cargo-runner.sh. Logs: tests/vm/run/tier2-<time>/<target>.log.
set -uo pipefail
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$VM_DIR/../.." && pwd)
cd "$ROOT" || exit 2
T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

echo "=== tier 2: setup"
bash "$VM_DIR/setup.sh" || { echo "tier 2: setup failed"; exit 2; }

# Sweep: run directories of earlier runs that are long finished.
find "$VM_DIR/run" -mindepth 1 -maxdepth 1 -mmin +120 -exec rm -rf {} + 2> /dev/null
LOGDIR=$VM_DIR/run/tier2-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"

echo "=== tier 2: build"
TB=$(date +%s.%N)
# One line per tier-2 test binary: <target name> <executable> <package dir>
SCOPE=(--workspace)
if [ -n "${TIER2_PACKAGES:-}" ]; then
  SCOPE=()
  for p in $TIER2_PACKAGES; do SCOPE+=(-p "$p"); done
fi
if ! cargo test "${SCOPE[@]}" --test 'tier2_*' --no-run --message-format=json \
  2> "$LOGDIR/build.stderr" > "$LOGDIR/build.json"; then
  tail -40 "$LOGDIR/build.stderr"
  echo "tier 2: build failed"
  exit 1
fi
mapfile -t BINS < <(/usr/bin/python3 - "$LOGDIR/build.json" "${TIER2_ONLY:-.}" << 'EOF'
import json, os, re, sys
seen = {}
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target") or {}
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if "test" not in t.get("kind", []) or not t.get("name", "").startswith("tier2_"):
        continue
    if not re.search(sys.argv[2], t["name"]):
        continue
    seen[t["name"]] = (m["executable"], os.path.dirname(m["manifest_path"]))
# single-guest targets first, then the pairs
for name in sorted(seen, key=lambda n: (n.endswith("_pair"), n)):
    exe, pkg = seen[name]
    print(f"{name}\t{exe}\t{pkg}")
EOF
)
echo "tier 2: built ${#BINS[@]} test binaries in $(since "$TB")s"
[ "${#BINS[@]}" -gt 0 ] || { echo "tier 2: no tier2_* test targets found"; exit 1; }

PASS=0
FAIL=0
NTESTS=0
SUMMARY=()
# Single-guest and reboot binaries run TIER2_JOBS at a time (each guest is one
# TCG vCPU, i.e. one host core); the two-guest pairs run afterwards, one at a
# time. Each binary's log is printed whole when it ends.
JOBS=${TIER2_JOBS:-$(nproc)}
[ "$JOBS" -ge 1 ] 2> /dev/null || JOBS=1

run_one() { # name exe pkg [libtest args...]
  local name=$1 exe=$2 pkg=$3
  shift 3
  date +%s.%N > "$LOGDIR/$name.start"
  # cargo runs test binaries from their package directory; so do we.
  (cd "$pkg" && "$VM_DIR/cargo-runner.sh" "$exe" --ignored --test-threads=1 "$@") \
    > "$LOGDIR/$name.log" 2>&1
  echo $? > "$LOGDIR/$name.rc"
  date +%s.%N > "$LOGDIR/$name.end"
}

report() { # name mode pkg
  local name=$1 mode=$2 pkg=$3 rc el n timing
  echo "=== tier 2: $name ($mode, $(basename "$pkg"))"
  cat "$LOGDIR/$name.log"
  rc=$(cat "$LOGDIR/$name.rc" 2> /dev/null || echo 125)
  el=$(awk -v a="$(cat "$LOGDIR/$name.start")" -v b="$(cat "$LOGDIR/$name.end")" \
    'BEGIN{printf "%.1f", b-a}')
  # tests passed per guest (a pair reports twice; count guest a / the single guest)
  n=$(grep -E '^(\[a\] )?test result: ' "$LOGDIR/$name.log" | head -1 |
    sed -n 's/.* \([0-9]*\) passed.*/\1/p')
  timing=$(grep -E '^(\[[ab]\] )?vm: [^ ]*: rc=' "$LOGDIR/$name.log" |
    sed -E 's/^(\[([ab])\] )?vm: [^ ]*: /\2 /' | tr '\n' ' ')
  if [ "$rc" = 0 ]; then
    PASS=$((PASS + 1))
    NTESTS=$((NTESTS + ${n:-0}))
    SUMMARY+=("$(printf 'PASS %-28s %6ss  %s tests  %s' "$name" "$el" "${n:-?}" "$timing")")
  else
    FAIL=$((FAIL + 1))
    SUMMARY+=("$(printf 'FAIL %-28s %6ss  rc=%s  %s' "$name" "$el" "$rc" "$timing")")
  fi
}

SINGLES=()
PAIRS=()
for entry in "${BINS[@]}"; do
  case ${entry%%$'\t'*} in
    *_pair) PAIRS+=("$entry") ;;
    *) SINGLES+=("$entry") ;;
  esac
done

echo "=== tier 2: ${#SINGLES[@]} single-guest binaries, $JOBS at a time"
for entry in "${SINGLES[@]}"; do
  IFS=$'\t' read -r name exe pkg <<< "$entry"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  echo "--- tier 2: start $name ($(date +%T))"
  run_one "$name" "$exe" "$pkg" "$@" &
done
wait
for entry in "${SINGLES[@]}"; do
  IFS=$'\t' read -r name exe pkg <<< "$entry"
  mode=single
  case $name in *_reboot) mode=reboot ;; esac
  report "$name" "$mode" "$pkg"
done
for entry in "${PAIRS[@]}"; do
  IFS=$'\t' read -r name exe pkg <<< "$entry"
  echo "--- tier 2: start $name ($(date +%T))"
  run_one "$name" "$exe" "$pkg" "$@"
  report "$name" pair "$pkg"
done

echo "=== tier 2: summary (logs in $LOGDIR)"
printf '%s\n' "${SUMMARY[@]}"
echo "tier 2: $PASS binaries passed, $FAIL failed, $NTESTS tests passed, total $(since "$T0")s"
[ "$FAIL" = 0 ]
