#!/usr/bin/env bash
# bench.sh - how fast is vmclonefs next to its peer? A benchmark, not a
# test: it prints figures and asserts nothing about speed.
#
#   scripts/bench.sh [--size GIB] [--quick] [--dir DIR] [--vmclonefs PATH]
#                    [--runtime SEC] [--keep]
#
# On one generated parent disk (make-sample-library.sh --big GIB: a
# monolithicSparse VMDK, first half data, second half never written) it
# measures, in one run:
#
#   1. reads with fio (psync, O_DIRECT where the file allows it): sequential
#      1 MiB (1 job), random 4 KiB (1 job and 4 jobs), each for a fixed time,
#      over the whole disk, of
#        vmclonefs   the flat disk of a linked clone (mkdir clones/Big/NAME)
#        qsd         qemu-storage-daemon's FUSE export of a qcow2 overlay on
#                    the same parent VMDK (qemu-img create -f qcow2 -b ... -F vmdk)
#        raw         a raw copy of the parent (qemu-img convert -O raw) on the
#                    work dir's own file system
#   2. random 4 KiB writes (1 job and 4 jobs, a fixed amount, then fsync)
#      into a fresh clone and a fresh overlay, both empty at the start;
#   1b. the same reads warm: the parent and the raw copy read into the page
#      cache first and not dropped (raw then read buffered: the page cache's
#      speed), warm sequential reads next to `cat` of the raw copy, and the
#      daemons' CPU seconds per GiB of cold sequential read;
#   3. the time to make a linked clone (mkdir) of a 1 GiB, a 64 GiB and a
#      1 TiB sparse parent, median of several runs, next to qemu-img create -f qcow2
#      -b of an overlay on the same parent. Each run uses a VM of its own, so
#      every mkdir is that VM's first clone (it takes a VMware snapshot).
#
# Output: the machine, the versions, the method, and a table
#   test | vmclonefs | qemu-storage-daemon | raw | ratio vmclonefs/qemu
# in MiB/s (throughput), IOPS (4 KiB) or ms (clones). For throughput and
# IOPS a ratio above 1 means vmclonefs is faster; for clone times, below 1.
#
# Options:
#   --size GIB        parent disk size (default 4)
#   --quick           smoke run: 1 GiB parent, 3 s per fio run, 3 clone runs
#   --dir DIR         work dir (default /var/tmp/vmclonefs-bench); it needs
#                     about 2.5 x GIB of space; wiped at start, data removed
#                     at the end (logs and results.txt stay) unless --keep
#   --vmclonefs PATH  the binary to measure (default: build build/plain the
#                     way scripts/demo.sh does and use it)
#   --runtime SEC     seconds per timed fio run (default 10)
#   --keep            keep the library, clones and images after the run
#
# Needs (Debian 12, as root: bash scripts/install-deps.sh): fio, qemu-utils,
# qemu-system-common (qemu-storage-daemon), fuse3. Root is needed only to
# drop the page cache between runs; without it the run says so. With the
# defaults it takes about 5 minutes on 2 cores.

set -euo pipefail
export LC_ALL=C
umask 022

