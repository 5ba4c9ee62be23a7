#!/usr/bin/env bash
# bench-full.sh - how fast is a full clone? A benchmark, not a test: it
# prints figures and asserts nothing.
#
#   scripts/bench-full.sh [--size GIB] [--runtime SEC] [--dir DIR] [--no-xfs]
#
# On one parent (make-sample-library.sh --big GIB: monolithicSparse, first
# half data, second half never written), page cache dropped before each:
#   1. mkdir of a full clone (-o clone_type=full): the time until it
#      returns, and until the clone is full (its state xattr), as MiB/s of
#      the data it copied, next to qemu-img convert -O vmdk and
#      cp --sparse=always of the same parent;
#   2. fio random 4 KiB reads and writes (1 job, RUNTIME s) on a full clone
#      while its copy runs, next to the same on an idle linked clone;
#   3. (unless --no-xfs, or without xfsprogs) 1 again with the library on a
#      loop-mounted XFS made with mkfs.xfs -m reflink=1, and whether the
#      store shares blocks with the parent (xfs_io fiemap -v flags).
#
# Options: --size GIB (default 4), --runtime SEC (default 5), --dir DIR
# (default /var/tmp/vmclonefs-bench-full, wiped at start and removed at the
# end). Needs root (page cache, loop mount), fio, qemu-utils, fuse3, attr;
# builds build/plain as bench.sh does.
set -euo pipefail
export LC_ALL=C
TOP=$(cd -- "$(dirname -- "$0")/.." && pwd)
SIZE=4
RUNTIME=5
WORK=/var/tmp/vmclonefs-bench-full
XFS=1
while (( $# > 0 )); do
    case $1 in
    --size) SIZE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --dir) WORK=$2; shift 2 ;;
    --no-xfs) XFS=0; shift ;;
    -h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "bench-full.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $SIZE =~ ^[1-9][0-9]*$ && $RUNTIME =~ ^[1-9][0-9]*$ ]] ||
    { echo "bench-full.sh: --size and --runtime take whole numbers" >&2; exit 2; }
command -v mkfs.xfs >/dev/null || XFS=0
(cd "$TOP" && { [[ -x configure ]] || autoreconf -fi; } && mkdir -p build/plain && cd build/plain \
    && { [[ -f Makefile ]] || "$TOP/configure" -q; } && make -j"$(nproc)" -s >/dev/null)
VCF=$TOP/build/plain/vmclonefs

MNT=$WORK/mnt
VCF_PID= LOOPDIR=
cleanup() {
    [[ -n $VCF_PID ]] && { fusermount3 -u "$MNT" 2>/dev/null; wait "$VCF_PID" 2>/dev/null; }
    [[ -n $LOOPDIR ]] && umount "$LOOPDIR" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK" "$MNT"

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
mount_vcf() { # LIB OPTIONS
    "$VCF" -f -o "log=$WORK/vcf.log,$2" "$1" "$MNT" 2>>"$WORK/vcf.err" &
    VCF_PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.1; done
    echo "bench-full.sh: the mount did not appear" >&2; exit 1
}
unmount_vcf() { fusermount3 -u "$MNT"; wait "$VCF_PID" || true; VCF_PID=; }
state() { getfattr --only-values -n user.vmclonefs.state "$1" 2>/dev/null; }
wait_full() { # FOLDER
    while [[ $(state "$1") != full ]]; do
        [[ $(state "$1") = broken ]] && { echo "bench-full.sh: $1 broke" >&2; exit 1; }
        sleep 0.02
    done
}
# Times one full clone NAME of Big in LIB: "MKDIR_MS FULL_S BYTES".
full_clone() { # LIB NAME
    drop
    mount_vcf "$1" clone_type=full
    local t0 t1 t2 folder=$MNT/clones/Big/$2
    t0=$(now); mkdir "$folder"; t1=$(now)
    wait_full "$folder"
    t2=$(now)
    local bytes
    bytes=$(getfattr --only-values -n user.vmclonefs.progress "$folder" | cut -d' ' -f2)
    unmount_vcf
    echo "$(ms "$t0" "$t1") $(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f", b - a }') $bytes"
}
timed() { local t0; t0=$(now); "$@"; awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
mibs() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / 1048576 / s }'; }

echo "# making a ${SIZE} GiB parent, half data"
"$TOP/scripts/make-sample-library.sh" --size 16 --big "$SIZE" "$WORK/lib" >/dev/null
LIB=$WORK/lib
PARENT=$LIB/Big/Big.vmdk

