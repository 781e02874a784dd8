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

if command -v udevadm > /dev/null; then
  udevadm trigger --action=add --subsystem-match=block > /dev/null 2>&1
  udevadm settle --timeout=60 || echo "guest-init: udevadm settle timed out" >&2
fi

# Disk discovery by serial: sysfs only, no guessing on kernel names.
trim() { tr -d '\000' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'; }
disk_serial() { # disk_serial NAME -> serial as the kernel reports it
  local n=$1
  if [ -r "/sys/block/$n/serial" ]; then # virtio-blk
    trim < "/sys/block/$n/serial"
  elif [ -r "/sys/block/$n/device/serial" ]; then # nvme controller
    trim < "/sys/block/$n/device/serial"
  elif [ -r "/sys/block/$n/device/vpd_pg80" ]; then # SCSI unit serial VPD page
    tail -c +5 "/sys/block/$n/device/vpd_pg80" | trim
  fi
}
declare -A BY_SERIAL=()
for p in /sys/block/*; do
  n=${p##*/}
  case $n in loop* | ram* | dm-* | drbd* | md* | sr* | zram*) continue ;; esac
  s=$(disk_serial "$n")
  [ -n "$s" ] && BY_SERIAL[$s]=$n
done
all=()
for key in $VM_DISK_KEYS_LIST; do
  ser_var=VM_DISK_${key}_SERIAL
  ser=${!ser_var}
  n=${BY_SERIAL[$ser]:-}
  [ -n "$n" ] || fail "disk $key (serial $ser) not found; have: ${!BY_SERIAL[*]}"
  export "VM_DISK_$key=/dev/$n"
  all+=("/dev/$n")
  # the stable udev name, if udev made one (it does in the standard set)
  byid=""
  for l in /dev/disk/by-id/*; do
    [ -L "$l" ] || continue
    case $l in *-part*) continue ;; esac
    if [ "$(readlink -f "$l")" = "/dev/$n" ]; then
      case ${l##*/} in
        virtio-* | wwn-* | nvme-QEMU*) byid=$l; break ;;
      esac
    fi
  done
  export "VM_DISK_${key}_BYID=$byid"
done
export VM_DISKS="${all[*]}"

ip link set lo up 2> /dev/null
if [ -n "${VM_IP:-}" ]; then
  VM_NIC=$(ls /sys/class/net | grep -v '^lo$' | head -1)
  [ -n "$VM_NIC" ] || fail "no network interface for VM_IP=$VM_IP"
  ip addr add "$VM_IP/24" dev "$VM_NIC" && ip link set "$VM_NIC" up ||
    fail "cannot configure $VM_NIC"
  export VM_NIC
fi

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
