#!/bin/bash
# Benchmark (not a test; CI does not run it): CreateVolume -> Ready latency of the lvm engine
# over a burst of concurrent creates, and the time to delete them all, measured inside the
# tier-2 qemu guest (the only place with device-mapper here). See docs/performance.md.
#
#   bash tests/vm/bench-lvm.sh                 # release build, then 100 x 64Mi in the guest
#   bash tests/vm/bench-lvm.sh --volumes 20 --size 16Mi      # extra args go to csi_bench
#   BENCH_TRACE=1 bash tests/vm/bench-lvm.sh   # also: count + time of every lvm command
#   BENCH_PROBE=1 bash tests/vm/bench-lvm.sh   # only: raw lvm command costs, option by option
#
# Host side: `cargo build --release` of `hwameistor` and the `csi_bench` example (skipped
# with BENCH_BIN_DIR=<dir holding hwameistor and csi_bench>), then one guest through
# cargo-runner.sh with the standard disk set (VM_DISK_SIZE default 4G here, so two disks hold
# 100 x 64Mi). In the guest: `hwameistor standalone --engine lvm --disk VIRTIO --disk VIRTIO2`
# (one HDD pool over both disks), `csi_bench --data-dir` against it, SIGTERM.
#
# The guest is qemu TCG with one vCPU running the server, lvm and the bench client: absolute
# figures are pessimistic (every lvm command costs ~10x what it costs on hardware).
set -u
HERE=$(dirname "$(readlink -f "$0")")
ROOT=$(readlink -f "$HERE/../..")

if [ "${1:-}" != --in-guest ]; then
  if [ -z "${BENCH_BIN_DIR:-}" ]; then
    (cd "$ROOT" && cargo build --release -p hwameistor --bin hwameistor \
      -p hwameistor-csi --example csi_bench) || exit 1
    target=${CARGO_TARGET_DIR:-$ROOT/target}
    BENCH_BIN_DIR=$(mkdir -p "$target/bench-lvm" && cd "$target/bench-lvm" && pwd)
    # a private copy: the shared target dir may be rebuilt while the guest runs
    cp "$target/release/hwameistor" "$target/release/examples/csi_bench" "$BENCH_BIN_DIR/"
  fi
  BENCH_BIN_DIR=$(readlink -f "$BENCH_BIN_DIR")
  bash "$HERE/setup.sh" > /dev/null || exit 1
  export VM_DISK_SIZE=${VM_DISK_SIZE:-4G} VM_TIMEOUT=${VM_TIMEOUT:-1800}
  export VM_TEST_BENCH_BIN_DIR=$BENCH_BIN_DIR VM_TEST_BENCH_TRACE=${BENCH_TRACE:-0}
  export VM_TEST_BENCH_PROBE=${BENCH_PROBE:-0}
  cd "$ROOT" || exit 1
  exec "$HERE/cargo-runner.sh" /bin/bash "$HERE/bench-lvm.sh" --in-guest "$@"
fi
shift

# ---- inside the guest ---------------------------------------------------------------------
[ "${VM_GUEST:-}" = 1 ] || {
  echo "bench-lvm: --in-guest outside the guest" >&2
  exit 2
}
BIN=$VM_TEST_BENCH_BIN_DIR
D1=$VM_DISK_VIRTIO
D2=$VM_DISK_VIRTIO2
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

if [ "$VM_TEST_BENCH_PROBE" = 1 ]; then
  # What one lvm command costs here, and what each option saves. Mean of N runs each.
  N=${BENCH_PROBE_RUNS:-5}
  VG=LocalStorage_PoolHDD
  # every command is run with the options of its line: `cfg` = devices restricted to the pool
  export LVM_SUPPRESS_FD_WARNINGS=1
  vgcreate -y "$VG" "$D1" "$D2" > /dev/null || exit 1
  restrict=(--devices "$D1,$D2")
  avg() { # avg LABEL -- command (run N times; {} in it becomes 1..N)
    local label=$1 t0 t1 i total=0 a
    shift 2
    for i in $(seq 1 "$N"); do
      a=("${@//\{\}/$i}")
      t0=$(now)
      "${a[@]}" > /dev/null 2>> /tmp/probe.err || echo "failed: ${a[*]}" >&2
      t1=$(now)
      total=$(awk -v t="$total" -v d="$(sub "$t1" "$t0")" 'BEGIN { print t + d }')
    done
    printf '%-58s %6.3f s\n' "$label" "$(awk -v t="$total" -v n="$N" 'BEGIN { print t / n }')"
  }
  for i in $(seq 1 40); do lvcreate -y -n "fill-$i" -L 4m "$VG" > /dev/null 2>&1; done
  echo "lvm command costs in the guest (mean of $N; VG of 2 PVs, 40 LVs):"
  avg "lvs VG (json, all columns)" -- lvs --reportformat json -o lv_name,lv_size,lv_attr,lv_tags,devices "$VG"
  avg "lvs VG/LV" -- lvs --reportformat json -o lv_name,lv_size,lv_attr,lv_tags,devices "$VG/fill-1"
  avg "lvs VG --devices PVs" -- lvs "${restrict[@]}" --reportformat json -o lv_name,lv_size "$VG"
  avg "vgs" -- vgs --reportformat json
  avg "pvs" -- pvs --reportformat json
  avg "lvcreate (plain)" -- lvcreate -y -n a{} -L 4m "$VG"
  avg "lvcreate --wipesignatures y --zero y" -- lvcreate -y --wipesignatures y --zero y -n b{} -L 4m "$VG"
  avg "lvcreate --autobackup n" -- lvcreate -y --autobackup n -n c{} -L 4m "$VG"
  avg "lvcreate --devices PVs" -- lvcreate -y "${restrict[@]}" -n d{} -L 4m "$VG"
  avg "lvcreate --noudevsync" -- lvcreate -y --noudevsync -n e{} -L 4m "$VG"
  avg "lvcreate archive=0 backup=0 (config)" -- lvcreate -y --config 'backup { archive = 0 backup = 0 }' -n f{} -L 4m "$VG"
  avg "lvcreate monitoring=0 (config)" -- lvcreate -y --config 'activation { monitoring = 0 }' -n g{} -L 4m "$VG"
  avg "lvcreate all of the above" -- lvcreate -y "${restrict[@]}" --autobackup n --noudevsync --config 'backup { archive = 0 } activation { monitoring = 0 }' -n h{} -L 4m "$VG"
  avg "vgcfgbackup VG" -- vgcfgbackup "$VG"
  avg "lvremove (plain)" -- lvremove -y "$VG/a{}"
  avg "lvremove --autobackup n, archive=0" -- lvremove -y --autobackup n --config 'backup { archive = 0 }' "$VG/b{}"
  avg "lvremove all options" -- lvremove -y "${restrict[@]}" --autobackup n --noudevsync --config 'backup { archive = 0 }' "$VG/c{}"
  avg "lvremove --devices PVs" -- lvremove -y "${restrict[@]}" "$VG/d{}"
  t0=$(now)
  lvremove -y "$VG/e1" "$VG/e2" "$VG/e3" "$VG/e4" "$VG/e5" > /dev/null
  echo "one lvremove of 5 LVs: $(sub "$(now)" "$t0") s"
  vgremove -ff -y "$VG" > /dev/null
  [ -s /tmp/probe.err ] && grep -v "leaked on" /tmp/probe.err | sort | uniq -c | head -20
  exit 0
