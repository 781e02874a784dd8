#!/usr/bin/env bash
# The standalone demo: a fresh `hwameistor standalone --demo` (sparse-file disks attached as
# loop devices and claimed into a pool), one volume created, mounted through CSI, written,
# read back and verified; then the volume is unmounted and deleted, the server stopped with
# SIGTERM (it releases every mount and loop device of its own), and the host is checked for
# leftovers.
# Run as root:  sudo bash scripts/demo.sh      (exits non-zero on any failure)
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${DEMO_DIR:-/tmp/hwameistor-demo}
MNT=${DEMO_MNT:-/mnt/hwameistor-demo}
VOL=demo-vol
BIN=target/debug
LOG=$DIR.log
SERVER_PID=

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
  echo "demo FAILED: $*" >&2
  [ -f "$LOG" ] && { echo "--- last server log lines ($LOG):" >&2; tail -20 "$LOG" >&2; }
  exit 1
}
ctl() { "$BIN/hwameictl" --data-dir "$DIR" "$@"; }

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    # best effort: leave no mount, volume or server behind after a failure
    mountpoint -q "$MNT" 2>/dev/null && ctl volume unmount "$VOL" "$MNT" >/dev/null 2>&1 || true
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
      ctl volume delete "$VOL" >/dev/null 2>&1 || true
      kill -TERM "$SERVER_PID" 2>/dev/null || true
      wait "$SERVER_PID" 2>/dev/null || true
    fi
  fi
  exit $rc
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || die "run as root (sudo bash scripts/demo.sh)"

say "installing Debian packages"
bash scripts/install-deps.sh

say "building hwameistor and hwameictl"
cargo build -q -p hwameistor -p hwameictl

# a fresh data directory each run (an earlier demo's server must be gone)
if [ -f "$DIR/server.json" ]; then
  old=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$DIR/server.json")
  if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
    die "a hwameistor standalone (pid $old) still uses $DIR; stop it first (kill -TERM $old)"
  fi
fi
for l in $(losetup -n -O NAME,BACK-FILE | awk -v d="$DIR/" 'index($2,d)==1{print $1}'); do
  losetup -d "$l" 2>/dev/null || true
done
findmnt -rn -o TARGET | awk -v d="$DIR/" 'index($1,d)==1' | sort -r | while read -r m; do umount "$m" || true; done
rm -rf "$DIR"
mkdir -p "$DIR"

say "starting hwameistor standalone --data-dir $DIR --demo (log: $LOG)"
"$BIN/hwameistor" standalone --data-dir "$DIR" --listen 127.0.0.1:0 --demo >"$LOG" 2>&1 &
SERVER_PID=$!

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  for _ in $(seq 1 $((t * 2))); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited while waiting for $what"
    sleep 0.5
  done
  die "timed out after ${t}s waiting for $what"
}
wait_for 60 "server.json and the CSI sockets" \
  bash -c "[ -f '$DIR/server.json' ] && [ -S '$DIR/csi/lvm.sock' ] && [ -S '$DIR/csi/disk.sock' ]"
pool_ready() { ctl pool list 2>/dev/null | grep -q LocalStorage_Pool; }
wait_for 120 "a storage pool built from the demo disks" pool_ready

say "hwameictl get ld"
ctl get ld
say "hwameictl get lsn"
ctl get lsn
say "hwameictl pool list"
ctl pool list

say "hwameictl volume create $VOL --size 1Gi"
ctl volume create "$VOL" --size 1Gi
vol_ready() { ctl volume get "$VOL" -o json | grep -q '"state": *"Ready"'; }
wait_for 120 "volume $VOL to become Ready" vol_ready

say "hwameictl volume mount $VOL $MNT"
ctl volume mount "$VOL" "$MNT"
mountpoint -q "$MNT" || die "$MNT is not a mount point after volume mount"
findmnt "$MNT"

say "writing and verifying data"
head -c 16M /dev/urandom >"$DIR/payload"
want=$(sha256sum <"$DIR/payload" | cut -d' ' -f1)
cp "$DIR/payload" "$MNT/payload"
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
got=$(sha256sum <"$MNT/payload" | cut -d' ' -f1)
[ "$want" = "$got" ] || die "checksum mismatch: wrote $want, read $got"
echo "sha256 $got"

say "hwameictl volume get $VOL"
ctl volume get "$VOL"
say "hwameictl get lvr"
ctl get lvr

echo
echo "demo OK: volume $VOL mounted at $MNT, 16 MiB written and read back, data verified (sha256 $got)"

say "tearing down"
ctl volume unmount "$VOL" "$MNT"
mountpoint -q "$MNT" 2>/dev/null && die "$MNT still mounted after volume unmount"
ctl volume delete "$VOL"
gone() { ! ctl volume get "$VOL" >/dev/null 2>&1; }
wait_for 60 "volume $VOL to be deleted" gone
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=
[ $rc -eq 0 ] || die "the server exited with code $rc after SIGTERM"

# Leftovers: the server releases the host at SIGTERM (volumes deactivated, pool filesystems
# unmounted, demo loop devices detached); nothing of the demo may remain.
sleep 0.5
left_mounts=$(findmnt -rn -o TARGET | awk -v d="$DIR/" -v m="$MNT" 'index($1,d)==1 || $1==m' || true)
[ -z "$left_mounts" ] || die "mounts of the demo remain after SIGTERM: $left_mounts"
left_loops=$(losetup -n -O NAME,BACK-FILE | awk -v d="$DIR/" 'index($2,d)==1' || true)
[ -z "$left_loops" ] || die "loop devices of the demo remain after SIGTERM: $left_loops"
grep -q "host released" "$LOG" || die "the server did not report the host as released"
echo "no mount or loop device of the demo remains"
echo "demo OK"
