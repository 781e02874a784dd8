# shellcheck shell=bash disable=SC2034
# (SC2034: VM_PID, VM_OUT_PID, VM_ENV_ARGS ... are results for the caller)
# Shared host-side code of the tier-2 harness; sourced by cargo-runner.sh and
# run-pair.sh. Nothing here runs at source time except variable setup.
#
# One guest = one `vng` (virtme-ng) process tree: vng (python) starts
# qemu-system-x86_64 with the Debian kernel from cache/kernel, the host root
# shared read-only over 9p, and the run directory shared read-write (the guest
# writes its exit status and timing markers there). Each guest runs under
# coreutils `timeout`, which puts itself and everything below it into its own
# process group; killing that group (vm_kill) ends vng *and* qemu.

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_CACHE=$VM_DIR/cache
VM_RUNROOT=${VM_RUNROOT:-$VM_DIR/run}
VM_TIMEOUT=${VM_TIMEOUT:-600}
VM_MEM=${VM_MEM:-1G}
VM_CPUS=${VM_CPUS:-1}
VM_DISK_SIZE=${VM_DISK_SIZE:-1G}
# Kernel modules every guest loads before the test starts.
VM_MODULES=${VM_MODULES:-"dm_mod dm_crypt dm_thin_pool dm_snapshot drbd loop"}

vm_log() { printf 'vm: %s\n' "$*" >&2; }
vm_now() { date +%s.%N; }
vm_sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a-b}'; }
vm_mtime() { stat -c '%.3Y' "$1" 2>/dev/null; }

vm_check_setup() {
  VM_KIMG=$(find "$VM_CACHE/kernel/boot" -maxdepth 1 -name 'vmlinuz-*' 2> /dev/null | sort | head -1)
  if [ -z "$VM_KIMG" ] || [ ! -x "$VM_CACHE/venv/bin/vng" ] ||
    ! command -v qemu-system-x86_64 > /dev/null; then
    vm_log "tier-2 harness not set up: run tests/vm/setup.sh first"
    return 1
  fi
  # qemu's accelerator: TCG unless the host has real VMX/SVM KVM. On this
  # machine kind /dev/kvm is a PVM host that cannot run a stock kernel (qemu
  # aborts on MSR 0x10a). VM_ACCEL=tcg|kvm overrides.
  if [ -z "${VM_ACCEL:-}" ]; then
    if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
      VM_ACCEL=kvm
    else
      VM_ACCEL=tcg
    fi
  fi
  VM_ACCEL_ARGS=()
  export PATH="$VM_CACHE/venv/bin:$PATH" # vng runs virtme-run from the venv
  [ "$VM_ACCEL" = tcg ] && VM_ACCEL_ARGS=(--disable-kvm)
  return 0
}

# vm_new_rundir NAME -> sets VM_RUN to a fresh, unique directory.
vm_new_rundir() {
  mkdir -p "$VM_RUNROOT"
  VM_RUN=$(mktemp -d "$VM_RUNROOT/$(date +%H%M%S)-${1//[^A-Za-z0-9_.-]/_}.XXXX")
  chmod 755 "$VM_RUN"
}

# The standard disk set. Every guest gets all of these as fresh sparse images.
#   key      qemu device                                    serial     wwn
VM_DISK_KEYS=(VIRTIO VIRTIO2 HDD SSD NVME)
declare -A VM_DISK_SERIAL=([VIRTIO]=HWVIRTIO0 [VIRTIO2]=HWVIRTIO1 [HDD]=HWHDD0 [SSD]=HWSSD0 [NVME]=HWNVME0)
declare -A VM_DISK_WWN=([HDD]=0x5000c50000000001 [SSD]=0x5000c50000000002)

# vm_disk_opts DIR -> prints the qemu options attaching a fresh disk set whose
# images live in DIR (created/truncated here: never reused between runs, or
# udev would auto-activate a stale VG).
vm_disk_opts() {
  vm_disk_images "$1"
  vm_disk_attach "$1" standard
}

