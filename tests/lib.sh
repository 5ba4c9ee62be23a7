# Shared by the mount tests: a temporary library, a daemon in the
# foreground under our control, and cleanup whatever happens.
# Needs: $VMCLONEFS (the daemon), $top_srcdir. Sets $T, $LIB, $MNT, $LOG.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; [ -f "${LOG:-/dev/null}" ] && tail -n 20 "$LOG" >&2; exit 1; }
note() { echo "# $*"; }

if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
    echo "SKIP: needs root and /dev/fuse" >&2
    exit 77
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/vcf-mount.XXXXXX")
LIB=$T/lib
MNT=$T/mnt
LOG=$T/vmclonefs.log
DAEMON_ERR=$T/daemon.err
DAEMON_PID=

cleanup() {
    local rc=$?
    if [ -n "$DAEMON_PID" ]; then
        fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    # A test's own undo (a file system it mounted), after the daemon's.
    if [ -n "${EXTRA_CLEANUP:-}" ]; then eval "$EXTRA_CLEANUP" || true; fi
    if [ $rc -ne 0 ] || [ -n "${VCF_KEEP_TMP:-}" ]; then
        echo "# kept $T for a look" >&2
    else
        rm -rf "$T"
    fi
    exit $rc
}
trap cleanup EXIT

make_library() {
    "$top_srcdir/scripts/make-sample-library.sh" "$@" "$LIB" >/dev/null
}

# Mounts $LIB at $MNT with the daemon in the foreground (so that sanitizer
# reports reach $DAEMON_ERR) and returns once the mount answers.
mount_lib() {
    mkdir -p "$MNT"
    "$VMCLONEFS" -f -o "log=$LOG" "$@" "$LIB" "$MNT" 2>>"$DAEMON_ERR" &
    DAEMON_PID=$!
    for _ in $(seq 200); do
        if mountpoint -q "$MNT"; then return 0; fi
        kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon exited before mounting: $(cat "$DAEMON_ERR")"
        sleep 0.05
    done
    fail "mount did not appear"
}

# Unmounts and waits for the daemon, which must exit cleanly and without
# sanitizer reports.
unmount_lib() {
    fusermount3 -u "$MNT" || fail "fusermount3 -u failed"
    local rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=
    [ $rc -eq 0 ] || fail "daemon exited with status $rc: $(cat "$DAEMON_ERR")"
    if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$DAEMON_ERR"; then
        cat "$DAEMON_ERR" >&2
        fail "sanitizer report from the daemon"
    fi
}

# Kills the daemon as a crash would, and clears the dead mount.
crash_daemon() {
    kill -9 "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
}

# Raw image of a VMDK (and its chain) by qemu-img: the independent oracle.
raw_of() { qemu-img convert -O raw "$1" "$2"; }

same_bytes() { cmp -s "$1" "$2" || fail "$3: $1 and $2 differ ($(cmp "$1" "$2" 2>&1 | head -1))"; }

# Writes LEN random bytes at OFFSET into both files (a disk and its model).
write_both() {
    local off=$1 len=$2 a=$3 b=$4
    head -c "$len" /dev/urandom >"$T/chunk"
    dd if="$T/chunk" of="$a" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
    dd if="$T/chunk" of="$b" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# A VM NAME made like Ubuntu, with one empty disk NAME.vmdk of SIZE made
# by qemu-img in SUBFORMAT: new_vm NAME SUBFORMAT SIZE.
new_vm() {
    mkdir "$LIB/$1"
    sed "s/Ubuntu/$1/g" "$LIB/Ubuntu/Ubuntu.vmx" >"$LIB/$1/$1.vmx"
    qemu-img create -q -f vmdk -o subformat="$2",adapter_type=lsilogic "$LIB/$1/$1.vmdk" "$3"
}

# COUNT writes of 1 to 150000 random bytes into region INDEX (REGION bytes
# long) of DISK and of its MODEL alike: concurrent writers in regions of
# their own keep the model exact.
region_writes() { # INDEX REGION COUNT DISK MODEL
    local base=$(($1 * $2)) i len off
    for i in $(seq "$3"); do
        len=$(( (RANDOM * 32768 + RANDOM) % 150000 + 1 ))
        off=$(( base + (RANDOM * 32768 + RANDOM) % ($2 - len) ))
        head -c "$len" /dev/urandom >"$T/w$1"
        dd if="$T/w$1" of="$4" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
        dd if="$T/w$1" of="$5" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
    done
}

# Where guest byte OFFSET of VMDK FILE's own grains lies in FILE (qemu-img
# map, depth 0), or nothing if FILE does not hold it: host_offset FILE OFFSET.
host_offset() {
    qemu-img map --output=json -f vmdk "$1" 2>/dev/null | tr -d ' \n' | grep -o '{[^}]*}' |
        grep '"depth":0' | grep '"data":true' | awk -v want="$2" -F'[:,]' '{
            gsub(/[{}]/, "")
            for (i = 1; i < NF; i++) v[$i] = $(i + 1) + 0
            s = v["\"start\""]; l = v["\"length\""]; o = v["\"offset\""]
            if (s <= want && want < s + l) { print o + want - s; exit } }'
}

