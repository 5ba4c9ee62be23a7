#!/bin/bash
# Stored data that went bad behind the mount's back is never served as
# data: the reader gets EIO for what cannot be trusted, the log names the
# file and where, every other byte still reads right, and the daemon goes
# on serving the other clones.
#
#   a stored grain's bytes changed, a grain's checksum changed, a grain
#   table entry pointing at another grain's data: EIO for that grain and
#   only that grain, with a log line naming the store and the disk offset
#   (a partial write into a bad grain does not make it readable; a
#   whole-grain write may replace it, and then reads back right);
#   grain table entries pointing at the header or past the end, a store cut
#   short: EIO for those grains (or the whole clone), never other bytes;
#   the parent snapshot disk cut short: EIO where its data is gone;
#   the parent's parent changed (CID): clones of the snapshot are refused,
#   new ones too, and the refusals leave no trace;
#   the parent's CID changed in place, the parent replaced by another disk
#   (same size, smaller), the parent missing: the clone is refused (EIO or
#   ENOENT, a log line naming the parent), never the new parent's bytes,
#   while another clone reads and writes right and a new clone of another
#   VM reads right; the parent put back, the clone reads right again.
#
# Oracles: a model of each clone's disk made with write_both over qemu-img's
# raw image of its parent; qemu-img map for where a grain is stored and to
# confirm each corruption hit what it meant to; qemu-img info for CIDs.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

G=65536
make_library --size 16
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
cp "$T/parent.raw" "$T/model.raw"
raw_of "$LIB/Chain/Chain-000001.vmdk" "$T/db1.raw"
raw_of "$LIB/TwoDisks/TwoDisks.vmdk" "$T/two0.raw"
SIZE=$(stat -c %s "$T/parent.raw")
S=$LIB/.vmclonefs/clones/web1
STORE=$S/web1.vmdk
PARENT=$LIB/Ubuntu/Ubuntu.vmdk
FLAT=$MNT/clones/Ubuntu/web1/web1-flat.vmdk
DB1=$MNT/clones/Chain@Configured/db1/db1-flat.vmdk

# ---- helpers

# Offset in the file (an image with no parent, or a delta's own data) of
# guest grain GRAIN, by qemu-img map; fails if the file does not hold it.
stored_at() { # FILE GRAIN
    qemu-img map --output=json "$1" | perl -MJSON::PP -e '
        my ($g, $G) = @ARGV;
        local $/; my $map = decode_json(<STDIN>);
        for my $e (@$map) {
            next unless $e->{depth} == 0 && $e->{data} && defined $e->{offset};
            my $v = $g * $G;
            if ($v >= $e->{start} && $v < $e->{start} + $e->{length}) {
                print $e->{offset} + $v - $e->{start}, "\n"; exit 0;
            }
        }
        exit 1;' "$2" "$G" || fail "qemu-img map: grain $2 is not stored in $1"
}

# The guest grains whose data qemu-img map puts (at DEPTH: 0 the file
# itself, 1 its parent) at or past byte CUT of that file, even in part.
lost_grains() { # FILE CUT DEPTH
    qemu-img map --output=json "$1" | perl -MJSON::PP -e '
        my ($cut, $depth, $G) = @ARGV;
        local $/; my @lost;
        for my $e (@{decode_json(<STDIN>)}) {
            next unless $e->{depth} == $depth && $e->{data} && defined $e->{offset};
            for (my $v = $e->{start}; $v < $e->{start} + $e->{length}; $v += $G) {
                push @lost, $v / $G if $e->{offset} + $v - $e->{start} + $G > $cut;
            }
        }
        print join(" ", @lost);' "$2" "$3" "$G"
}

cid_of() { qemu-img info "$1" | sed -n 's/^ *cid: //p'; }