fi

DIR=/tmp/bench-lvm
mkdir -p "$DIR"
# The server log and the lvm trace go to the run directory (read-write 9p, readable from the
# host while the guest runs: tests/vm/run/<id>/bench/); the store stays on the guest's /tmp.
LOGS=$DIR
if [ -n "${VM_MONITOR_DIR:-}" ] && mkdir -p "${VM_MONITOR_DIR%/monitor}/bench" 2> /dev/null; then
  LOGS=${VM_MONITOR_DIR%/monitor}/bench
fi
if [ "$VM_TEST_BENCH_TRACE" = 1 ]; then
  # Shims first in PATH: every lvm command the server runs is timed into $DIR/lvm-trace.
  mkdir -p /tmp/lvm-shim
  for c in lvs vgs pvs lvcreate lvremove lvchange lvextend vgcreate vgextend vgchange \
    vgcfgbackup lvconvert pvresize; do
    real=$(command -v "$c") || continue
    cat > "/tmp/lvm-shim/$c" << EOF
#!/bin/bash
t0=\$(date +%s%N)
$real "\$@"
rc=\$?
echo "$c \$(( (\$(date +%s%N) - t0) / 1000000 )) \$rc \$(( t0 / 1000000 )) \$*" >> $LOGS/lvm-trace
exit \$rc
EOF
    chmod +x "/tmp/lvm-shim/$c"
  done
  export PATH=/tmp/lvm-shim:$PATH
fi
echo "bench-lvm: disks $D1 $D2 ($(numfmt --to=iec "$VM_DISK_SIZE") each), $(nproc) vCPU"
HWAMEISTOR_LOG=${HWAMEISTOR_LOG:-info} "$BIN/hwameistor" standalone --data-dir "$DIR" \
  --listen 127.0.0.1:0 --engine lvm --disk "$D1" --disk "$D2" > "$LOGS/server.log" 2>&1 &
SERVER=$!
stop() {
  kill -TERM "$SERVER" 2> /dev/null && wait "$SERVER"
}
trap stop EXIT
t0=$(now)
until [ -s "$DIR/server.json" ]; do
  if ! kill -0 "$SERVER" 2> /dev/null || [ "$(sub "$(now)" "$t0" | cut -d. -f1)" -gt 180 ]; then
    echo "bench-lvm: the server did not start; log:" >&2
    tail -50 "$LOGS/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "bench-lvm: server up after $(sub "$(now)" "$t0") s"
# csi_bench waits (120 s) until the pool has room for the burst
"$BIN/csi_bench" --data-dir "$DIR" --settle 5 "$@"
RC=$?
if [ "$RC" != 0 ]; then
  echo "bench-lvm: csi_bench failed ($RC); server log tail:" >&2
  tail -40 "$LOGS/server.log" >&2
fi
stop
trap - EXIT
if [ -s "$LOGS/lvm-trace" ]; then
  echo "lvm commands run by the server (count, total s, mean s, max s):"
  # `lvs` of one LV (`lvs VG/LV`, a read-back) and of a whole VG (a listing) apart
  awk '{ k = $1; if (k == "lvs") k = ($NF ~ /\// ? "lvs-one" : "lvs-vg")
         n[k]++; t[k] += $2; if ($2 > m[k]) m[k] = $2 }
       END { for (c in n) printf "  %-10s %5d %8.1f %6.3f %6.3f\n", c, n[c], t[c] / 1000, t[c] / n[c] / 1000, m[c] / 1000 }' \
    "$LOGS/lvm-trace" | sort -k3 -n -r
fi
exit "$RC"