# vm_disk_images DIR: create (truncate) the standard set's images in DIR.
vm_disk_images() {
  local dir=$1 k img
  for k in "${VM_DISK_KEYS[@]}"; do
    img=$dir/disk-${k,,}.img
    rm -f "$img"
    truncate -s "$VM_DISK_SIZE" "$img"
  done
}

# vm_disk_attach DIR standard|reordered -> prints the qemu options attaching the
# existing images in DIR. `standard` is the layout of every guest; `reordered`
# (second boot of a reboot run) attaches the same images elsewhere: the two
# virtio disks swap PCI order (vda <-> vdb), the NVMe controller comes first,
# the SSD takes the HDD's SCSI target and the HDD moves to a second virtio-scsi
# controller `scsi1` (other host, other by-path link). Controller `scsi0`
# exists in both layouts (hot-plug target, see vm_spare_opts).
vm_disk_attach() {
  local d=$1/disk layout=$2
  local virtio=(
    "-drive if=none,id=dvirtio,file=$d-virtio.img,format=raw,cache=unsafe"
    "-device virtio-blk-pci,drive=dvirtio,serial=${VM_DISK_SERIAL[VIRTIO]}"
  )
  local virtio2=(
    "-drive if=none,id=dvirtio2,file=$d-virtio2.img,format=raw,cache=unsafe"
    "-device virtio-blk-pci,drive=dvirtio2,serial=${VM_DISK_SERIAL[VIRTIO2]}"
  )
  local nvme=(
    "-drive if=none,id=dnvme,file=$d-nvme.img,format=raw,cache=unsafe"
    "-device nvme,drive=dnvme,serial=${VM_DISK_SERIAL[NVME]}"
  )
  local hdd="rotation_rate=7200,serial=${VM_DISK_SERIAL[HDD]},wwn=${VM_DISK_WWN[HDD]}"
  local ssd="rotation_rate=1,serial=${VM_DISK_SERIAL[SSD]},wwn=${VM_DISK_WWN[SSD]}"
  local drives=(
    "-drive if=none,id=dhdd,file=$d-hdd.img,format=raw,cache=unsafe"
    "-drive if=none,id=dssd,file=$d-ssd.img,format=raw,cache=unsafe"
  )
  case $layout in
    standard)
      printf '%s ' "${virtio[@]}" "${virtio2[@]}" \
        "-device virtio-scsi-pci,id=scsi0" "${drives[@]}" \
        "-device scsi-hd,bus=scsi0.0,scsi-id=0,lun=0,drive=dhdd,$hdd" \
        "-device scsi-hd,bus=scsi0.0,scsi-id=1,lun=0,drive=dssd,$ssd" \
        "${nvme[@]}"
      ;;
    reordered)
      printf '%s ' "${nvme[@]}" "${virtio2[@]}" "${virtio[@]}" \
        "-device virtio-scsi-pci,id=scsi0" "-device virtio-scsi-pci,id=scsi1" "${drives[@]}" \
        "-device scsi-hd,bus=scsi0.0,scsi-id=0,lun=0,drive=dssd,$ssd" \
        "-device scsi-hd,bus=scsi1.0,scsi-id=3,lun=0,drive=dhdd,$hdd"
      ;;
    *)
      vm_log "vm_disk_attach: unknown layout $layout"
      return 1
      ;;
  esac
}

# The spare disk for hot-plug tests: a backend drive without a device, so the
# guest does not see it until a test asks the monitor for `device_add`.
VM_SPARE_DRIVE=dspare
VM_SPARE_SERIAL=HWSPARE0
VM_SPARE_WWN=0x5000c50000000003

# vm_spare_opts DIR -> creates DIR/disk-spare.img (unless it exists: a reboot
# run keeps it) and prints the qemu options for the spare drive and the QMP
# socket DIR/qmp.sock that monitor.py serves the guest's requests through.
vm_spare_opts() {
  local dir=$1
  [ -f "$dir/disk-spare.img" ] || truncate -s "$VM_DISK_SIZE" "$dir/disk-spare.img"
  printf '%s ' \
    "-drive if=none,id=$VM_SPARE_DRIVE,file=$dir/disk-spare.img,format=raw,cache=unsafe" \
    "-qmp unix:$dir/qmp.sock,server=on,wait=off"
}