read -r mk full bytes <<<"$(full_clone "$LIB" f1)"
# The copy is durable step by step (fsync); the peers are timed as they
# run (their data may still be in the page cache) and with a sync after.
convert_sync() { qemu-img convert -O vmdk "$PARENT" "$WORK/conv.vmdk" && sync; }
drop; tq=$(timed qemu-img convert -O vmdk "$PARENT" "$WORK/conv.vmdk"); rm -f "$WORK/conv.vmdk"
drop; tqs=$(timed convert_sync); rm -f "$WORK/conv.vmdk"
drop; tc=$(timed cp --sparse=always "$PARENT" "$WORK/cp.vmdk"); rm -f "$WORK/cp.vmdk"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
printf '%-30s | %9s | %11s | %11s | %9s | %s\n' "full clone, ${SIZE} GiB parent" "vmclonefs" \
    "qemu-img cv" "cv + sync" "cp sparse" "speed vs cv, cv+sync"
printf '%-30s | %9s | %11s | %11s | %9s |\n' "mkdir returns (ms)" "$mk" "-" "-" "-"
printf '%-30s | %9s | %11s | %11s | %9s | %s, %s\n' "until full / done (s)" "$full" "$tq" "$tqs" \
    "$tc" "$(ratio "$full" "$tq")" "$(ratio "$full" "$tqs")"
printf '%-30s | %9s | %11s | %11s | %9s |\n' "MiB/s of $((bytes / 1048576)) MiB of data" \
    "$(mibs "$bytes" "$full")" "$(mibs "$bytes" "$tq")" "$(mibs "$bytes" "$tqs")" "$(mibs "$bytes" "$tc")"

# ---- guest I/O during a copy
fio_iops() { # FILE RW
    fio --name=g --filename="$1" --rw="$2" --bs=4k --ioengine=psync --direct=1 --time_based \
        --runtime="$RUNTIME" --size="${SIZE}G" --output-format=terse --terse-version=3 2>/dev/null |
        awk -F';' -v rw="$2" '{ printf "%.0f", rw == "randread" ? $8 : $49 }'
}
drop
mount_vcf "$LIB" clone_type=linked
mkdir "$MNT/clones/Big/idle"
idle_r=$(fio_iops "$MNT/clones/Big/idle/idle-flat.vmdk" randread)
idle_w=$(fio_iops "$MNT/clones/Big/idle/idle-flat.vmdk" randwrite)
unmount_vcf
drop
mount_vcf "$LIB" clone_type=full
mkdir "$MNT/clones/Big/busy"
busy_r=$(fio_iops "$MNT/clones/Big/busy/busy-flat.vmdk" randread)
left_r=$(state "$MNT/clones/Big/busy")
busy_w=$(fio_iops "$MNT/clones/Big/busy/busy-flat.vmdk" randwrite)
left_w=$(state "$MNT/clones/Big/busy")
wait_full "$MNT/clones/Big/busy"
unmount_vcf
printf '%-34s | %10s | %12s | %s\n' "guest 4 KiB, 1 job (IOPS)" "idle" "copying" "ratio"
printf '%-34s | %10s | %12s | %.2f\n' "rand read" "$idle_r" "$busy_r" \
    "$(awk -v a="$idle_r" -v b="$busy_r" 'BEGIN { print b / a }')"
printf '%-34s | %10s | %12s | %.2f\n' "rand write" "$idle_w" "$busy_w" \
    "$(awk -v a="$idle_w" -v b="$busy_w" 'BEGIN { print b / a }')"
echo "(the copy's state when each fio run ended: $left_r, then $left_w)"

# ---- on XFS with reflink
if [[ $XFS = 1 ]]; then
    truncate -s $((SIZE * 3 + 2))G "$WORK/xfs.img"
    mkfs.xfs -q -m reflink=1 "$WORK/xfs.img"
    LOOPDIR=$WORK/xfs
    mkdir "$LOOPDIR"
    mount -o loop "$WORK/xfs.img" "$LOOPDIR"
    cp -a "$LIB" "$LOOPDIR/lib"
    rm -rf "$LOOPDIR/lib/.vmclonefs"
    read -r xmk xfull _ <<<"$(full_clone "$LOOPDIR/lib" x1)"
    shared=0   # extents with FIEMAP_EXTENT_SHARED (0x2000)
    while read -r flags; do
        [[ $flags =~ ^0x[0-9a-fA-F]+$ ]] && (( flags & 0x2000 )) && shared=$((shared + 1))
    done < <(xfs_io -c "fiemap -v" "$LOOPDIR/lib/.vmclonefs/clones/x1/x1.vmdk" 2>/dev/null |
             awk 'NR > 2 { print $NF }')
    printf '%-34s | %10s | %12s | %s\n' "full clone on XFS (reflink=1)" "xfs" "ext4 above" "xfs/ext4"
    printf '%-34s | %10s | %12s |\n' "mkdir returns (ms)" "$xmk" "$mk"
    printf '%-34s | %10s | %12s | %.2f\n' "until full (s)" "$xfull" "$full" \
        "$(awk -v a="$xfull" -v b="$full" 'BEGIN { print a / b }')"
    echo "(store extents shared with another file, xfs_io fiemap: $shared)"
fi
