#!/bin/bash
# mkdir that must fail, and fail cleanly: bad names (EINVAL), taken names
# (EEXIST), unknown sources (ENOENT), the wrong place (EPERM), files made in
# a source folder. Each refusal gives the errno the shell shows and a log
# line saying why, and leaves the library exactly as it was: no store
# folder, no snapshot in the .vmsd, the .vmx unchanged; also when the
# failure comes after the snapshot was taken.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

make_library
mkdir "$LIB/Docs"                       # a library folder that is no VM
echo "not a VM" >"$LIB/Docs/readme.txt"
mount_lib
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones
before=$(tree_state "$LIB")
listing=$(ls -A "$C")
[ -z "$(ls -A "$STORE")" ] || fail "store not empty after mount"

# ---- invalid names: EINVAL, with the reason
expect_err "leading dot" "Invalid argument" mkdir "$C/Ubuntu/.web1"
expect_log "leading dot" 'mkdir clones/Ubuntu/.web1' 'invalid clone name' "starts with '.'"
expect_err "'@' in a name" "Invalid argument" mkdir "$C/Ubuntu/web@1"
expect_log "'@' in a name" 'mkdir clones/Ubuntu/web@1' 'invalid clone name' "contains '@'"
expect_err "a tab in a name" "Invalid argument" mkdir "$C/Ubuntu/"$'web\t1'
expect_log "a tab in a name" 'invalid clone name "web\t1"' 'control character'
expect_err "DEL in a name" "Invalid argument" mkdir "$C/Ubuntu/"$'web\x7f1'
expect_log "DEL in a name" 'invalid clone name' 'control character'
long201=$(printf 'w%.0s' $(seq 201))
expect_err "201-byte name" "Invalid argument" mkdir "$C/Ubuntu/$long201"
expect_log "201-byte name" 'invalid clone name' 'longer than 200 bytes'
expect_err "not UTF-8" "Invalid argument" mkdir "$C/Ubuntu/"$'caf\xe9'
expect_log "not UTF-8" 'invalid clone name' 'not valid UTF-8'
expect_err "bad name under a snapshot source" "Invalid argument" mkdir "$C/Chain@Base install/.x"
expect_log "bad name under a snapshot source" 'mkdir clones/Chain@Base install/.x' 'invalid clone name'

# ---- unknown sources: ENOENT. The kernel looks the source folder up
# before any mkdir reaches the daemon; the lookup logs why it failed.
expect_err "unknown VM" "No such file or directory" mkdir "$C/NoSuchVM/web1"
expect_log "unknown VM" 'clones/NoSuchVM is not a source' 'no VM named "NoSuchVM"'
expect_err "library folder without a .vmx" "No such file or directory" mkdir "$C/Docs/web1"
expect_log "library folder without a .vmx" 'clones/Docs is not a source' '.vmx'
expect_err "unknown snapshot" "No such file or directory" mkdir "$C/Chain@No such snap/web1"
expect_log "unknown snapshot" 'VM Chain has no snapshot named "No such snap"'
expect_err "snapshot of another VM" "No such file or directory" mkdir "$C/Ubuntu@Base install/web1"
expect_log "snapshot of another VM" 'VM Ubuntu has no snapshot named "Base install"'
for s in NoSuchVM Docs "Chain@No such snap" "Ubuntu@Base install"; do
    [ ! -e "$C/$s" ] || fail "clones/$s exists"
done

# ---- the wrong place: EPERM
expect_err "mkdir in clones/" "Operation not permitted" mkdir "$C/web1"
expect_log "mkdir in clones/" 'mkdir clones/web1' 'clones/SOURCE/'
expect_err "touch in a source folder" "Operation not permitted" touch "$C/Ubuntu/notes.txt"
expect_log "touch in a source folder" 'clones/Ubuntu' 'files cannot be made here'
# shellcheck disable=SC2016  # $1 is sh's
expect_err "redirect into a source folder" "Operation not permitted" \
    sh -c 'echo hello >"$1"' sh "$C/Chain@Configured/web1.vmx"
expect_log "redirect into a source folder" 'clones/Chain@Configured' 'files cannot be made here'
expect_err "touch in clones/" "Operation not permitted" touch "$C/notes.txt"
expect_log "touch in clones/" 'clones' 'files cannot be made here'
expect_err "symlink in a source folder" "Operation not permitted" ln -s /tmp "$C/Ubuntu/link"
expect_log "symlink in a source folder" 'clones/Ubuntu' 'only mkdir of a new clone'

# None of it left a trace: no store folder, no snapshot, no new delta, no
# change to any .vmx or .vmsd; the listing of clones/ is as it was.
same_tree "$before" "$LIB" "after refused mkdirs"
[ "$(ls -A "$C")" = "$listing" ] || fail "clones/ listing changed: $(ls -A "$C")"
for d in Ubuntu Chain; do
    [ -z "$(ls -A "$C/$d")" ] || fail "clones/$d is not empty: $(ls -A "$C/$d")"
done

# ---- taken names: EEXIST
mkdir "$C/Ubuntu/web1" || fail "mkdir clones/Ubuntu/web1"
[ "$(grep -c '^snapshot[0-9]*\.displayName = "vmclonefs: web1"$' "$LIB/Ubuntu/Ubuntu.vmsd")" = 1 ] ||
    fail "the first clone did not take exactly one snapshot"