# Changes the CID in FILE's embedded descriptor in place (same length),
# as a tool that rewrote the disk behind our back would.
flip_cid() { # FILE
    perl -e '
        use strict; use warnings;
        my $file = shift;
        open(my $fh, "+<:raw", $file) or die "$file: $!\n";
        sysread($fh, my $h, 512) == 512 or die "$file: short header\n";
        substr($h, 0, 4) eq "KDMV" or die "$file: not a hosted sparse extent\n";
        my ($doff, $dsize) = unpack("Q< Q<", substr($h, 28, 16));
        sysseek($fh, $doff * 512, 0) or die;
        sysread($fh, my $d, $dsize * 512) == $dsize * 512 or die "$file: short descriptor\n";
        $d =~ s/^CID=([0-9a-f]{8})$/sprintf("CID=%08x", hex($1) ^ 0x10)/me or die "$file: no CID line\n";
        sysseek($fh, $doff * 512, 0) or die;
        syswrite($fh, $d) == length($d) or die "$file: $!\n";
        close($fh) or die "$file: $!\n";' "$1" || fail "editing the CID of $1"
}

# Grain table entries of a hosted sparse extent: the sector where guest
# grain GRAIN is stored (0: not stored), read from the grain directory;
# set_gte changes it in the grain tables of both directories.
gte() { # FILE GRAIN [NEW-SECTOR]
    perl -e '
        use strict; use warnings;
        my ($file, $g, $new) = @ARGV;
        open(my $fh, "+<:raw", $file) or die "$file: $!\n";
        sysread($fh, my $h, 512) == 512 or die "$file: short header\n";
        substr($h, 0, 4) eq "KDMV" or die "$file: not a hosted sparse extent\n";
        my $ngte = unpack("V", substr($h, 44, 4));
        my ($rgd, $gd) = unpack("Q< Q<", substr($h, 48, 16));
        for my $dir (grep { $_ } $gd, $rgd) {
            sysseek($fh, $dir * 512 + 4 * int($g / $ngte), 0) or die;
            sysread($fh, my $e, 4) == 4 or die "$file: short grain directory\n";
            my $gt = unpack("V", $e) or die "$file: no grain table for grain $g\n";
            my $at = $gt * 512 + 4 * ($g % $ngte);
            if (defined $new) {
                sysseek($fh, $at, 0) or die;
                syswrite($fh, pack("V", $new)) == 4 or die "$file: $!\n";
            } else {
                sysseek($fh, $at, 0) or die;
                sysread($fh, $e, 4) == 4 or die "$file: short grain table\n";
                print unpack("V", $e), "\n";
                last;
            }
        }
        close($fh) or die "$file: $!\n";' "$@"
}
gte_of() { gte "$1" "$2" || fail "reading the grain table of $1"; }
set_gte() {
    [[ $3 =~ ^[0-9]+$ ]] || fail "set_gte: no sector given for grain $2"
    gte "$1" "$2" "$3" || fail "editing the grain table of $1"
}

