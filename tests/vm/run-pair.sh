#!/bin/bash
# Two-guest mode (DRBD and anything else that needs two kernels):
#   run-pair.sh <test-binary> [args...]
# Boots guests "a" and "b" (each with the full standard disk set), joined by
# one private virtual Ethernet link: a qemu `-netdev stream` over a unix socket
# in the run directory. No host networking, no user-mode networking: the
# addresses exist only on that wire. Runs the same binary with the same args in
# both and exits 0 only if both exit 0. If one guest fails, the other gets
# VM_PAIR_GRACE seconds (default 30) to finish before it is stopped.
#
# Guest environment (besides the single-guest set, see README.md):
#   VM_ROLE=a|b  VM_HOSTNAME=hwvm-a|hwvm-b (also the kernel hostname)
#   VM_PEER_HOSTNAME  VM_IP=10.99.0.1|10.99.0.2  VM_PEER_IP  VM_NIC  VM_PAIR=1
set -u
HERE=$(dirname "$(readlink -f "$0")")
# shellcheck source=vm-lib.sh
. "$HERE/vm-lib.sh"
BIN=${1:?usage: run-pair.sh <test-binary> [args...]}
vm_check_setup || exit 2
base=$(basename "$BIN")
BIN=$(readlink -f "$BIN")
shift
GRACE=${VM_PAIR_GRACE:-30}
vm_new_rundir "${base%-*}-pair"
RUN=$VM_RUN
SOCK=$RUN/link.sock
declare -A PID=() OUT=() RC=()
FINAL=1
cleanup() {
  local r
  for r in a b; do
    vm_kill "${PID[$r]:-}"
    [ -n "${OUT[$r]:-}" ] && wait "${OUT[$r]}" 2> /dev/null
    vm_finish "$RUN/$r" "$FINAL"
  done
  vm_finish "$RUN" "$FINAL"
}
trap cleanup EXIT
trap 'vm_log "interrupted"; FINAL=130; exit 130' INT
trap 'vm_log "terminated"; FINAL=143; exit 143' TERM HUP

declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2)
declare -A PEER=([a]=b [b]=a)
declare -A NET=(
  [a]="stream,id=p0,server=on,addr.type=unix,addr.path=$SOCK"
  [b]="stream,id=p0,server=off,addr.type=unix,addr.path=$SOCK"
)
vm_base_env
T0=$(vm_now)
vm_log "$base: booting pair a+b (accel=$VM_ACCEL, ${VM_CPUS} vCPU, $VM_MEM each, timeout ${VM_TIMEOUT}s)"
for r in a b; do
  mkdir -p "$RUN/$r"
  chmod 755 "$RUN/$r"
  p=${PEER[$r]}
  vm_write_env "$RUN/$r/env.sh" "${VM_ENV_ARGS[@]}" \
    "VM_PAIR=1" "VM_ROLE=$r" "VM_HOSTNAME=hwvm-$r" "VM_PEER_HOSTNAME=hwvm-$p" \
    "VM_IP=${IP[$r]}" "VM_PEER_IP=${IP[$p]}" \
    -- "$BIN" "$@"
  opts="$(vm_disk_opts "$RUN/$r") -netdev ${NET[$r]} -device virtio-net-pci,netdev=p0,mac=52:54:00:99:00:0$r"
  vm_start "hwvm-$r" "$RUN/$r" "[$r] " "$opts"
  PID[$r]=$VM_PID
  OUT[$r]=$VM_OUT_PID
  if [ "$r" = a ]; then # b connects to the socket a listens on
    for _ in $(seq 150); do
      [ -S "$SOCK" ] && break
      kill -0 "${PID[a]}" 2> /dev/null || break
      sleep 0.2
    done
    [ -S "$SOCK" ] || { vm_log "guest a did not open $SOCK"; exit 1; }
  fi
done

# Wait for both; once one has failed, give the other GRACE seconds.
deadline=""
while [ -n "${PID[a]}" ] || [ -n "${PID[b]}" ]; do
  for r in a b; do
    pid=${PID[$r]}
    [ -n "$pid" ] || continue
    kill -0 "$pid" 2> /dev/null && continue
    wait "$pid"
    vrc=$?
    PID[$r]=""
    wait "${OUT[$r]}"
    OUT[$r]=""
    vm_result "$RUN/$r" "$vrc" 2>&1 | sed "s/^/[$r] /" >&2
    RC[$r]=$(sed -n 's/^rc=\([0-9]*\) .*/\1/p' "$RUN/$r/timing" 2> /dev/null)
    RC[$r]=${RC[$r]:-1}
    if [ "${RC[$r]}" != 0 ] && [ -z "$deadline" ]; then
      deadline=$(($(date +%s) + GRACE))
      vm_log "guest $r failed (rc=${RC[$r]}); giving its peer ${GRACE}s"
    fi
  done
  if [ -n "$deadline" ] && [ "$(date +%s)" -ge "$deadline" ]; then
    for r in a b; do
      if [ -n "${PID[$r]}" ]; then
        vm_log "stopping guest $r (peer failed)"
        vm_kill "${PID[$r]}"
        wait "${PID[$r]}" 2> /dev/null
        PID[$r]=""
        wait "${OUT[$r]}" 2> /dev/null
        OUT[$r]=""
        RC[$r]=1
      fi
    done
  fi
  sleep 0.5
done
FINAL=1
[ "${RC[a]}" = 0 ] && [ "${RC[b]}" = 0 ] && FINAL=0
vm_log "$base: pair a rc=${RC[a]} b rc=${RC[b]} wall=$(vm_sub "$(vm_now)" "$T0")s"
exit "$FINAL"