before=$(tree_state "$LIB")
listing=$(ls -A "$C")
# The kernel finds the folder and answers itself: no request, no log.
expect_err "same name, same source" "File exists" mkdir "$C/Ubuntu/web1"
expect_err "clone name under another VM" "File exists" mkdir "$C/Chain/web1"
expect_log "clone name under another VM" 'mkdir clones/Chain/web1' 'a clone has that name'
expect_err "clone name under a snapshot" "File exists" mkdir "$C/Chain@Base install/web1"
expect_log "clone name under a snapshot" 'mkdir clones/Chain@Base install/web1' 'a clone has that name'
expect_err "name of a library VM" "File exists" mkdir "$C/Ubuntu/Chain"
expect_log "name of a library VM" 'mkdir clones/Ubuntu/Chain' 'a library folder has that name'
expect_err "name of the VM itself" "File exists" mkdir "$C/Chain/Ubuntu"
expect_log "name of the VM itself" 'mkdir clones/Chain/Ubuntu' 'a library folder has that name'
expect_err "name of a non-VM library folder" "File exists" mkdir "$C/Ubuntu/Docs"
expect_log "name of a non-VM library folder" 'mkdir clones/Ubuntu/Docs' 'a library folder has that name'
expect_err "the name clones" "File exists" mkdir "$C/Ubuntu/clones"
expect_log "the name clones" 'mkdir clones/Ubuntu/clones' 'the clones folder'
same_tree "$before" "$LIB" "after refused mkdirs of taken names"
[ "$(ls -A "$C")" = "$listing" ] || fail "clones/ listing changed: $(ls -A "$C")"

# ---- the longest name that is allowed works, and the clone reads right
long200=${long201:1}
mkdir "$C/Ubuntu/$long200" || fail "mkdir of a 200-byte name"
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/ubuntu.raw"
same_bytes "$C/Ubuntu/$long200/$long200-flat.vmdk" "$T/ubuntu.raw" "clone with a 200-byte name"
rmdir "$C/Ubuntu/$long200" || fail "rmdir of the 200-byte clone"

# ---- a name cannot forge log lines: the reason is one line
log_mark
forged=$'evil\nFORGED vmclonefs[1] info: made linked clone evil of Ubuntu'
if mkdir "$C/Ubuntu/$forged" 2>"$T/err"; then fail "mkdir of a name with a newline succeeded"; fi
grep -q "Invalid argument" "$T/err" || fail "newline in a name: $(cat "$T/err")"
expect_log "newline in a name" 'invalid clone name "evil\nFORGED' 'control character'
if tail -n +"$((LOG_MARK + 1))" "$LOG" | grep -qa '^FORGED'; then
    soft_fail "a clone name wrote a line of its own into the log: $(grep -an '^FORGED' "$LOG")"
fi

# ---- a failure after the snapshot was taken leaves no trace either: the
# store folder is read-only, so the clone cannot be written there.
before=$(tree_state "$LIB/TwoDisks")
mount --bind "$STORE" "$STORE"
trap 'rc=$?; umount "$STORE" 2>/dev/null; (exit $rc); cleanup' EXIT
rc=0 out=
if mount -o remount,bind,ro "$STORE"; then
    log_mark
    out=$(mkdir "$C/TwoDisks/late" 2>&1) || rc=$?
else
    rc=-1
fi
umount "$STORE"
trap cleanup EXIT
[ "$rc" != -1 ] || fail "could not make the store read-only"
[ "$rc" != 0 ] || fail "mkdir into a read-only store succeeded"
[[ $out == *"Read-only file system"* ]] || fail "mkdir into a read-only store: $out"
expect_log "read-only store" 'mkdir clones/TwoDisks/late' 'Read-only file system'
[ ! -e "$STORE/late" ] || fail "store folder left behind"
[ -z "$(find "$STORE" -maxdepth 1 -name '.*-*')" ] || fail "temporary folder left: $(ls -A "$STORE")"
now=$(tree_state "$LIB/TwoDisks")
[ "$now" = "$before" ] || soft_fail "a mkdir that failed after the snapshot left a trace in TwoDisks/:
$(diff <(echo "$before") <(echo "$now") | grep '^[<>]' | grep -v sha256 | head -8)"
[ -z "$(find "$C" -maxdepth 1 -name 'TwoDisks@*')" ] ||
    soft_fail "a mkdir that failed left a snapshot source: $(find "$C" -maxdepth 1 -name 'TwoDisks@*' -printf '%f ')"

# ---- passed-through names that change behind the mount's back give the
# real errno: a folder that went cannot be listed (not an empty folder),
# a link that went cannot be read (not EIO)
mkdir "$LIB/Docs/gone"
ln -s readme.txt "$LIB/Docs/link"
ls "$MNT/Docs/gone" >/dev/null && [ "$(readlink "$MNT/Docs/link")" = readme.txt ] ||
    fail "a folder and a link of the library through the mount"
rmdir "$LIB/Docs/gone"
rm "$LIB/Docs/link"
log_mark
expect_err "listing a folder that went" "No such file or directory" ls "$MNT/Docs/gone"
out=$(perl -e 'defined(readlink($ARGV[0])) or print "$!\n"' "$MNT/Docs/link")
[ "$out" = "No such file or directory" ] || fail "readlink of a link that went: $out"
echo "not a link" >"$LIB/Docs/link"
out=$(perl -e 'defined(readlink($ARGV[0])) or print "$!\n"' "$MNT/Docs/link")
[ "$out" = "Invalid argument" ] || fail "readlink of a file that is no link: $out"
rm "$LIB/Docs/link"

unmount_lib
finish_soft_fails
note "refused mkdirs: errno, a reason in the log, and no trace"
