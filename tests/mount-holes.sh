#!/bin/bash
# Holes: SEEK_DATA and SEEK_HOLE on a clone's flat disk answer from the
# layers' maps. The oracle is `qemu-img map` of the clone's stored delta
# over its chain: the data ranges we report are exactly the ranges it says
# some layer holds, for single-file and split sparse chains alike.
# cp --sparse=always, tar -S, rsync -S and borg --sparse copies of a clone
# restore identical bytes, and tar
# and borg read about as much as the disk holds, not its virtual size (the
# daemon's read count, page cache dropped). st_blocks is the store's own.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

# The data ranges of FILE by SEEK_DATA/SEEK_HOLE, one "START END" a line.
seek_map() {
    perl -e 'open(my $fh, "<", $ARGV[0]) or die "$!\n"; my $size = -s $fh; my $o = 0;
             while ($o < $size) { my $d = sysseek($fh, $o, 3); last unless defined $d;
                 my $h = sysseek($fh, $d, 4); defined $h or die "SEEK_HOLE: $!\n";
                 printf "%d %d\n", $d, $h; $o = $h; }' "$1"
}
# The same from qemu-img map of a VMDK chain, neighbours merged.
qemu_map() {
    qemu-img map -U --output=json "$1" 2>/dev/null | perl -ne '
        next unless /"start": (\d+), "length": (\d+).*"data": true/;
        if (defined $s && $1 == $e) { $e = $1 + $2 } else { print "$s $e\n" if defined $s; ($s, $e) = ($1, $1 + $2) }
        END { print "$s $e\n" if defined $s }'
}
daemon_reads() { awk '/^rchar/ { print $2 }' "/proc/$DAEMON_PID/io"; }

make_library
mount_lib
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones

i=0
for src in Ubuntu Chain "Chain@Base install" TwoDisks Split; do
    n=h$((++i))
    mkdir "$C/$src/$n" || fail "mkdir clones/$src/$n"
    f=$C/$src/$n/$n-flat.vmdk
    # Writes of its own: in a hole, over the parent's data, at the end.
    size=$(stat -c %s "$f")
    # st_blocks: the store's own space, never 0 (tar takes 0 for all holes).
    blocks=$(stat -c %b "$f")
    [ "$blocks" -gt 0 ] && [ "$blocks" = "$(stat -c %b "$STORE/$n/$n.vmdk")" ] \
        || fail "clones/$src/$n: st_blocks $blocks, the store has $(stat -c %b "$STORE/$n/$n.vmdk")"
    head -c 200000 /dev/urandom | dd of="$f" bs=200000 seek=$((30 * 1048576)) oflag=seek_bytes conv=notrunc status=none
    head -c 4096 /dev/urandom | dd of="$f" bs=4096 seek=$((size - 4096)) oflag=seek_bytes conv=notrunc status=none
    sync "$f"
    got=$(seek_map "$f")
    want=$(qemu_map "$STORE/$n/$n.vmdk")
    [ -n "$want" ] || fail "qemu-img map of $n gave nothing"
    [ "$got" = "$want" ] || fail "clones/$src: SEEK_DATA/SEEK_HOLE map differs from qemu-img map:
$(diff <(echo "$want") <(echo "$got") | head -10)"
done

f=$C/Split/h$i/h$i-flat.vmdk
# Past the end: ENXIO.
out=$(perl -e 'open(my $fh, "<", $ARGV[0]) or die; defined(sysseek($fh, $ARGV[1], 3)) ? print "ok\n" : print "$!\n"' \
      "$f" "$(stat -c %s "$f")")
[ "$out" = "No such device or address" ] || fail "SEEK_DATA at the end: $out"

# ---- sparse-aware copies restore the same bytes, and skip the holes
f=$C/Chain/h2/h2-flat.vmdk
held=$(seek_map "$f" | awk '{ n += $2 - $1 } END { print n }')
size=$(stat -c %s "$f")
[ "$held" -lt $((size / 4)) ] || fail "the Chain clone holds $held of $size bytes; the test needs holes"
cp --sparse=always "$f" "$T/cp.img" || fail "cp --sparse=always"
same_bytes "$T/cp.img" "$f" "cp --sparse=always copy"
sync
echo 3 >/proc/sys/vm/drop_caches
before=$(daemon_reads)
(cd "$C/Chain/h2" && tar -cSf "$T/h2.tar" h2-flat.vmdk) || fail "tar -cSf"
read=$(( $(daemon_reads) - before ))
mkdir -p "$T/untar"
(cd "$T/untar" && tar -xSf "$T/h2.tar") || fail "tar -xSf"
same_bytes "$T/untar/h2-flat.vmdk" "$f" "tar -S round trip"
# The store's grains are read whole for their checksums: allow twice what
# is held, and 4 MiB besides.
[ "$read" -le $((2 * held + 4 * 1048576)) ] ||
    fail "tar -S of a disk holding $held bytes made the daemon read $read bytes (virtual size $size)"
note "tar -cSf read $read bytes of a $size-byte disk holding $held"
rsync -S "$f" "$T/rsync.img" || fail "rsync -S"
same_bytes "$T/rsync.img" "$f" "rsync -S copy"
# borg reads holes as holes with its fixed chunker and --sparse.
export BORG_REPO=$T/borg BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_BASE_DIR=$T/borg-home
borg init --encryption=none >/dev/null 2>&1 || fail "borg init"
sync
echo 3 >/proc/sys/vm/drop_caches
before=$(daemon_reads)
(cd "$C/Chain/h2" && borg create --sparse --chunker-params fixed,4194304 ::h2 h2-flat.vmdk) \
    || fail "borg create --sparse"
read=$(( $(daemon_reads) - before ))
mkdir -p "$T/unborg"
(cd "$T/unborg" && borg extract --sparse ::h2) || fail "borg extract --sparse"
same_bytes "$T/unborg/h2-flat.vmdk" "$f" "borg create/extract --sparse round trip"
[ "$read" -le $((2 * held + 4 * 1048576)) ] ||
    fail "borg create --sparse of a disk holding $held bytes made the daemon read $read bytes (virtual size $size)"
note "borg create --sparse read $read bytes of a $size-byte disk holding $held"
unmount_lib
finish_soft_fails
note "SEEK_DATA/SEEK_HOLE follow qemu-img map; sparse copies are exact and skip holes"
