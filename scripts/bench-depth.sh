#!/usr/bin/env bash
# bench-depth.sh - does a read cost more at depth 8 than at depth 1? A
# benchmark, not a test: it prints figures and asserts nothing.
#
#   scripts/bench-depth.sh [--size GIB] [--runtime SEC] [--dir DIR]
#
# Two VMs over the same base disk (monolithicSparse, SIZE GiB, first half
# data): Shallow's disk is the base itself; Deep's is a chain of 7 deltas
# over it, each holding 4 MiB of its own at a spot of its own. Each VM is
# cloned through the mount (which adds the snapshot's empty delta: 2 and 9
# links), and fio reads 4 KiB at random over each clone's whole disk, page
# cache dropped first, 1 job and 4 jobs, qemu-storage-daemon beside them on
# a qcow2 overlay of the same chain. A third column reads c8, a clone of a
# clone ... of a clone of Shallow (8 deep, each with 4 MiB of its own).
# Prints IOPS and the ratios deep/shallow and c8/shallow.
#
# Options: --size GIB (default 2), --runtime SEC (default 10), --dir DIR
# (default /var/tmp/vmclonefs-bench-depth, wiped at start and removed at
# the end). Needs root (to drop the page cache), fio, qemu-utils,
# qemu-system-common, fuse3; builds build/plain as bench.sh does.
set -euo pipefail
export LC_ALL=C
TOP=$(cd -- "$(dirname -- "$0")/.." && pwd)
SIZE=2
RUNTIME=10
WORK=/var/tmp/vmclonefs-bench-depth
while (( $# > 0 )); do
    case $1 in
    --size) SIZE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --dir) WORK=$2; shift 2 ;;
    -h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "bench-depth.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $SIZE =~ ^[1-9][0-9]*$ && $RUNTIME =~ ^[1-9][0-9]*$ ]] || { echo "bench-depth.sh: --size and --runtime take whole numbers" >&2; exit 2; }
(cd "$TOP" && { [[ -x configure ]] || autoreconf -fi; } && mkdir -p build/plain && cd build/plain \
    && { [[ -f Makefile ]] || "$TOP/configure" -q; } && make -j"$(nproc)" -s >/dev/null)
VCF=$TOP/build/plain/vmclonefs

LIB=$WORK/lib MNT=$WORK/mnt
QSD_PID= VCF_PID=
cleanup() {
    [[ -n $QSD_PID ]] && { fusermount3 -u "$WORK/qsd.img" 2>/dev/null; kill "$QSD_PID" 2>/dev/null; wait "$QSD_PID" 2>/dev/null; }
    [[ -n $VCF_PID ]] && { fusermount3 -u "$MNT" 2>/dev/null; wait "$VCF_PID" 2>/dev/null; }
    rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$LIB/Shallow" "$LIB/Deep" "$MNT"
"$TOP/scripts/make-sample-library.sh" "$WORK/sample" >/dev/null

io() { qemu-io -f vmdk "$@" >/dev/null; }
base=$LIB/Shallow/Shallow.vmdk
qemu-img create -q -f vmdk -o subformat=monolithicSparse "$base" "${SIZE}G"
io -c "write -P 0x5a 0 $((SIZE * 512))M" "$base"
prev=$base
for i in 1 2 3 4 5 6 7; do
    d=$LIB/Deep/Deep-00000$i.vmdk
    qemu-img create -q -f vmdk -o subformat=monolithicSparse -b "$prev" -F vmdk "$d"
    io -c "write -P 0x6$i $((i * SIZE * 100))M 4M" "$d"
    prev=$d
done
for vm in Shallow Deep; do
    disk=Shallow.vmdk
    [[ $vm = Deep ]] && disk=Deep-000007.vmdk
    sed -e "s/Ubuntu/$vm/g" -e "s/\"$vm.vmdk\"/\"$disk\"/" "$WORK/sample/Ubuntu/Ubuntu.vmx" >"$LIB/$vm/$vm.vmx"
    : >"$LIB/$vm/$vm.vmsd"
done
# Deep's .vmx names a disk in Shallow's folder through the chain's hints.
"$VCF" -f "$LIB" "$MNT" 2>"$WORK/vcf.err" &
VCF_PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mkdir "$MNT/clones/Shallow/s1" "$MNT/clones/Deep/d1"
# Clones of clones: c1 of Shallow, then c2 of c1 ... c8 of c7, each writing
# 4 MiB of its own before its child is made (so each freeze makes a layer).
src=Shallow
for i in 1 2 3 4 5 6 7 8; do
    mkdir "$MNT/clones/$src/c$i"
    dd if=/dev/urandom of="$MNT/clones/$src/c$i/c$i-flat.vmdk" bs=1M count=4 \
        seek=$((i * SIZE * 100 + 50)) conv=notrunc,fsync status=none
    src=c$i
done

qemu-img create -q -f qcow2 -b "$LIB/Deep/Deep-000007.vmdk" -F vmdk "$WORK/deep.qcow2"
: >"$WORK/qsd.img"
qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$WORK/deep.qcow2" \
    --blockdev driver=qcow2,node-name=q,file=f \
    --export "type=fuse,id=e,node-name=q,mountpoint=$WORK/qsd.img,writable=on" >"$WORK/qsd.log" 2>&1 &
QSD_PID=$!
for _ in $(seq 100); do mountpoint -q "$WORK/qsd.img" && break; sleep 0.1; done

iops() { # FILE JOBS
    sync; echo 3 >/proc/sys/vm/drop_caches
    fio --name=r --filename="$1" --rw=randread --bs=4k --numjobs="$2" --group_reporting \
        --ioengine=psync --direct=1 --time_based --runtime="$RUNTIME" --size="${SIZE}G" \
        --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{ printf "%.0f", $8 }'
}
printf '%-22s | %9s | %9s | %11s | %9s | %s\n' "rand read 4 KiB, cold" "depth 1" "depth 8" "clone-of-8" \
    "qsd d8" "d8/d1, clones/d1"
for j in 1 4; do
    a=$(iops "$MNT/clones/Shallow/s1/s1-flat.vmdk" $j)
    b=$(iops "$MNT/clones/Deep/d1/d1-flat.vmdk" $j)
    k=$(iops "$MNT/clones/c7/c8/c8-flat.vmdk" $j)
    c=$(iops "$WORK/qsd.img" $j)
    printf '%-22s | %9s | %9s | %11s | %9s | %s\n' "$j job(s) (IOPS)" "$a" "$b" "$k" "$c" \
        "$(awk -v a="$a" -v b="$b" -v k="$k" 'BEGIN { printf "%.2f, %.2f", b / a, k / a }')"
done
echo "(vmclonefs links: 2 and 9 with the snapshot's delta; c8 sits on 7 frozen layers of"
echo " c1..c7 and Shallow's snapshot: 10 links; ${SIZE} GiB, ${RUNTIME} s per run)"
