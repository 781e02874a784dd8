#!/bin/bash
# Runs INSIDE the guest as root (started by vng --exec), before the test.
#   guest-init.sh RUNDIR
# RUNDIR is the host run directory, shared read-write with the guest at the
# same path. It holds env.sh (environment + argv, written by the host).
# The guest root is the host root, read-only over 9p, with tmpfs overlays
# (/etc, /var, /tmp, ...): tests write only under /tmp.
#
# Steps: mark start, load kernel modules, wait for udev, find the standard
# disks by serial in sysfs and export VM_DISK_*, bring up the pair network if
# asked, then run the test binary and record its exit status in RUNDIR/guest.rc.
set -u
RUN=${1:?run dir}
: > "$RUN/guest.started"
T0=$EPOCHREALTIME
lap() { # lap NAME: remember how long the step since the last lap took
  local now=$EPOCHREALTIME
  LAPS+="$1=$(awk -v a="$now" -v b="${TL:-$T0}" 'BEGIN{printf "%.1f", a-b}')s "
  TL=$now
}
LAPS=""
fail() {
  echo "guest-init: $*" >&2
  echo 125 > "$RUN/guest.rc"
  exit 125
}
# shellcheck source=/dev/null
. "$RUN/env.sh" || fail "cannot read $RUN/env.sh"

export VM_GUEST=1 LVM_SUPPRESS_FD_WARNINGS=1 TMPDIR=/tmp
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp

# shellcheck disable=SC2086
modprobe -a $VM_MODULES || fail "modprobe $VM_MODULES failed"
lap modules

if command -v udevadm > /dev/null; then
  udevadm trigger --action=add --subsystem-match=block > /dev/null 2>&1
  udevadm settle --timeout=60 || echo "guest-init: udevadm settle timed out" >&2
fi
lap udev

# Disk discovery: sysfs only, no guessing on kernel names (sd* order varies
# from boot to boot). virtio-blk and NVMe by serial, SCSI by WWN (the serial
# sits in the binary VPD page 80; tier2_disks checks it). Builtins only:
# every fork costs ~50 ms under TCG.
declare -A BY_ID=()
for p in /sys/block/*; do
  n=${p##*/}
  v=""
  case $n in
    vd*) read -r v < "$p/serial" ;;
    nvme*) read -r v < "$p/device/serial" ;;
    sd*) read -r v < "$p/device/wwid" ;;
    *) continue ;;
  esac 2> /dev/null
  [ -n "$v" ] && BY_ID[$v]=$n
done
all=()
for key in $VM_DISK_KEYS_LIST; do
  ser_var=VM_DISK_${key}_SERIAL
  wwn_var=VM_DISK_${key}_WWN
  ser=${!ser_var}
  wwn=${!wwn_var:-}
  if [ -n "$wwn" ]; then
    id=naa.${wwn#0x}
    link=/dev/disk/by-id/wwn-$wwn
  else
    id=$ser
    case $key in
      NVME*) link=/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_$ser ;;
      *) link=/dev/disk/by-id/virtio-$ser ;;
    esac
  fi
  n=${BY_ID[$id]:-}
  [ -n "$n" ] || fail "disk $key ($id) not found; have: ${!BY_ID[*]}"
  export "VM_DISK_$key=/dev/$n"
  all+=("/dev/$n")
  # the stable udev link (udev runs in the guest)
  [ "$(readlink -f "$link")" = "/dev/$n" ] || link=""
  export "VM_DISK_${key}_BYID=$link"
done
export VM_DISKS="${all[*]}"
lap disks

ip link set lo up 2> /dev/null
if [ -n "${VM_IP:-}" ]; then
  VM_NIC=""
  for p in /sys/class/net/*; do
    [ "${p##*/}" = lo ] || { VM_NIC=${p##*/}; break; }
  done
  [ -n "$VM_NIC" ] || fail "no network interface for VM_IP=$VM_IP"
  if ! ip addr add "$VM_IP/24" dev "$VM_NIC" || ! ip link set "$VM_NIC" up; then
    fail "cannot configure $VM_NIC"
  fi
  export VM_NIC
fi

lap net
echo "guest-init: $(uname -r) $(hostname) ${LAPS}" >&2
if [ "${VM_TEST_DEBUG_ENV:-0}" = 1 ]; then
  env | grep -E '^VM_' | sort >&2
fi

cd "${VM_CWD:-/tmp}" 2> /dev/null || cd /tmp || fail "no cwd"
: > "$RUN/guest.ready"
"${VM_ARGV[@]}"
rc=$?
echo "$rc" > "$RUN/guest.rc"
sync
exit "$rc"
