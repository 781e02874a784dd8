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
# A binary whose name ends in `_reboot` (e.g. tier2_disk_reboot) runs twice,
# in two boots of one guest with the SAME disk images: boot 1 with the standard
# layout, boot 2 with the disks attached in another order and on other slots
# and controllers (vm_disk_attach reordered); VM_BOOT=1|2 tells the test which
# boot it is, VM_PERSIST_DIR is a read-write directory kept across both boots.
# Boot 2 runs only if boot 1 passed. VM_REBOOT=1|0 forces either mode.
#
# Every single guest also gets a spare disk for hot-plug and a monitor channel
# (VM_MONITOR_DIR; monitor.py on the host, see README.md).
#
# Environment: VM_TIMEOUT (s, default 600, per boot), VM_MEM (1G), VM_CPUS (1),
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
reboot=${VM_REBOOT:-}
if [ -z "$reboot" ]; then
  case ${base%-*} in *_reboot) reboot=1 ;; *) reboot=0 ;; esac
fi

# shellcheck source=vm-lib.sh
. "$HERE/vm-lib.sh"
vm_check_setup || exit 2
BIN=$(readlink -f "$BIN")
shift
vm_new_rundir "${base%-*}"
RUN=$VM_RUN
PID=""
OUT=""
MON=""
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  vm_kill "$PID"
  [ -n "$OUT" ] && wait "$OUT" 2> /dev/null
  vm_monitor_stop "$MON"
  vm_finish "$RUN" "${RC:-1}"
}
trap cleanup EXIT
trap 'vm_log "interrupted"; RC=130; exit 130' INT
trap 'vm_log "terminated"; RC=143; exit 143' TERM HUP

vm_base_env
vm_disk_images "$RUN"
BOOTS=(single)
if [ "$reboot" = 1 ]; then
  BOOTS=(1 2)
  mkdir -p "$RUN/persist"
  chmod 777 "$RUN/persist"
fi
T0=$(vm_now)
for boot in "${BOOTS[@]}"; do
  layout=standard
  extra=()
  label=$base
  if [ "$boot" != single ]; then
    [ "$boot" = 2 ] && layout=reordered
    extra=("VM_BOOT=$boot" "VM_PERSIST_DIR=$RUN/persist")
    label="$base boot $boot/2 ($layout disks)"
    rm -f "$RUN/guest.started" "$RUN/guest.ready" "$RUN/guest.rc" "$RUN/qmp.sock"
    echo "=== vm: boot $boot ($layout disks)" >> "$RUN/console.log"
  fi
  vm_write_env "$RUN/env.sh" "${VM_ENV_ARGS[@]}" "VM_ROLE=single" "VM_HOSTNAME=hwvm" \
    "VM_MONITOR_DIR=$RUN/monitor" "${extra[@]}" -- "$BIN" "$@"

  vm_log "$label: booting guest (accel=$VM_ACCEL, ${VM_CPUS} vCPU, $VM_MEM, timeout ${VM_TIMEOUT}s)"
  vm_start hwvm "$RUN" "" "$(vm_disk_attach "$RUN" "$layout") $(vm_spare_opts "$RUN")"
  PID=$VM_PID
  OUT=$VM_OUT_PID
  vm_monitor_start "$RUN"
  MON=$VM_MON_PID
  wait "$PID"
  VRC=$?
  PID=""
  wait "$OUT"
  OUT=""
  vm_monitor_stop "$MON"
  MON=""
  vm_result "$RUN" "$VRC"
  RC=$?
  [ "$RC" = 0 ] || break
done
[ "$reboot" = 1 ] && vm_log "$base: reboot run rc=$RC boots=$boot wall=$(vm_sub "$(vm_now)" "$T0")s"
exit "$RC"