# vm_monitor_start DIR: serve monitor requests of the guest whose QMP socket is
# DIR/qmp.sock from the request directory DIR/monitor (see monitor.py). Sets
# VM_MON_PID; the server ends by itself when qemu closes the socket.
vm_monitor_start() {
  local dir=$1
  mkdir -p "$dir/monitor"
  chmod 777 "$dir/monitor"
  /usr/bin/python3 "$VM_DIR/monitor.py" "$dir/qmp.sock" "$dir/monitor" \
    >> "$dir/monitor.log" 2>&1 &
  VM_MON_PID=$!
}

# vm_monitor_stop PID: stop a monitor server (if still running) and reap it.
vm_monitor_stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2> /dev/null
  wait "$pid" 2> /dev/null
  return 0
}

# vm_write_env FILE KEY=VALUE... -- ARGV...
# Writes the script the guest sources: the guest environment (fixed VM_* plus
# pass-through of RUST_*, CARGO_* and VM_TEST_* from the caller) and the argv.
vm_write_env() {
  local f=$1; shift
  {
    echo "# generated by tests/vm/vm-lib.sh"
    local name
    while IFS= read -r name; do
      case $name in
        RUST_* | CARGO_* | VM_TEST_*) printf 'export %s=%q\n' "$name" "${!name}" ;;
      esac
    done < <(compgen -e)
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
      printf 'export %s=%q\n' "${1%%=*}" "${1#*=}"
      shift
    done
    [ "${1:-}" = -- ] && shift
    printf 'VM_ARGV=('
    printf '%q ' "$@"
    printf ')\n'
  } > "$f"
}

# vm_base_env -> sets VM_ENV_ARGS: the KEY=VALUE environment every guest gets
# (apart from role/network), for vm_write_env.
vm_base_env() {
  VM_ENV_ARGS=(
    "VM_MODULES=$VM_MODULES" "VM_DISK_KEYS_LIST=${VM_DISK_KEYS[*]}"
    "VM_DISK_VIRTIO_SERIAL=${VM_DISK_SERIAL[VIRTIO]}"
    "VM_DISK_VIRTIO2_SERIAL=${VM_DISK_SERIAL[VIRTIO2]}"
    "VM_DISK_HDD_SERIAL=${VM_DISK_SERIAL[HDD]}" "VM_DISK_HDD_WWN=${VM_DISK_WWN[HDD]}"
    "VM_DISK_SSD_SERIAL=${VM_DISK_SERIAL[SSD]}" "VM_DISK_SSD_WWN=${VM_DISK_WWN[SSD]}"
    "VM_DISK_NVME_SERIAL=${VM_DISK_SERIAL[NVME]}"
    "VM_DISK_SIZE=$(numfmt --from=iec "$VM_DISK_SIZE")"
    "VM_SPARE_DRIVE=$VM_SPARE_DRIVE" "VM_SPARE_SERIAL=$VM_SPARE_SERIAL"
    "VM_SPARE_WWN=$VM_SPARE_WWN"
    "VM_CWD=$PWD"
  )
}

