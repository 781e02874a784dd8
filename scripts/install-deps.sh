#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the standalone demo need.
# Idempotent; run as root on a fresh Debian bookworm machine (the CI machine kind).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  # build: the server's allocator (jemalloc, crate tikv-jemalloc-sys) is C built by cc + make
  gcc make libc6-dev
  # tier 1 (host): filesystems, loop devices, probing, benchmarks
  util-linux e2fsprogs xfsprogs btrfs-progs fio smartmontools kmod gdisk
  # tools the node agent drives (also used inside the tier-2 guest, which shares this root)
  lvm2 thin-provisioning-tools cryptsetup-bin drbd-utils udev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/hwameistor-apt.log 2>&1 \
    || { tail -30 /tmp/hwameistor-apt.log; exit 1; }
fi
# loop devices for tier 1 and the demo
modprobe loop 2>/dev/null || true
echo "install-deps: ok"