# Overwrites LEN bytes at OFFSET of FILE (not through the mount).
scribble() { # FILE OFFSET LEN
    head -c "$3" /dev/urandom | tr '\000' '\001' >"$T/junk"
    dd if="$T/junk" of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# Reads DISK grain by grain and compares each grain with MODEL. Prints
# "GRAIN eio" for a grain that failed with EIO, "GRAIN wrong" for one that
# read other bytes than the model's, "GRAIN err ERRNO" for other failures,
# "open ERRNO" when the disk does not open.
scan() { # DISK MODEL
    perl -e '
        use strict; use warnings; use Errno qw(EIO);
        my ($disk, $model, $G) = @ARGV;
        open(my $m, "<:raw", $model) or die "$model: $!\n";
        my $fd;
        unless (open($fd, "<:raw", $disk)) { print "open ", $!+0, "\n"; exit 0; }
        my $n = (-s $model) / $G;
        for my $g (0 .. $n - 1) {
            sysseek($m, $g * $G, 0); sysread($m, my $want, $G) == $G or die "short model\n";
            sysseek($fd, $g * $G, 0) or die "seek: $!\n";
            my ($got, $err) = ("", 0);
            while (length($got) < $G) {
                my $r = sysread($fd, my $buf, $G - length($got));
                if (!defined $r) { $err = $! + 0; last; }
                last if $r == 0;
                $got .= $buf;
            }
            if ($err == EIO) { print "$g eio\n"; }
            elsif ($err) { print "$g err $err\n"; }
            elsif ($got ne $want) { print "$g wrong\n"; }
        }' "$1" "$2" "$G"
}

# check_scan WHAT DISK MODEL MUST_EIO MAY_EIO: no grain of DISK reads other
# bytes than MODEL's; the grains in MUST_EIO (space-separated) fail with EIO;
# other grains read right, or fail with EIO too when MAY_EIO is "any".
check_scan() {
    local what=$1 out g bad=
    out=$(scan "$2" "$3")
    if grep -q '^open' <<<"$out"; then
        fail "$what: $2 does not open (errno $(cut -d' ' -f2 <<<"$out"))"
    fi
    if grep -q 'wrong' <<<"$out"; then
        fail "$what: WRONG BYTES served in grain(s) $(grep wrong <<<"$out" | cut -d' ' -f1 | tr '\n' ' ')"
    fi
    grep -q ' err ' <<<"$out" && fail "$what: reads failed with other errors than EIO: $(grep ' err ' <<<"$out" | head -5 | tr '\n' ' ')"
    for g in $4; do
        grep -qx "$g eio" <<<"$out" || soft_fail "$what: grain $g read without an error; expected EIO"
    done
    if [ "$5" != any ]; then
        while read -r g _; do
            [ -n "$g" ] || continue
            [[ " $4 " == *" $g "* ]] || bad="$bad $g"
        done <<<"$out"
        [ -z "$bad" ] || soft_fail "$what: grain(s)$bad fail with EIO but hold good data"
    fi
}

# A read of DISK that must fail: EIO or ENOENT, from open or from read.
refused_read() { # WHAT DISK
    local out
    if out=$(dd if="$2" of="$T/refused" bs=64K count=4 status=none 2>&1); then
        if cmp -s -n $((4 * G)) "$T/refused" "$T/model.raw"; then
            fail "$1: the broken clone was served (its old bytes, but with no error)"
        fi
        fail "$1: the broken clone was served, WRONG BYTES (not the clone's own)"
    fi
    [[ $out == *"Input/output error"* || $out == *"No such file or directory"* ]] ||
        fail "$1: expected EIO or ENOENT, got: $out"
}

restore_store() {
    cp "$T/store.vmdk" "$STORE"
    cp "$T/store.xxh" "$STORE.xxh"
}

# ---- a linked clone of Ubuntu with grains of its own; another of a snapshot
mount_lib
mkdir "$MNT/clones/Ubuntu/web1" || fail "mkdir clones/Ubuntu/web1"
mkdir "$MNT/clones/Chain@Configured/db1" || fail "mkdir clones/Chain@Configured/db1"
write_both $((10 * G + 100)) 200000 "$FLAT" "$T/model.raw"   # grains 10..13, unaligned
write_both $((40 * G)) "$G" "$FLAT" "$T/model.raw"            # one whole grain
write_both $((60 * G + 5000)) 3000 "$FLAT" "$T/model.raw"     # a small write
write_both $((100 * G)) $((3 * G)) "$FLAT" "$T/model.raw"     # 100..102, over the parent's data
write_both $((SIZE - 700)) 700 "$FLAT" "$T/model.raw"         # the last grain
write_both $((3 * G + 9)) 9999 "$DB1" "$T/db1.raw"
sync "$FLAT" "$DB1"
same_bytes "$FLAT" "$T/model.raw" "web1 after writes"
unmount_lib

# The model is right: qemu-img reads the same from the store.
qemu-img check -q "$STORE" || fail "qemu-img check of the store"
raw_of "$STORE" "$T/store.raw"
same_bytes "$T/store.raw" "$T/model.raw" "qemu-img's reading of the store"
cp "$STORE" "$T/store.vmdk"
cp "$STORE.xxh" "$T/store.xxh"
cp "$T/model.raw" "$T/model.saved"
cp "$PARENT" "$T/parent.vmdk"
parent_cid=$(cid_of "$PARENT")
[ "$(qemu-img info "$STORE" | sed -n 's/^ *parent cid: //p')" = "$parent_cid" ] ||
    fail "the store's parent CID is not its parent's ($parent_cid)"

mount_lib
check_scan "remount, nothing changed" "$FLAT" "$T/model.raw" "" none
unmount_lib

# ---- 1. a stored grain's bytes changed ------------------------------------
BAD=11
off=$(stored_at "$STORE" $BAD)
scribble "$STORE" $((off + 1000)) 4
# qemu-img now reads other bytes there, and only there: the change hit
# grain BAD's data.
raw_of "$STORE" "$T/store.raw"
cmp -s -n $((BAD * G)) "$T/store.raw" "$T/model.raw" || fail "the scribble hit before grain $BAD"
cmp -s -i $(((BAD + 1) * G)) "$T/store.raw" "$T/model.raw" || fail "the scribble hit after grain $BAD"
cmp -s -n "$G" -i $((BAD * G)) "$T/store.raw" "$T/model.raw" && fail "the scribble did not change grain $BAD"

log_mark
mount_lib
expect_err "read of a grain with changed bytes" "Input/output error" \
    dd if="$FLAT" of=/dev/null bs=64K skip=$BAD count=1 status=none
expect_log "bad grain" "$STORE" "$((BAD * G))"
# Before and after it, in big reads, as the model says.
dd if="$FLAT" of="$T/before" bs=64K count=$BAD status=none || fail "read before the bad grain"
cmp -s "$T/before" <(head -c $((BAD * G)) "$T/model.raw") || fail "the bytes before the bad grain are wrong"
dd if="$FLAT" of="$T/after" bs=64K skip=$((BAD + 1)) status=none || fail "read after the bad grain"
cmp -s "$T/after" <(tail -c +$(((BAD + 1) * G + 1)) "$T/model.raw") || fail "the bytes after the bad grain are wrong"
# An unaligned read across it fails; what it returned before failing is right.
rc=0
dd if="$FLAT" of="$T/span" bs=100000 skip=$((BAD * G - 5000)) iflag=skip_bytes,fullblock count=1 status=none 2>"$T/span.err" || rc=$?
[ $rc -ne 0 ] || fail "a read across the bad grain succeeded"
grep -q "Input/output error" "$T/span.err" || fail "a read across the bad grain: $(cat "$T/span.err")"
cmp -s -n "$(stat -c %s "$T/span")" -i 0:$((BAD * G - 5000)) "$T/span" "$T/model.raw" ||
    fail "a read across the bad grain returned wrong bytes before its error"
check_scan "a grain with changed bytes" "$FLAT" "$T/model.raw" "$BAD" none
# A small write into the bad grain does not launder it: the grain still
# fails (whatever the write said), never reads as a mix.
dd if=/dev/zero of="$FLAT" bs=512 seek=$((BAD * 128 + 50)) count=1 conv=notrunc status=none 2>/dev/null || true
expect_err "read of the bad grain after a small write into it" "Input/output error" \
    dd if="$FLAT" of=/dev/null bs=64K skip=$BAD count=1 status=none
# A write of the whole grain may replace it (then it reads what was
# written) or fail with EIO (then the grain stays bad).
head -c "$G" /dev/urandom >"$T/chunk"
if dd if="$T/chunk" of="$FLAT" bs=64K seek=$BAD conv=notrunc status=none 2>"$T/werr" && sync "$FLAT"; then
    dd if="$T/chunk" of="$T/model.raw" bs=64K seek=$BAD conv=notrunc status=none
    check_scan "after a whole-grain write over the bad grain" "$FLAT" "$T/model.raw" "" none
    BAD_FIXED=1
else
    grep -q "Input/output error" "$T/werr" || fail "whole-grain write over a bad grain: $(cat "$T/werr")"
    note "a whole-grain write over a bad grain is refused"
    BAD_FIXED=0
fi
unmount_lib
mount_lib
if [ $BAD_FIXED = 1 ]; then
    check_scan "remount after the whole-grain write" "$FLAT" "$T/model.raw" "" none
else
    check_scan "remount after a refused whole-grain write" "$FLAT" "$T/model.raw" "$BAD" none
fi
unmount_lib
qemu-img check -q "$STORE" || fail "qemu-img check after writes over a bad grain"
# Back to the state before this round.
cp "$T/model.saved" "$T/model.raw"
restore_store

# ---- 2. a grain's checksum changed ------------------------------------------
SUMBAD=40
cmp -s -n 8 -i $((4096 + 8 * SUMBAD)):0 "$STORE.xxh" /dev/zero && fail "no checksum stored for grain $SUMBAD"
printf '\x5a\xa5' | dd of="$STORE.xxh" bs=1 seek=$((4096 + 8 * SUMBAD + 2)) conv=notrunc status=none
log_mark
mount_lib
check_scan "a grain whose checksum changed" "$FLAT" "$T/model.raw" "$SUMBAD" none
expect_log "bad checksum" "$STORE" "$((SUMBAD * G))"
unmount_lib
restore_store

# ---- 3. a grain table entry pointing at another grain's data -------------
# Grain 60's entry is made to point at grain 40's data: qemu-img then reads
# grain 40's bytes there.
sector=$(gte_of "$STORE" 40)
[ "$sector" -gt 0 ] || fail "grain 40 is not stored"
set_gte "$STORE" 60 "$sector"
raw_of "$STORE" "$T/store.raw"
cmp -s -n "$G" -i $((60 * G)):$((40 * G)) "$T/store.raw" "$T/model.raw" ||
    fail "the grain table edit did not take (qemu-img does not read grain 40's bytes at grain 60)"
log_mark
mount_lib
check_scan "a grain table entry pointing at another grain" "$FLAT" "$T/model.raw" "60" none
expect_log "misdirected grain" "$STORE" "$((60 * G))"
unmount_lib
restore_store

# ---- 3b. grain table entries pointing at the header or past the end ------
set_gte "$STORE" 12 1
set_gte "$STORE" 13 $((0x00ffff00))
log_mark
mount_lib
ls "$MNT/clones/Ubuntu" >/dev/null || fail "ls clones/Ubuntu with a bad grain table"
out=$(scan "$FLAT" "$T/model.raw")
if grep -q '^open' <<<"$out"; then
    note "grain table entries outside the grain area: the clone is refused as a whole"
else
    check_scan "grain table entries outside the grain area" "$FLAT" "$T/model.raw" "12 13" any
fi
expect_log "grain table entries outside the grain area" "$STORE"
check_scan "another clone beside a bad grain table" "$DB1" "$T/db1.raw" "" none
unmount_lib
restore_store

# ---- 4. the store cut short: the last stored grains are gone --------------
# Grains whose stored data is no longer all there.
cut=$(($(stat -c %s "$STORE") - G - 1000))
must=$(lost_grains "$STORE" "$cut" 0)
[ -n "$must" ] || fail "cutting the store removes no grain"
note "store cut at byte $cut: grains $must lost"
truncate -s "$cut" "$STORE"
log_mark
mount_lib
ls "$MNT/clones/Ubuntu" >/dev/null || fail "ls clones/Ubuntu with a cut store"
out=$(scan "$FLAT" "$T/model.raw")
if grep -q '^open' <<<"$out"; then
    note "a cut store: the clone is refused as a whole"
else
    check_scan "a store cut short" "$FLAT" "$T/model.raw" "$must" any
fi
expect_log "cut store" "$STORE"
check_scan "another clone beside a cut store" "$DB1" "$T/db1.raw" "" none
unmount_lib
restore_store

# ---- 5. the parent cut short ------------------------------------------------
pcut=$(($(stat -c %s "$PARENT") / 2 + 12345))
# Grains the clone takes from the parent (not its own: qemu-img map of the
# store says depth 1) whose data the cut removes.
must=$(lost_grains "$STORE" "$pcut" 1)
[ -n "$must" ] || fail "cutting the parent removes no grain the clone reads"
note "parent cut at byte $pcut: grains $must lost"
truncate -s "$pcut" "$PARENT"
log_mark
mount_lib
out=$(scan "$FLAT" "$T/model.raw")
if grep -q '^open' <<<"$out"; then
    note "a cut parent: the clone is refused as a whole"
else
    check_scan "a parent cut short" "$FLAT" "$T/model.raw" "$must" any
fi
expect_log "cut parent" "$PARENT"
check_scan "another clone beside a cut parent" "$DB1" "$T/db1.raw" "" none
unmount_lib
cp "$T/parent.vmdk" "$PARENT"

# ---- 6. a snapshot's parent changed: its chain is broken ------------------
cp "$LIB/Chain/Chain.vmdk" "$T/chain.vmdk"
chain_before=$(tree_state "$LIB/Chain")
flip_cid "$LIB/Chain/Chain.vmdk"
[ "$(cid_of "$LIB/Chain/Chain.vmdk")" != "$(cid_of "$T/chain.vmdk")" ] || fail "Chain.vmdk's CID did not change"
log_mark
mount_lib
ls "$MNT/clones" "$MNT/clones/Chain@Configured" >/dev/null || fail "ls of clones/ with a broken chain"
refused_read "parent's parent changed" "$DB1"
expect_log "parent's parent changed" "db1" "Chain/Chain.vmdk"
check_scan "parent's parent changed: another clone" "$FLAT" "$T/model.raw" "" none
# New clones of the broken chain are refused too, and leave no trace.
chain_changed=$(tree_state "$LIB/Chain")
expect_err "mkdir of a clone of a broken snapshot chain" "Input/output error" mkdir "$MNT/clones/Chain@Configured/n0"
expect_log "mkdir of a clone of a broken snapshot chain" "Chain/Chain.vmdk"
expect_err "mkdir of a clone of a broken current state" "Input/output error" mkdir "$MNT/clones/Chain/n0"
expect_log "mkdir of a clone of a broken current state" "Chain/Chain.vmdk"
same_tree "$chain_changed" "$LIB/Chain" "refused clones of a broken chain"
[ ! -e "$LIB/.vmclonefs/clones/n0" ] || fail "a refused clone left its store"
unmount_lib
cp "$T/chain.vmdk" "$LIB/Chain/Chain.vmdk"
same_tree "$chain_before" "$LIB/Chain" "Chain/ with Chain.vmdk put back"

# parent_refused WHAT NAME: web1 is refused with a log line naming its
# parent; the mount, clones/ and the other clone work, also for writing; a
# new clone NAME of another VM reads right.
parent_refused() {
    local what=$1
    ls "$MNT" "$MNT/clones" "$MNT/clones/Ubuntu" >/dev/null || fail "$what: ls of the mount"
    refused_read "$what" "$FLAT"
    expect_log "$what" "web1" "Ubuntu/Ubuntu.vmdk"
    check_scan "$what: another clone" "$DB1" "$T/db1.raw" "" none
    write_both $((7 * G + 3)) 5000 "$DB1" "$T/db1.raw"
    check_scan "$what: another clone after a write" "$DB1" "$T/db1.raw" "" none
    mkdir "$MNT/clones/TwoDisks/$2" || fail "$what: mkdir of a clone of another VM"
    same_bytes "$MNT/clones/TwoDisks/$2/$2-flat.vmdk" "$T/two0.raw" "$what: a new clone of another VM"
    rmdir "$MNT/clones/TwoDisks/$2" || fail "$what: rmdir of the new clone"
}

# ---- 7. the parent's CID changed in place ----------------------------------
flip_cid "$PARENT"
[ "$(cid_of "$PARENT")" != "$parent_cid" ] || fail "the parent's CID did not change"
log_mark
mount_lib
parent_refused "parent's CID changed" n1
unmount_lib

# ---- 8. the parent replaced by other disks --------------------------------
cp "$LIB/TwoDisks/TwoDisks.vmdk" "$PARENT"           # the same size
log_mark
mount_lib
parent_refused "parent replaced by a disk of the same size" n2
unmount_lib
cp "$LIB/TwoDisks/TwoDisks_1.vmdk" "$PARENT"         # a smaller one
log_mark
mount_lib
parent_refused "parent replaced by a smaller disk" n3
unmount_lib

# ---- 9. the parent missing --------------------------------------------------
rm "$PARENT"
log_mark
mount_lib
parent_refused "parent missing" n4
unmount_lib

# ---- 10. the parent back: the clone reads right again -----------------------
cp "$T/parent.vmdk" "$PARENT"
mount_lib
check_scan "parent back" "$FLAT" "$T/model.raw" "" none
same_bytes "$FLAT" "$T/model.raw" "web1 with its parent back"
check_scan "parent back: the other clone" "$DB1" "$T/db1.raw" "" none
unmount_lib
raw_of "$STORE" "$T/store.raw"
same_bytes "$T/store.raw" "$T/model.raw" "qemu-img's reading of the store at the end"

finish_soft_fails
note "bad grains, checksums, grain tables, cut files, changed and missing parents: EIO and a log line, never wrong bytes"
