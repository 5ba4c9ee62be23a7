#!/bin/bash
# Installs what vmclonefs needs to build, test and benchmark on Debian 12.
# Run as root. Safe to run again: apt-get skips what is installed.
set -euo pipefail
packages=(
    # build
    build-essential pkg-config autoconf automake libtool
    libfuse3-dev libvmdk-dev libbfio-dev libxxhash-dev libglib2.0-dev check
    # run
    fuse3
    # tests, the sample library and the benchmark
    qemu-utils qemu-system-common libvmdk-utils fio attr python3
    fdisk e2fsprogs util-linux rsync borgbackup xfsprogs
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# FUSE needs its device; load the module where it is not built in.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
echo "dependencies: all present"