# vm_start NAME RUNDIR OUTPUT_PREFIX EXTRA_QEMU_OPTS
# Boots one guest in the background; sets VM_PID (the `timeout` process, also
# the process-group id of vng + qemu) and VM_OUT_PID (the output copier).
# Guest output goes to RUNDIR/console.log and (prefixed) to our stdout/stderr.
vm_start() {
  local name=$1 run=$2 prefix=$3 qopts=$4
  rm -f "$run/out.fifo" "$run/err.fifo"
  mkfifo "$run/out.fifo" "$run/err.fifo"
  # qemu reopens /proc/self/fd/{1,2}: they must be pipes, not a shared file.
  # Guest stdout -> our stdout, guest stderr (and vng's) -> our stderr, both
  # also into console.log; one background subshell copies both.
  (
    copy() { # copy FIFO: fifo -> console.log + our fd 1, prefixed in a pair
      if [ -n "$prefix" ]; then
        tee -a "$run/console.log" < "$1" | sed -u "s/^/$prefix/"
      else
        tee -a "$run/console.log" < "$1"
      fi
    }
    copy "$run/out.fifo" &
    copy "$run/err.fifo" >&2 &
    wait
  ) &
  VM_OUT_PID=$!
  vm_now > "$run/host.start"
  timeout -k 10 "$VM_TIMEOUT" \
    "$VM_CACHE/venv/bin/vng" "${VM_ACCEL_ARGS[@]}" --force-9p -r "$VM_KIMG" \
    --name "$name" -m "$VM_MEM" --cpus "$VM_CPUS" \
    --rwdir="$run" --cwd / \
    --qemu-opts="$qopts" \
    --exec "exec $VM_DIR/guest-init.sh $run" \
    > "$run/out.fifo" 2> "$run/err.fifo" < /dev/null &
  VM_PID=$!
}

# vm_kill PID: end a guest's whole process group (timeout, vng, qemu) and
# wait until every member is gone (TERM, then KILL after 10 s).
vm_kill() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null || return 0
  for _ in $(seq 100); do
    kill -0 -- "-$pid" 2> /dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2> /dev/null
  for _ in $(seq 20); do
    kill -0 -- "-$pid" 2> /dev/null || return 0
    sleep 0.1
  done
  vm_log "process group $pid still alive after KILL"
}

# vm_result RUNDIR VNG_RC -> prints the guest's exit status (what the test
# binary returned) and a timing line to stderr; returns that status.
#  - the guest writes RUNDIR/guest.rc (status) and RUNDIR/guest.started;
#  - 124/137 from timeout means the guest timed out;
#  - no guest.rc means the guest died before the test finished.
vm_result() {
  local run=$1 vrc=$2 rc label=${1#"$VM_RUNROOT"/}
  local t0 tstart tready trc tend
  t0=$(cat "$run/host.start")
  tend=$(vm_now)
  tstart=$(vm_mtime "$run/guest.started")
  tready=$(vm_mtime "$run/guest.ready")
  trc=$(vm_mtime "$run/guest.rc")
  if [ -f "$run/guest.rc" ]; then
    rc=$(cat "$run/guest.rc")
  elif [ "$vrc" = 124 ] || [ "$vrc" = 137 ]; then
    vm_log "$label: TIMEOUT after ${VM_TIMEOUT}s (VM_TIMEOUT)"
    rc=124
  else
    vm_log "$label: guest ended without a test status (vng rc=$vrc); see console.log"
    rc=$((vrc == 0 ? 1 : vrc))
  fi
  local boot="?" init="?" test="?" down="?" line
  [ -n "$tstart" ] && boot=$(vm_sub "$tstart" "$t0")
  [ -n "$tstart" ] && [ -n "$tready" ] && init=$(vm_sub "$tready" "$tstart")
  [ -n "$tready" ] && [ -n "$trc" ] && test=$(vm_sub "$trc" "$tready")
  [ -n "$trc" ] && down=$(vm_sub "$tend" "$trc")
  line="rc=$rc boot=${boot}s init=${init}s test=${test}s shutdown=${down}s total=$(vm_sub "$tend" "$t0")s"
  echo "$line" > "$run/timing"
  vm_log "$label: $line"
  return "$rc"
}

# vm_finish RUNDIR RC: drop the disk images; drop the whole run directory on
# success unless VM_KEEP_RUN=1 (failures keep console.log for inspection).
vm_finish() {
  local run=$1 rc=$2
  [ -d "$run" ] || return 0
  rm -f "$run"/disk-*.img "$run"/*.fifo "$run"/*.sock
  if [ "$rc" = 0 ] && [ "${VM_KEEP_RUN:-0}" != 1 ]; then
    rm -rf "$run"
  else
    vm_log "logs kept in $run"
  fi
}
