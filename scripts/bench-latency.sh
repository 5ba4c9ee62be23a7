#!/usr/bin/env bash
# bench-latency.sh - do lookups and getattrs wait while the daemon syncs a
# clone or makes one? A benchmark, not a test: it prints figures.
#
#   scripts/bench-latency.sh [--vmclonefs PATH]... [--dirty MIB] [--dir DIR]
#
# For each binary given (default: build/plain/vmclonefs), on a sample
# library: a stat(2) loop on a file of the mount (MNT/Ubuntu/Ubuntu.vmx,
# fresh lookups: cache_timeout=0) runs for 8 s while
#   sync   a clone has MIB of unsynced writes (default 512) that the daemon's
#          5-second syncer writes out, and
#   mkdir  clones are made one after another (12 mkdirs of a VM's current
#          state; each takes or reuses a snapshot, about 10 fsyncs).
# It prints, per binary and case, how many stats ran and their median and
# worst latency in ms. A daemon that holds its one lock across fsync shows
# a worst case as long as the sync.
set -euo pipefail
export PROG=bench-latency.sh
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/script-lib.sh
. "$top/scripts/script-lib.sh"

bins=()
dirty=512
work=/var/tmp/vmclonefs-latency
while [ $# -gt 0 ]; do
    case $1 in
        --vmclonefs) bins+=("$(realpath "$2")"); shift 2 ;;
        --dirty) positive_int --dirty "$2"; dirty=$2; shift 2 ;;
        --dir) work=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) usage_error "unknown argument $1" ;;
    esac
done
[ ${#bins[@]} -gt 0 ] || bins=("$top/build/plain/vmclonefs")
for b in "${bins[@]}"; do [ -x "$b" ] || die "$b: no such program (build it first)"; done
[ "$(id -u)" = 0 ] || die "run as root (it mounts FUSE file systems)"

# stat PATH for SECONDS; prints: count median_ms worst_ms
stat_loop() {
    perl -MTime::HiRes=time -e '
        my ($path, $secs) = @ARGV; my @lat; my $end = time + $secs;
        while (time < $end) { my $t = time; stat($path); push @lat, time - $t; }
        @lat = sort { $a <=> $b } @lat;
        printf "%d %.3f %.1f\n", scalar @lat, 1000 * $lat[@lat / 2], 1000 * $lat[-1];' "$1" "$2"
}

rm -rf "$work"
mkdir -p "$work"
"$top/scripts/make-sample-library.sh" --size $((dirty + 64)) "$work/template" >/dev/null
printf '%-40s %-6s %8s %10s %10s\n' binary case stats median_ms worst_ms
for b in "${bins[@]}"; do
    for case in sync mkdir; do
        rm -rf "${work:?}/lib"
        cp -a "$work/template" "$work/lib"
        mkdir -p "$work/mnt"
        "$b" -f -o cache_timeout=0 "$work/lib" "$work/mnt" 2>"$work/daemon.log" &
        pid=$!
        for _ in $(seq 100); do mountpoint -q "$work/mnt" && break; sleep 0.05; done
        mountpoint -q "$work/mnt" || die "$b did not mount: $(tail -3 "$work/daemon.log")"
        if [ "$case" = sync ]; then
            mkdir "$work/mnt/clones/Chain/dirty"
            # Unsynced writes for the syncer: new grains all over the disk.
            head -c $((dirty * 1024 * 1024)) /dev/urandom >"$work/dirty.bin"
            dd if="$work/dirty.bin" of="$work/mnt/clones/Chain/dirty/dirty-flat.vmdk" bs=1M \
                conv=notrunc status=none
            result=$(stat_loop "$work/mnt/Ubuntu/Ubuntu.vmx" 8)
        else
            ( for i in $(seq 12); do mkdir "$work/mnt/clones/Chain/m$i"; sleep 0.3; done ) &
            maker=$!
            result=$(stat_loop "$work/mnt/Ubuntu/Ubuntu.vmx" 8)
            wait "$maker"
        fi
        fusermount3 -u "$work/mnt"
        wait "$pid" || true
        label=$b; [ ${#label} -le 40 ] || label=...${b: -37}
        # shellcheck disable=SC2086  # three numbers
        printf '%-40s %-6s %8s %10s %10s\n' "$label" "$case" $result
    done
done
rm -rf "${work:?}/lib" "${work:?}/template"
