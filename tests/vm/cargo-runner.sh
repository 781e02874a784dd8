#!/bin/bash
# Cargo target runner for tier-2 tests: boots one qemu guest (real Debian
# kernel, TCG, host root read-only over 9p) per test binary with a fresh
# standard disk set, runs the binary inside with all given arguments, and exits
# with the binary's exit status. See tests/vm/README.md.
#
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=$PWD/tests/vm/cargo-runner.sh \
#     cargo test --workspace --test 'tier2_*' -- --ignored --test-threads=1
#
# A test binary whose name ends in `_pair` (e.g. target tier2_drbd_pair) is run
# in two guests instead (run-pair.sh); VM_PAIR=1|0 forces either mode.
#
# Environment: VM_TIMEOUT (s, default 600), VM_MEM (1G), VM_CPUS (1),
# VM_DISK_SIZE (1G), VM_KEEP_RUN=1 keeps run/<id>/ even on success.
set -u
HERE=$(dirname "$(readlink -f "$0")")
BIN=${1:?usage: cargo-runner.sh <test-binary> [args...]}
base=$(basename "$BIN")
pair=${VM_PAIR:-}
if [ -z "$pair" ]; then
  case ${base%-*} in *_pair) pair=1 ;; *) pair=0 ;; esac
fi
[ "$pair" = 1 ] && exec "$HERE/run-pair.sh" "$@"

# shellcheck source=vm-lib.sh
. "$HERE/vm-lib.sh"
vm_check_setup || exit 2
BIN=$(readlink -f "$BIN")
shift
vm_new_rundir "${base%-*}"
RUN=$VM_RUN
PID=""
OUT=""
cleanup() {
  vm_kill "$PID"
  [ -n "$OUT" ] && wait "$OUT" 2> /dev/null
  vm_finish "$RUN" "${RC:-1}"
}
trap cleanup EXIT
trap 'vm_log "interrupted"; RC=130; exit 130' INT
trap 'vm_log "terminated"; RC=143; exit 143' TERM HUP

vm_base_env
vm_write_env "$RUN/env.sh" "${VM_ENV_ARGS[@]}" "VM_ROLE=single" "VM_HOSTNAME=hwvm" \
  -- "$BIN" "$@"

vm_log "$base: booting guest (accel=$VM_ACCEL, ${VM_CPUS} vCPU, $VM_MEM, timeout ${VM_TIMEOUT}s)"
vm_start hwvm "$RUN" "" "$(vm_disk_opts "$RUN")"
PID=$VM_PID
OUT=$VM_OUT_PID
wait "$PID"
VRC=$?
PID=""
wait "$OUT"
OUT=""
vm_result "$RUN" "$VRC"
RC=$?
exit "$RC"