# N writers at once, region_writes in regions 0 .. N - 1, waited for.
parallel_writes() { # N REGION COUNT DISK MODEL
    local pids=() w p
    for w in $(seq 0 $(($1 - 1))); do
        region_writes "$w" "$2" "$3" "$4" "$5" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || fail "a writer failed"; done
}

# A failed check that does not spoil the checks after it: reported at once;
# finish_soft_fails (or unmount_lib's caller) fails the test at the end.
SOFT_FAILS=0
soft_fail() { echo "FAIL: $*" >&2; SOFT_FAILS=$((SOFT_FAILS + 1)); }
finish_soft_fails() { [ "$SOFT_FAILS" = 0 ] || fail "$SOFT_FAILS check(s) failed, see above"; }

# A clone folder's user.vmclonefs.NAME: attr FOLDER NAME.
attr() { getfattr --only-values -n "user.vmclonefs.$2" "$1" 2>/dev/null; }
# Waits until FOLDER's clone is in STATE, or fails after SECONDS.
wait_state() { # FOLDER STATE SECONDS
    for _ in $(seq $(($3 * 10))); do
        [ "$(attr "$1" state)" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 is $(attr "$1" state), not $2, after $3 s ($(attr "$1" error))"
}

# Suspends or resumes a VM as Workstation records it: set_vmstate VMX VALUE.
set_vmstate() {
    sed -i "s/^checkpoint\\.vmState = .*/checkpoint.vmState = \"$2\"/" "$1"
    grep -qx "checkpoint.vmState = \"$2\"" "$1" || fail "could not set checkpoint.vmState in $1"
}

log_mark() { LOG_MARK=$(wc -l <"$LOG"); }
# Log lines written since log_mark that hold every string given.
log_lines() {
    local out s
    out=$(tail -n +"$((LOG_MARK + 1))" "$LOG")
    for s in "$@"; do out=$(grep -aF -- "$s" <<<"$out" || true); done
    printf '%s' "$out"
}
# The daemon may log just after it replies: wait a little for the line.
expect_log() {
    local what=$1
    shift
    for _ in $(seq 20); do
        [ -n "$(log_lines "$@")" ] && return 0
        sleep 0.05
    done
    soft_fail "$what: no log line since the command holding all of: $*"
}

# expect_err WHAT MESSAGE CMD...: CMD fails, and what it prints holds
# MESSAGE (strerror of the errno). Marks the log first.
expect_err() {
    local what=$1 msg=$2 out
    shift 2
    log_mark
    if out=$("$@" 2>&1); then
        fail "$what: '$*' succeeded; expected \"$msg\""
    fi
    [[ $out == *"$msg"* ]] || fail "$what: expected \"$msg\", got: $out"
}

# Every name, type, mode and byte under DIR.
tree_state() {
    (cd "$1" && find . -printf '%y %m %p\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}
same_tree() { # BEFORE-STATE DIR WHAT
    local now
    now=$(tree_state "$2")
    [ "$now" = "$1" ] || fail "$3: $2 changed: $(diff <(echo "$1") <(echo "$now") | head -20)"
}