PROG=${0##*/}
TOP=$(cd -- "$(dirname -- "$0")/.." && pwd)
SIZE_GIB=4
SIZE_SET=0
QUICK=0
WORK=/var/tmp/vmclonefs-bench
VCF=
RUNTIME=10
RUNTIME_SET=0
KEEP=0
CLONE_RUNS=5
CLONE_SIZES=(1 64 1024)
MARKER=.vmclonefs-bench

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

# shellcheck source=scripts/script-lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/script-lib.sh"

while (( $# > 0 )); do
    case $1 in
    --size) (( $# >= 2 )) || usage_error "--size needs a value"
        positive_int --size "$2"; SIZE_GIB=$((10#$2)); SIZE_SET=1; shift 2 ;;
    --size=*) positive_int --size "${1#*=}"; SIZE_GIB=$((10#${1#*=})); SIZE_SET=1; shift ;;
    --runtime) (( $# >= 2 )) || usage_error "--runtime needs a value"
        positive_int --runtime "$2"; RUNTIME=$((10#$2)); RUNTIME_SET=1; shift 2 ;;
    --runtime=*) positive_int --runtime "${1#*=}"; RUNTIME=$((10#${1#*=})); RUNTIME_SET=1; shift ;;
    --dir) (( $# >= 2 )) || usage_error "--dir needs a value"
        WORK=$2; shift 2 ;;
    --dir=*) WORK=${1#*=}; shift ;;
    --vmclonefs) (( $# >= 2 )) || usage_error "--vmclonefs needs a value"
        VCF=$2; shift 2 ;;
    --vmclonefs=*) VCF=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
    esac
done
if (( QUICK )); then
    (( SIZE_SET )) || SIZE_GIB=1
    (( RUNTIME_SET )) || RUNTIME=3
    CLONE_RUNS=3
fi
(( SIZE_GIB <= 2048 )) || usage_error "--size above 2048 GiB is not sensible here"
[[ -n $WORK ]] || usage_error "--dir needs a folder"

for tool in fio qemu-img qemu-storage-daemon fusermount3 mountpoint; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' is needed but not found; run: bash scripts/install-deps.sh (as root)"
done
[[ -e /dev/fuse ]] || die "/dev/fuse is missing (modprobe fuse)"

# ---------------------------------------------------------------- build

if [[ -z $VCF ]]; then
    echo "# building vmclonefs in $TOP/build/plain"
    (
        cd "$TOP"
        [[ -x configure ]] || autoreconf -fi
        mkdir -p build/plain
        cd build/plain
        [[ -f Makefile ]] || "$TOP/configure" -q
        make -j"$(nproc)" -s >/dev/null
    ) || die "building vmclonefs failed"
    VCF=$TOP/build/plain/vmclonefs
fi
[[ -x $VCF ]] || die "'$VCF' is not an executable vmclonefs"
VCF=$(cd -- "$(dirname -- "$VCF")" && pwd)/${VCF##*/}

# ---------------------------------------------------------------- work dir

mounts_under() { # DIR: mount points at or below DIR, deepest first
    awk -v d="$1" '{ p = $5; gsub(/\\040/, " ", p)
        if (p == d || index(p, d "/") == 1) print p }' /proc/self/mountinfo | sort -r
}

if [[ -e $WORK || -L $WORK ]]; then
    [[ -d $WORK ]] || die "'$WORK' exists and is not a folder"
    if [[ -n $(ls -A -- "$WORK") && ! -e $WORK/$MARKER ]]; then
        die "'$WORK' is not empty and was not made by $PROG; give another --dir"
    fi
fi
mkdir -p -- "$WORK"
WORK=$(cd -- "$WORK" && pwd -P)
# Left over from a run that was killed: unmount, then wipe.
while IFS= read -r m; do
    [[ -n $m ]] || continue
    fusermount3 -u -- "$m" 2>/dev/null || fusermount3 -uz -- "$m" 2>/dev/null ||
        umount -l -- "$m" 2>/dev/null || die "cannot unmount $m left from an earlier run"
done < <(mounts_under "$WORK")
find "$WORK" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
: >"$WORK/$MARKER"

LIB=$WORK/library
MNT=$WORK/mnt
LOGS=$WORK/logs
RESULTS=$WORK/results.txt
mkdir -p "$MNT" "$LOGS"

VCF_PID=
QSD_PIDS=()
EXPORTS=()

unmount_file() { # MOUNTPOINT
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        mountpoint -q -- "$1" 2>/dev/null || return 0
        fusermount3 -u -- "$1" 2>/dev/null && return 0
        sleep 0.3
    done
    fusermount3 -uz -- "$1" 2>/dev/null || true
}

stop_qsd() { # PID EXPORTFILE
    if kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
    # qemu-storage-daemon 7.2 exits on SIGTERM without unmounting its export.
    unmount_file "$2"
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM HUP
    set +e
    for i in "${!QSD_PIDS[@]}"; do
        stop_qsd "${QSD_PIDS[$i]}" "${EXPORTS[$i]}"
    done
    if [[ -n $VCF_PID ]]; then
        unmount_file "$MNT"
        for i in $(seq 50); do
            kill -0 "$VCF_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$VCF_PID" 2>/dev/null; then
            kill "$VCF_PID" 2>/dev/null
        fi
        wait "$VCF_PID" 2>/dev/null
    fi
    if (( ! KEEP )) && [[ -z $(mounts_under "$WORK") ]]; then
        rm -rf -- "$LIB" "$MNT" "$WORK"/*.img "$WORK"/*.qcow2
    fi
    (( rc == 0 )) || printf '%s: failed (exit %d); logs are in %s\n' "$PROG" "$rc" "$LOGS" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- helpers

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

fmt_ms() { # MICROSECONDS -> milliseconds, 2 decimals
    printf '%d.%02d' $(($1 / 1000)) $((($1 % 1000) / 10))
}

median() { # VALUES... (integers)
    printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"
}

DROP=0
if [[ -w /proc/sys/vm/drop_caches ]] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    DROP=1
fi
drop_caches() {
    sync
    if (( DROP )); then
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# O_DIRECT where the file system takes it; buffered (and said so) where not.
direct_flag() { # FILE -> 1 or 0
    if dd if="$1" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
        echo 1
    else
        echo 0
    fi
}

wait_mount() { # PATH PID WHAT
    local i
    for i in $(seq 100); do
        mountpoint -q -- "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited before mounting $1 (see $LOGS)"
        sleep 0.1
    done
    die "$3 did not mount $1 within 10 s (see $LOGS)"
}

QSD_N=0
start_qsd() { # OVERLAY EXPORTFILE -> sets QSD_PID
    local overlay=$1 export=$2
    : >"$export"
    QSD_N=$((QSD_N + 1))
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=f,filename=$overlay" \
        --blockdev driver=qcow2,node-name=q,file=f \
        --export "type=fuse,id=e,node-name=q,mountpoint=$export,writable=on" \
        >"$LOGS/qsd-$QSD_N.log" 2>&1 &
    QSD_PID=$!
    QSD_PIDS+=("$QSD_PID")
    EXPORTS+=("$export")
    wait_mount "$export" "$QSD_PID" qemu-storage-daemon
}

new_overlay() { # OVERLAY
    qemu-img create -q -f qcow2 -b "$PARENT" -F vmdk "$1"
}

# fio_run WHO FILE RW BS JOBS [fio options...] -> prints "KIB_PER_S IOPS"
# (the read or the write side, by RW), or "fail". Runs in a subshell.
fio_run() {
    local who=$1 file=$2 rw=$3 bs=$4 jobs=$5 direct line tag
    shift 5
    direct=$(direct_flag "$file")
    tag=$rw-$bs-j$jobs-$who
    local log=$LOGS/fio-$tag.log
    local warm_opts=()
    # fio drops a file's page cache before a run unless told not to: the
    # warm raw figure would be the device's.
    if (( ${WARM:-0} )); then warm_opts=(--invalidate=0); else drop_caches; fi
    # fio splits --filename at ':' unless escaped (snapshot clones have one).
    if ! line=$(fio --name="$tag" --filename="${file//:/\\:}" --rw="$rw" --bs="$bs" \
            --numjobs="$jobs" --group_reporting --ioengine=psync --direct="$direct" \
            --size="$DISK_BYTES" --output-format=terse --terse-version=3 "${warm_opts[@]}" "$@" \
            2>"$log"); then
        printf 'fio failed on %s: %s\n' "$file" "$(tail -n 3 "$log")" >&2
        echo fail
        return 0
    fi
    printf '%s\n' "$line" >>"$log"
    # terse v3: field 7/8 read KiB/s and IOPS, 48/49 the same for writes
    case $rw in
    *write) awk -F';' '{ print $48, $49 }' <<<"$line" ;;
    *) awk -F';' '{ print $7, $8, $6 }' <<<"$line" ;;   # 6: KiB read in all
    esac
}

ROWS=()
add_row() { ROWS+=("$1|$2|$3|$4|$5"); }

# value KIND "KIB IOPS" -> MiB/s or IOPS as printed
value() {
    local kind=$1 pair=$2
    [[ $pair != fail ]] || { echo fail; return; }
    read -r kib iops _ <<<"$pair"
    case $kind in
    mib) awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }' ;;
    iops) awk -v i="$iops" 'BEGIN { printf "%.0f", i }' ;;
    esac
}

ratio() { # A B
    if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
    else
        echo -
    fi
}

# ---------------------------------------------------------------- machine

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
[[ -n $cpu_model ]] || cpu_model=$(uname -m)
mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
fs_type=$(df -PT -- "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')
START_US=$(now_us)

{
    echo "vmclonefs benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine:   $(nproc) CPUs, $cpu_model, $mem_gib GiB RAM, kernel $(uname -r)"
    echo "work dir:  $WORK ($fs_type)"
    echo "vmclonefs: $("$VCF" --version 2>&1 | paste -sd' ' -) ($VCF)"
    echo "qemu:      $(qemu-img --version | head -n1), $(qemu-storage-daemon --version | head -n1)"
    echo "fio:       $(fio --version)"
} | tee "$RESULTS"

# ---------------------------------------------------------------- setup

echo "# making the library: a ${SIZE_GIB} GiB parent (Big), and sparse ${CLONE_SIZES[*]} GiB VMs for clone timing"
bash "$TOP/scripts/make-sample-library.sh" --size 16 --big "$SIZE_GIB" "$LIB" >"$LOGS/library.log" 2>&1 ||
    die "make-sample-library.sh failed (see $LOGS/library.log)"
PARENT=$LIB/Big/Big.vmdk
DISK_BYTES=$((SIZE_GIB * 1024 * 1024 * 1024))

# VMs for clone timing: Big's config, renamed, over a new sparse disk.
for s in "${CLONE_SIZES[@]}"; do
    for i in $(seq "$CLONE_RUNS"); do
        vm=T${s}g-$i
        mkdir "$LIB/$vm"
        sed "s/Big/$vm/g" "$LIB/Big/Big.vmx" >"$LIB/$vm/$vm.vmx"
        : >"$LIB/$vm/$vm.vmsd"
        qemu-img create -q -f vmdk -o subformat=monolithicSparse,adapter_type=lsilogic,hwversion=19 \
            "$LIB/$vm/$vm.vmdk" "${s}G"
    done
done

echo "# raw copy of the parent (qemu-img convert -O raw)"
RAW=$WORK/raw.img
qemu-img convert -O raw "$PARENT" "$RAW"

echo "# mounting vmclonefs"
"$VCF" -f -o "log=$LOGS/vmclonefs.log" "$LIB" "$MNT" >"$LOGS/vmclonefs.stderr" 2>&1 &
VCF_PID=$!
wait_mount "$MNT" "$VCF_PID" vmclonefs

clone_dir() { # NAME: where clones/Big/NAME or clones/Big@SNAP/NAME appeared
    local d
    for d in "$MNT/clones/Big/$1" "$MNT"/clones/Big@*/"$1"; do
        [[ -d $d ]] && { echo "$d"; return 0; }
    done
    return 1
}

mkdir "$MNT/clones/Big/bench-r"
VCF_READ=$(clone_dir bench-r)/bench-r-flat.vmdk
[[ -f $VCF_READ ]] || die "the clone's flat disk $VCF_READ is missing"
# Write clones come from the snapshot the first mkdir took, so they sit on
# the same parent VMDK as the read clone and the qemu overlays (another
# mkdir clones/Big/... would put an empty delta between).
SNAPDIR=
for d in "$MNT"/clones/Big@*; do
    [[ -d $d ]] && { SNAPDIR=$d; break; }
done
[[ -n $SNAPDIR ]] || SNAPDIR=$MNT/clones/Big

new_overlay "$WORK/read.qcow2"
start_qsd "$WORK/read.qcow2" "$WORK/read-export.img"
QSD_READ=$WORK/read-export.img

# ---------------------------------------------------------------- reads

D_VCF=$(direct_flag "$VCF_READ")
D_QSD=$(direct_flag "$QSD_READ")
D_RAW=$(direct_flag "$RAW")
echo "# reads: fio, ${RUNTIME} s each, over the whole ${SIZE_GIB} GiB disk"
# read_test LABEL KIND RW BS JOBS; with WARM=1 the page cache is kept
# (fio_run) and the raw copy is read buffered, from it.
read_test() {
    local label=$1 kind=$2 rw=$3 bs=$4 jobs=$5 a b c raw_opts=() raw_name=raw
    if (( ${WARM:-0} )); then raw_opts=(--direct=0); raw_name="raw (page cache)"; fi
    a=$(value "$kind" "$(fio_run vcf "$VCF_READ" "$rw" "$bs" "$jobs" --time_based --runtime="$RUNTIME")")
    b=$(value "$kind" "$(fio_run qsd "$QSD_READ" "$rw" "$bs" "$jobs" --time_based --runtime="$RUNTIME")")
    c=$(value "$kind" "$(fio_run raw "$RAW" "$rw" "$bs" "$jobs" --time_based --runtime="$RUNTIME" "${raw_opts[@]}")")
    add_row "$label" "$a" "$b" "$c" "$(ratio "$a" "$b")"
    printf '  %-34s vmclonefs %s, qsd %s, %s %s\n' "$label" "$a" "$b" "$raw_name" "$c"
}
# cpu_s PID: user + system CPU seconds the process has used so far.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
# s_per_gib CPU0 CPU1 "KIB IOPS KIB_TOTAL" -> CPU seconds per GiB read
s_per_gib() {
    [[ $3 != fail ]] || { echo fail; return; }
    awk -v a="$1" -v b="$2" -v k="${3##* }" 'BEGIN { printf "%.2f", (b - a) / (k / 1048576) }'
}
# The cold sequential read, with each daemon's CPU time per GiB.
c0=$(cpu_s "$VCF_PID"); pa=$(fio_run vcf "$VCF_READ" read 1M 1 --time_based --runtime="$RUNTIME"); c1=$(cpu_s "$VCF_PID")
q0=$(cpu_s "$QSD_PID"); pb=$(fio_run qsd "$QSD_READ" read 1M 1 --time_based --runtime="$RUNTIME"); q1=$(cpu_s "$QSD_PID")
pc=$(fio_run raw "$RAW" read 1M 1 --time_based --runtime="$RUNTIME")
a=$(value mib "$pa"); b=$(value mib "$pb"); c=$(value mib "$pc")
add_row "seq read 1 MiB, 1 job (MiB/s)" "$a" "$b" "$c" "$(ratio "$a" "$b")"
printf '  %-34s vmclonefs %s, qsd %s, raw %s\n' "seq read 1 MiB, 1 job (MiB/s)" "$a" "$b" "$c"
a=$(s_per_gib "$c0" "$c1" "$pa"); b=$(s_per_gib "$q0" "$q1" "$pb")
add_row "daemon CPU s per GiB, seq read" "$a" "$b" "-" "$(ratio "$a" "$b")"
printf '  %-34s vmclonefs %s, qsd %s\n' "daemon CPU s per GiB, seq read" "$a" "$b"
read_test "rand read 4 KiB, 1 job (IOPS)" iops randread 4k 1
read_test "rand read 4 KiB, 4 jobs (IOPS)" iops randread 4k 4

# Warm: what the daemons cost once their image files are in the page cache.
echo "# warm reads: parent and raw copy in the page cache, not dropped; raw read buffered"
cat "$PARENT" "$RAW" >/dev/null
WARM=1 read_test "warm seq read 1 MiB (MiB/s)" mib read 1M 1
# The issue's yardstick for warm sequential reads: cat of the raw copy
# from the page cache (its 128 KiB reads), best of 3; ratio: vmclonefs/cat.
warm_vcf=${ROWS[-1]#*|}; warm_vcf=${warm_vcf%%|*}
best=0
for i in 1 2 3; do
    t0=$(now_us); cat "$RAW" >/dev/null; t1=$(now_us)
    m=$(( DISK_BYTES * 1000000 / 1048576 / (t1 - t0) ))
    (( m > best )) && best=$m
done
add_row "cat of the raw copy, warm (MiB/s)" "$warm_vcf" "-" "$best" "$(ratio "$warm_vcf" "$best") (vcf/cat)"
printf '  %-34s %s MiB/s, vmclonefs warm seq %s\n' "cat of the raw copy, warm" "$best" "$warm_vcf"
WARM=1 read_test "warm rand read 4 KiB, 1 job (IOPS)" iops randread 4k 1
WARM=1 read_test "warm rand read 4 KiB, 4 jobs (IOPS)" iops randread 4k 4

stop_qsd "$QSD_PID" "$QSD_READ"

# ---------------------------------------------------------------- writes

WRITE_BYTES=$((DISK_BYTES / 16))
WRITE_CAP=$((RUNTIME * 4))
echo "# writes: fio, $((WRITE_BYTES / 4096)) random 4 KiB writes, then fsync; fresh clone and overlay each"
write_test() { # LABEL JOBS N
    local label=$1 jobs=$2 n=$3 a b d
    mkdir "$SNAPDIR/bench-w$n"
    d=$(clone_dir "bench-w$n")
    D_WVCF=$(direct_flag "$d/bench-w$n-flat.vmdk")
    a=$(value iops "$(fio_run vcf "$d/bench-w$n-flat.vmdk" randwrite 4k "$jobs" \
        --io_size=$((WRITE_BYTES / jobs)) --runtime="$WRITE_CAP" --end_fsync=1)")
    new_overlay "$WORK/write$n.qcow2"
    start_qsd "$WORK/write$n.qcow2" "$WORK/write$n-export.img"
    D_WQSD=$(direct_flag "$WORK/write$n-export.img")
    b=$(value iops "$(fio_run qsd "$WORK/write$n-export.img" randwrite 4k "$jobs" \
        --io_size=$((WRITE_BYTES / jobs)) --runtime="$WRITE_CAP" --end_fsync=1)")
    stop_qsd "$QSD_PID" "$WORK/write$n-export.img"
    add_row "$label" "$a" "$b" "-" "$(ratio "$a" "$b")"
    printf '  %-34s vmclonefs %s, qsd %s\n' "$label" "$a" "$b"
}
write_test "rand write 4 KiB, 1 job (IOPS)" 1 1
write_test "rand write 4 KiB, 4 jobs (IOPS)" 4 2

# ---------------------------------------------------------------- clones

echo "# clone creation: median of $CLONE_RUNS, each on a VM of its own"
for s in "${CLONE_SIZES[@]}"; do
    vt=()
    qt=()
    for i in $(seq "$CLONE_RUNS"); do
        vm=T${s}g-$i
        t0=$(now_us)
        mkdir "$MNT/clones/$vm/c$s-$i"
        t1=$(now_us)
        vt+=($((t1 - t0)))
        t0=$(now_us)
        qemu-img create -q -f qcow2 -b "$LIB/$vm/$vm.vmdk" -F vmdk "$WORK/clone-$vm.qcow2"
        t1=$(now_us)
        qt+=($((t1 - t0)))
    done
    a=$(fmt_ms "$(median "${vt[@]}")")
    b=$(fmt_ms "$(median "${qt[@]}")")
    add_row "linked clone of ${s} GiB parent (ms)" "$a" "$b" "-" "$(ratio "$a" "$b")"
    printf '  %-34s vmclonefs %s, qemu-img %s  (runs, ms: vmclonefs' "${s} GiB" "$a" "$b"
    for t in "${vt[@]}"; do printf ' %s' "$(fmt_ms "$t")"; done
    printf '; qemu-img'
    for t in "${qt[@]}"; do printf ' %s' "$(fmt_ms "$t")"; done
    printf ')\n'
done

# ---------------------------------------------------------------- report

dname() { case $1 in 1) echo "O_DIRECT" ;; *) echo "buffered" ;; esac; }
elapsed=$(( ($(now_us) - START_US) / 1000000 ))
{
    echo
    echo "method:"
    echo "  parent: $PARENT, monolithicSparse, ${SIZE_GIB} GiB, first half data, rest never written"
    echo "  vmclonefs: $VCF_READ (linked clone; default options)"
    echo "  qemu-storage-daemon: FUSE export of a qcow2 overlay (-b Big.vmdk -F vmdk), cache defaults (page cache, writeback)"
    echo "  raw: $RAW (qemu-img convert -O raw, holes kept) read on $fs_type"
    echo "  fio: ioengine=psync; reads time-based ${RUNTIME} s over the whole disk; writes: $((WRITE_BYTES >> 20)) MiB in"
    echo "       4 KiB writes at random offsets (fio random map: each offset once), end_fsync=1, capped at ${WRITE_CAP} s"
    echo "  I/O mode: reads: vmclonefs $(dname "$D_VCF"), qsd $(dname "$D_QSD"), raw $(dname "$D_RAW");"
    echo "       writes: vmclonefs $(dname "$D_WVCF"), qsd $(dname "$D_WQSD") (O_DIRECT keeps the FUSE"
    echo "       file's own page cache out; both daemons still read their image files through the host page cache,"
    echo "       while raw O_DIRECT reads the device, so raw is the device's speed, not a ceiling for the daemons)"
    if (( DROP )); then
        echo "  page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every fio run"
    else
        echo "  page cache: NOT dropped (/proc/sys/vm/drop_caches not writable; run as root to drop it)"
    fi
    echo "  clone: wall time of the command (mkdir, qemu-img create -f qcow2 -b P -F vmdk), process start included"
    echo
    printf '%-38s | %12s | %19s | %10s | %s\n' test vmclonefs qemu-storage-daemon raw "ratio vmclonefs/qemu"
    printf '%-38s-+-%12s-+-%19s-+-%10s-+-%s\n' "$(printf '%038d' 0 | tr 0 -)" "------------" \
        "-------------------" "----------" "--------------------"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r t a b c q <<<"$r"
        printf '%-38s | %12s | %19s | %10s | %s\n' "$t" "$a" "$b" "$c" "$q"
    done
    echo
    echo "ratio: above 1 = vmclonefs faster for MiB/s and IOPS; below 1 = vmclonefs faster for ms"
    echo "total time: ${elapsed} s; logs: $LOGS"
} | tee -a "$RESULTS"
