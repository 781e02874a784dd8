#!/bin/bash
# Self-test of the harness's guarantees (not part of run-tier2.sh: it costs
# four guest boots, ~2.5 min). Run after changing the harness scripts.
#  1. the guest's exit status comes back unchanged (exit 3 -> 3), args intact
#  2. VM_TIMEOUT kills the guest: status 124, no qemu left
#  3. TERM to the runner: status 143, no qemu left
#  4. pair: one guest fails, the other is stopped after VM_PAIR_GRACE, status != 0
set -u
HERE=$(dirname "$(readlink -f "$0")")
FAILS=0
ok() { echo "selftest ok:   $*"; }
bad() { echo "selftest FAIL: $*"; FAILS=$((FAILS + 1)); }
# qemu processes started from this harness's run directory (inspection only)
leftover() { pgrep -f "qemu-system.*$HERE/run/" > /dev/null; }

out=$("$HERE/cargo-runner.sh" /bin/bash -c 'printf "<%s>" "$@"; exit 3' x 'a b' "'q'" 2> /dev/null)
rc=$?
[ "$rc" = 3 ] && [[ $out == *"<a b><'q'>"* ]] && ok "exit status and args ($rc, $out)" ||
  bad "exit status/args: rc=$rc out=$out"

VM_TIMEOUT=40 "$HERE/cargo-runner.sh" /bin/sleep 600 > /dev/null 2>&1
rc=$?
sleep 1
[ "$rc" = 124 ] && ! leftover && ok "timeout -> 124, no qemu left" || bad "timeout: rc=$rc"

"$HERE/cargo-runner.sh" /bin/sleep 600 > /dev/null 2>&1 &
pid=$!
sleep 15
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" = 143 ] && ! leftover && ok "TERM -> 143, no qemu left" || bad "TERM: rc=$rc"

VM_PAIR_GRACE=5 "$HERE/run-pair.sh" /bin/bash -c '[ "$VM_ROLE" = a ] && sleep 600; exit 7' \
  > /dev/null 2>&1
rc=$?
sleep 1
[ "$rc" != 0 ] && ! leftover && ok "pair: b fails, a stopped, rc=$rc" || bad "pair: rc=$rc"

echo "selftest: $FAILS failed"
[ "$FAILS" = 0 ]
