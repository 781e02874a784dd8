#!/bin/bash
# Tier-2 (kernel tier) setup: everything needed to boot a real Debian kernel
# under qemu and run host-built test binaries inside it. Idempotent: a second
# run only checks and returns in well under a second.
#
# Installs (Debian bookworm host, run as root):
#  - apt packages: qemu (TCG emulation), busybox-static (virtme-ng's initramfs),
#    kmod (depmod/modprobe), udev (the guest's /dev/disk/by-* links; without it
#    virtme-ng also loses the guest's exit status), and the userland the guest
#    runs from the shared read-only host root: lvm2, thin-provisioning-tools,
#    cryptsetup-bin, drbd-utils, e2fsprogs, xfsprogs, iproute2.
#  - the Debian generic kernel (whatever linux-image-amd64 currently depends
#    on), unpacked with dpkg-deb (NOT installed) into cache/kernel/, plus
#    depmod (the .deb ships no modules.dep). The cloud flavour lacks 9p.
#  - virtme-ng 1.42 from PyPI into cache/venv/.
#
# Environment:
#   VM_SKIP_APT=1   do not touch apt (CI image already has the packages)
set -euo pipefail
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$VM_DIR/cache
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

APT_PKGS=(qemu-system-x86 busybox-static kmod udev
  lvm2 thin-provisioning-tools cryptsetup-bin drbd-utils
  e2fsprogs xfsprogs iproute2 file cpio zstd python3-venv)

T0=$(now)
missing=()
for p in "${APT_PKGS[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "${VM_SKIP_APT:-0}" = 1 ]; then
    echo "setup: missing packages (VM_SKIP_APT=1): ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -qq
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    > "$CACHE/apt-install.log" 2>&1; then
    tail -30 "$CACHE/apt-install.log" >&2
    exit 1
  fi
fi
T_APT=$(since "$T0")

T1=$(now)
if ! ls "$CACHE"/kernel/boot/vmlinuz-* > /dev/null 2>&1; then
  # The metapackage names the current ABI package, e.g. linux-image-6.1.0-41-amd64.
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$KPKG" ]; then
    apt-get update -qq
    KPKG=$(apt-cache depends linux-image-amd64 |
      awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  [ -n "$KPKG" ] || { echo "setup: cannot resolve linux-image-amd64" >&2; exit 1; }
  echo "setup: unpacking $KPKG"
  dl=$(mktemp -d "$CACHE/dl.XXXXXX"); chmod 755 "$dl"
  (cd "$dl" && apt-get download -qq "$KPKG")
  rm -rf "$CACHE/kernel.tmp"
  dpkg-deb -x "$dl"/*.deb "$CACHE/kernel.tmp"
  rm -rf "$dl"
  KV=$(ls "$CACHE/kernel.tmp/lib/modules")
  depmod -b "$CACHE/kernel.tmp" "$KV"
  mv "$CACHE/kernel.tmp" "$CACHE/kernel"
fi
T_K=$(since "$T1")

T2=$(now)
if ! "$CACHE/venv/bin/vng" --version 2>/dev/null | grep -q '1\.42'; then
  rm -rf "$CACHE/venv"
  /usr/bin/python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check "virtme-ng==1.42"
fi
T_V=$(since "$T2")

echo "setup: ok (apt ${T_APT}s, kernel ${T_K}s, virtme-ng ${T_V}s, total $(since "$T0")s;" \
  "kernel $(cd "$CACHE/kernel/boot" && echo vmlinuz-*))"
