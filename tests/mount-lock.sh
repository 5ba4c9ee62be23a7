#!/bin/bash
# One daemon per library: a second vmclonefs on the same library, at the
# same mount point or another, is refused before it mounts or changes
# anything, naming the lock file and the pid and host holding it; the first
# goes on unharmed. A daemon killed with -9 leaves no lock behind, and a
# background (daemonized) mount holds the lock in its serving process.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
LOCK=$(realpath "$LIB")/.vmclonefs/lock
HOST=$(hostname)
MNT2=$T/mnt2
mkdir -p "$MNT2"

# holds_open PID PATH: the process has PATH open.
holds_open() {
    local f
    for f in /proc/"$1"/fd/*; do [ "$(readlink "$f")" = "$2" ] && return 0; done
    return 1
}
fuse_mounts_at() { awk -v m="$1" '$2 == m && $3 ~ /^fuse/' /proc/self/mounts | wc -l; }

# second_daemon MOUNTPOINT HOLDER-PID WHAT: a second daemon on $LIB exits
# non-zero at once, says who holds the lock, mounts nothing, and leaves the
# library as it was. A daemon that serves instead is stopped after a while.
second_daemon() {
    local mnt=$1 pid=$2 what=$3 rc=0 before mounts
    mounts=$(fuse_mounts_at "$mnt")
    # A leftover of a crashed mkdir that the first daemon ignores: a second
    # daemon that went on to vcf_mount_init would delete it.
    mkdir -p "$LIB/.vmclonefs/clones/.creating-probe"
    before=$(tree_state "$LIB")
    timeout 10 "$VMCLONEFS" -f -o "log=$T/second.log" "$LIB" "$mnt" >"$T/second.out" 2>"$T/second.err" || rc=$?
    [ $rc -ne 124 ] || fail "$what: the second daemon served until stopped: $(cat "$T/second.err")"
    [ $rc -ne 0 ] || fail "$what: the second daemon exited 0"
    local err
    err=$(cat "$T/second.err")
    [[ $err == *"$LOCK"* ]] || fail "$what: the refusal does not name $LOCK: $err"
    [[ $err == *"pid $pid"* ]] || fail "$what: the refusal does not name pid $pid: $err"
    [[ $err == *"host $HOST"* ]] || fail "$what: the refusal does not name host $HOST: $err"
    [ "$(grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/second.err")" = 0 ] ||
        fail "$what: sanitizer report from the second daemon: $err"
    [ "$(fuse_mounts_at "$mnt")" = "$mounts" ] || fail "$what: the second daemon left a mount at $mnt"
    same_tree "$before" "$LIB" "$what: the refused daemon changed the library"
    rmdir "$LIB/.vmclonefs/clones/.creating-probe"
    note "$what: refused with: $err"
}

# The first daemon is unharmed: the clone made before reads its bytes, takes
# a write, and mkdir still makes clones.
first_unharmed() {
    local what=$1 name=$2
    same_bytes "$MNT/clones/Ubuntu/web1/web1-flat.vmdk" "$T/model.raw" "$what: clone made before"
    write_both $((RANDOM * 64)) 5000 "$MNT/clones/Ubuntu/web1/web1-flat.vmdk" "$T/model.raw"
    same_bytes "$MNT/clones/Ubuntu/web1/web1-flat.vmdk" "$T/model.raw" "$what: a write after"
    sync "$MNT/clones/Ubuntu/web1/web1-flat.vmdk"   # the crash below keeps what was synced
    mkdir "$MNT/clones/Ubuntu/$name" || fail "$what: mkdir after the refusal"
    raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent-now.raw"
    same_bytes "$MNT/clones/Ubuntu/$name/$name-flat.vmdk" "$T/parent.raw" "$what: a new clone"
    same_bytes "$T/parent-now.raw" "$T/parent.raw" "$what: the parent"
}

mount_lib
[ -f "$LOCK" ] || fail "no lock file $LOCK"
grep -qx "pid $DAEMON_PID" "$LOCK" || fail "the lock file does not name pid $DAEMON_PID: $(cat "$LOCK")"
mkdir "$MNT/clones/Ubuntu/web1" || fail "mkdir web1"
cp "$T/parent.raw" "$T/model.raw"
write_both 1000000 70000 "$MNT/clones/Ubuntu/web1/web1-flat.vmdk" "$T/model.raw"
sync "$MNT/clones/Ubuntu/web1/web1-flat.vmdk"

second_daemon "$MNT" "$DAEMON_PID" "same mount point"
first_unharmed "same mount point" web2
second_daemon "$MNT2" "$DAEMON_PID" "second mount point"
mountpoint -q "$MNT2" && fail "something is mounted at $MNT2"
first_unharmed "second mount point" web3

# A crash: the kernel drops the lock with the process; the stale text left
# in the file does not stop the next mount, which writes its own.
old_pid=$DAEMON_PID
crash_daemon
grep -qx "pid $old_pid" "$LOCK" || fail "expected the dead daemon's text in the lock file"
mount_lib
grep -qx "pid $DAEMON_PID" "$LOCK" || fail "after a crash: the lock file does not name pid $DAEMON_PID"
same_bytes "$MNT/clones/Ubuntu/web1/web1-flat.vmdk" "$T/model.raw" "after the crash and a new mount"
second_daemon "$MNT2" "$DAEMON_PID" "after a crash"
unmount_lib

# In the background: the parent returns once mounted; the child that serves
# holds the lock (fuse_daemonize's fork keeps the open file description)
# and names itself in the file.
rc=0
"$VMCLONEFS" -o "log=$LOG" "$LIB" "$MNT" 2>>"$DAEMON_ERR" & launcher=$!
DAEMON_PID=$launcher   # non-empty: cleanup unmounts, should a check fail
wait "$launcher" || rc=$?
[ $rc -eq 0 ] || fail "background mount exited $rc: $(cat "$DAEMON_ERR")"
mountpoint -q "$MNT" || fail "background mount: nothing mounted"
bg_pid=$(sed -n 's/^pid \([0-9]*\)$/\1/p' "$LOCK")
{ [ -n "$bg_pid" ] && [ "$bg_pid" != "$launcher" ]; } || fail "background mount: lock file names pid '$bg_pid', the launcher was $launcher"
kill -0 "$bg_pid" 2>/dev/null || fail "background mount: pid $bg_pid in the lock file is not running"
holds_open "$bg_pid" /dev/fuse || fail "background mount: pid $bg_pid does not serve /dev/fuse"
holds_open "$bg_pid" "$LOCK" || fail "background mount: pid $bg_pid does not hold $LOCK open"
second_daemon "$MNT2" "$bg_pid" "background mount"
same_bytes "$MNT/clones/Ubuntu/web1/web1-flat.vmdk" "$T/model.raw" "background mount: clone"
fusermount3 -u "$MNT" || fail "background mount: fusermount3 -u"
for _ in $(seq 100); do kill -0 "$bg_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$bg_pid" 2>/dev/null && fail "background daemon $bg_pid still running after unmount"
DAEMON_PID=
mount_lib
unmount_lib
note "one daemon per library: refusals name the lock and its holder; crash and daemonize keep it right"
