#!/bin/bash
# Ordinary tools on the mount, the ones users and backup jobs run, and the
# bytes they see or leave, each against an oracle that does not go through
# vmclonefs:
#
#   fio      five jobs at once on one clone's flat disk, at abutting offsets
#            that share 64 KiB grains (psync and libaio, buffered and
#            O_DIRECT, 4 KiB to 1 MiB blocks and a mix), writing with
#            crc32c/md5 verify headers and reading them back; a second round
#            with other block sizes overwrites the first, and fio's check of
#            the second round first fails on the first round's data (so the
#            check can fail). Afterwards: outside the jobs' areas the disk is
#            the parent's, qemu-img's reading of the stored delta after
#            unmount is the disk as the mount showed it, and after a remount
#            fio finds every block of the second round.
#   qemu-img info, convert and compare through the generated monolithicFlat
#            descriptor, and qemu-io writing through it, against a model
#            disk changed the same way and the parent's raw image.
#   cp --sparse=always, tar -S (archive a clone folder, extract elsewhere),
#            rsync when it is installed (copy out, and write back --inplace).
#   sha256sum (buffered and O_DIRECT) of one clone while another process
#            writes into a second clone of the same parent.
#   the guest file system: the Ubuntu disk's MBR partition and ext4 on loop
#            devices: read-only it holds what the parent's raw copy holds;
#            written through a read/write loop device it ends up as a copy of
#            the parent's raw image changed the same way, e2fsck is happy,
#            and so is qemu-img's reading of the store after unmount, and a
#            remount; the parent's image never changes.
#
# Needs loop devices (losetup -f), fio with libaio, qemu-img, qemu-io,
# e2fsprogs, partx; rsync is optional.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

for tool in fio qemu-img qemu-io losetup partx e2fsck tar sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is needed (bash scripts/install-deps.sh)"
done
free_loop=$(losetup -f 2>&1) ||
    fail "this test needs loop devices and 'losetup -f' found none: $free_loop (modprobe loop; in a container, give it /dev/loop-control and /dev/loop*)"

K=1024
M=$((1024 * 1024))

# ---- loop devices, file systems mounted inside the test and a background
# writer: gone whatever happens, before lib's cleanup unmounts the library.
LOOPS=()
INNER=()
BG_PID=
tools_cleanup() {
    local i
    if [ -n "$BG_PID" ]; then
        kill "$BG_PID" 2>/dev/null
        wait "$BG_PID" 2>/dev/null
    fi
    for ((i = ${#INNER[@]} - 1; i >= 0; i--)); do
        umount "${INNER[i]}" 2>/dev/null || umount -l "${INNER[i]}" 2>/dev/null
    done
    for i in "${LOOPS[@]}"; do
        losetup -d "$i" 2>/dev/null
    done
}
# lib's cleanup takes the test's status from $?: hand it on.
trap 'rc=$?; set +e; tools_cleanup; (exit $rc); cleanup' EXIT

same_soft() { cmp -s "$1" "$2" || soft_fail "$3: $1 and $2 differ ($(cmp "$1" "$2" 2>&1 | head -1))"; }

# attach FILE [losetup options]: a loop device on FILE, its partition table
# read. Sets DEV and PART (partition 1). Without udev the kernel's scan at
# attach time may show nothing: ask again with partx, and if /dev gets no
# node, make one in $T from sysfs.
attach() {
    local file=$1 i sys
    shift
    DEV=$(losetup -f --show -P "$@" "$file" 2>&1) || fail "losetup -f --show -P $* $file: $DEV"
    LOOPS+=("$DEV")
    sys=/sys/class/block/${DEV#/dev/}p1
    for i in $(seq 50); do
        if [ -b "${DEV}p1" ]; then
            PART=${DEV}p1
            return 0
        fi
        if [ -e "$sys/dev" ] && [ "$i" -gt 10 ]; then
            PART=$T/${DEV#/dev/}p1
            rm -f "$PART"
            mknod "$PART" b "$(cut -d: -f1 "$sys/dev")" "$(cut -d: -f2 "$sys/dev")" || fail "mknod $PART"
            return 0
        fi
        [ "$i" = 3 ] && { partx -a "$DEV" 2>/dev/null || true; }
        sleep 0.05
    done
    fail "no partition 1 on $DEV (loop on $file): $(partx -s "$DEV" 2>&1)"
}

# detach DEV: detached, and gone before we go on (a loop device holds its
# file open, and the library cannot be unmounted under it).
detach() {
    local dev=$1 i l keep=()
    losetup -d "$dev" || fail "losetup -d $dev"
    for i in $(seq 100); do
        if ! losetup "$dev" >/dev/null 2>&1; then
            for l in "${LOOPS[@]}"; do [ "$l" = "$dev" ] || keep+=("$l"); done
            LOOPS=("${keep[@]}")
            return 0
        fi
        sleep 0.05
    done
    fail "$dev is still attached: $(losetup "$dev")"
}

# inner_mount DEVICE DIR OPTIONS / inner_umount DIR
inner_mount() {
    mkdir -p "$2"
    mount -t ext4 -o "$3" "$1" "$2" || fail "mount -t ext4 -o $3 $1 $2 (the guest file system): $(dmesg 2>/dev/null | tail -3)"
    INNER+=("$2")
}
inner_umount() {
    local i keep=()
    umount "$1" || fail "umount $1"
    for i in "${INNER[@]}"; do [ "$i" = "$1" ] || keep+=("$i"); done
    INNER=("${keep[@]}")
}

# guest_tree IMAGE: TREE = tree_state of the ext4 in IMAGE's partition 1,
# mounted read-only.
guest_tree() {
    attach "$1" --read-only
    inner_mount "$PART" "$T/gview" ro,noload
    TREE=$(tree_state "$T/gview")
    inner_umount "$T/gview"
    detach "$DEV"
}

# The changes made in the guest file system, to the clone and to its model.
guest_changes() {
    cp "$T/new.bin" "$1/home/user/new.bin"
    printf 'tools-clone\n' >"$1/etc/hostname"
    rm "$1/home/user/notes.txt"
    mkdir -p "$1/srv/vmclonefs"
    printf 'written through a loop device\n' >"$1/srv/vmclonefs/hello.txt"
}

# fio_jobs FILE ROUND: five jobs that run at once, each on its own area;
# neighbouring areas share a grain (areas start 20 KiB past a MiB), and the
# first two start and end on grains with parent data (ext4 metadata, data).
# Round 2 uses other block sizes and md5, so that the first round's blocks
# fail its checks.
FIO_FROM=$((M + 100 * K))
FIO_TO=$((33 * M + 20 * K))
fio_jobs() {
    local f=${1//:/\\:} b1 b2 b3 b4 b5 v
    if [ "$2" = 1 ]; then
        b1=bs=4k b2=bs=64k b3=bs=1m b4=bssplit=4k/40:16k/30:64k/30 b5=bs=16k v=crc32c
    else
        b1=bs=8k b2=bs=128k b3=bs=512k b4=bssplit=8k/50:32k/50 b5=bs=4k v=md5
    fi
    cat <<EOF
[global]
filename=$f
rw=randwrite
verify=$v
do_verify=1
verify_fatal=1
verify_state_save=0

[psync-buffered]
ioengine=psync
$b1
offset=$FIO_FROM
size=$((5 * M + 20 * K - FIO_FROM))

[psync-direct]
ioengine=psync
direct=$DIRECT
$b2
offset=$((5 * M + 20 * K))
size=$((4 * M))

[libaio-direct]
ioengine=libaio
direct=$DIRECT
iodepth=4
$b3
offset=$((9 * M + 20 * K))
size=$((12 * M))

[libaio-direct-mixed]
ioengine=libaio
direct=$DIRECT
iodepth=16
$b4
offset=$((21 * M + 20 * K))
size=$((8 * M))

[libaio-buffered]
ioengine=libaio
iodepth=4
$b5
offset=$((29 * M + 20 * K))
size=$((FIO_TO - 29 * M - 20 * K))
EOF
}
# run_fio ROUND [fio options]: returns fio's status, output in $T/fio.out
run_fio() {
    local round=$1
    shift
    (cd "$T" && fio --output-format=terse --randseed="$round" "$@" "$T/fio-$round.fio") >"$T/fio.out" 2>&1
}
fio_failed() { soft_fail "$1: fio says: $(grep -aE 'verify|err=|error' "$T/fio.out" | head -5)"; }

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
SIZE=$(stat -c %s "$T/parent.raw")
sha_parent_file=$(sha256sum <"$LIB/Ubuntu/Ubuntu.vmdk")

# ---- the oracle for the guest file system: the parent's raw copy on a loop
# device, then a copy of it changed the way the clone will be.
head -c 300000 /dev/urandom >"$T/new.bin"
guest_tree "$T/parent.raw"
parent_tree=$TREE
grep -q '^f 644 ./home/user/data.bin$' <<<"$parent_tree" || fail "the parent's guest fs lacks /home/user/data.bin: $parent_tree"
grep -q '^f 644 ./etc/hostname$' <<<"$parent_tree" || fail "the parent's guest fs lacks /etc/hostname"
cp "$T/parent.raw" "$T/guest-model.raw"
attach "$T/guest-model.raw"
inner_mount "$PART" "$T/gmodel" rw
[ "$(cat "$T/gmodel/etc/hostname")" = ubuntu ] || fail "the parent's /etc/hostname is not \"ubuntu\""
guest_changes "$T/gmodel"
inner_umount "$T/gmodel"
detach "$DEV"
guest_tree "$T/guest-model.raw"
model_tree=$TREE
[ "$model_tree" != "$parent_tree" ] || fail "the guest changes changed nothing"

mount_lib
CU=$MNT/clones/Ubuntu

# ======================================================== qemu-img, qemu-io
# q is the first clone of Ubuntu: its parent is Ubuntu/Ubuntu.vmdk.
mkdir "$CU/q" || fail "mkdir clones/Ubuntu/q"
Q=$CU/q
cp "$T/parent.raw" "$T/q-model.raw"
info=$(qemu-img info --output=json "$Q/q.vmdk") || fail "qemu-img info of the clone's descriptor on the mount"
grep -q '"format": "vmdk"' <<<"$info" || soft_fail "qemu-img info: format is not vmdk: $info"
grep -q "\"virtual-size\": $SIZE," <<<"$info" || soft_fail "qemu-img info: virtual size is not $SIZE: $info"
grep -q '"create-type": "monolithicFlat"' <<<"$info" || soft_fail "qemu-img info: not monolithicFlat: $info"
grep -q '"filename": ".*/q/q-flat.vmdk"' <<<"$info" || soft_fail "qemu-img info: the extent is not q-flat.vmdk: $info"
out=$(qemu-img compare "$Q/q.vmdk" "$LIB/Ubuntu/Ubuntu.vmdk" 2>&1) ||
    soft_fail "qemu-img compare of a new clone and its parent in the library: $out"
out=$(qemu-img compare "$Q/q.vmdk" "$MNT/Ubuntu/Ubuntu.vmdk" 2>&1) ||
    soft_fail "qemu-img compare of a new clone and its parent through the mount: $out"

# Writes: the lowest one 512-aligned where the parent has ext4 metadata;
# then through the descriptor with qemu-io.
write_both $((M + 7 * 512)) 5000 "$Q/q-flat.vmdk" "$T/q-model.raw"
for _ in $(seq 12); do
    len=$(((RANDOM * 32768 + RANDOM) % 200000 + 1))
    off=$((2 * M + (RANDOM * 32768 + RANDOM) % (SIZE - 2 * M - len)))
    write_both "$off" "$len" "$Q/q-flat.vmdk" "$T/q-model.raw"
done
# The generated descriptor is read-only (qemu opens it read/write to write
# through it): qemu-io writes into the flat disk and reads the pattern back
# through the descriptor.
qemu-io -f raw -c "write -P 0x5a $((9 * M + 1536)) 102400" "$Q/q-flat.vmdk" >"$T/qemu-io.out" 2>&1 ||
    soft_fail "qemu-io write into the clone's flat disk: $(cat "$T/qemu-io.out")"
head -c 102400 /dev/zero | tr '\0' '\132' >"$T/chunk"
dd if="$T/chunk" of="$T/q-model.raw" bs=64K seek=$((9 * M + 1536)) oflag=seek_bytes conv=notrunc status=none
out=$(qemu-io -r -f vmdk -c "read -P 0x5a $((9 * M + 1536)) 102400" "$Q/q.vmdk" 2>&1)
[[ $out != *Pattern* && $out != *rror* ]] || soft_fail "qemu-io read -P through the clone's descriptor: $out"
same_soft "$Q/q-flat.vmdk" "$T/q-model.raw" "the clone after dd and qemu-io writes"
qemu-img convert -O raw "$Q/q.vmdk" "$T/q-convert.raw" || fail "qemu-img convert of the clone's descriptor on the mount"
same_soft "$T/q-convert.raw" "$Q/q-flat.vmdk" "qemu-img convert of the descriptor vs the flat disk"
same_soft "$T/q-convert.raw" "$T/q-model.raw" "qemu-img convert of the descriptor vs the model"
first=$({ cmp "$T/q-model.raw" "$T/parent.raw" || true; } | sed -n 's/.* differ: byte \([0-9]*\),.*/\1/p')
[ -n "$first" ] || fail "the model of q does not differ from the parent"
want="Content mismatch at offset $(((first - 1) / 512 * 512))!"
rc=0
out=$(qemu-img compare "$Q/q.vmdk" "$LIB/Ubuntu/Ubuntu.vmdk" 2>&1) || rc=$?
if [ "$rc" != 1 ] || [ "$out" != "$want" ]; then
    soft_fail "qemu-img compare of the written clone and its parent: status $rc, \"$out\"; expected status 1, \"$want\""
fi
out=$(qemu-img compare -F raw "$Q/q.vmdk" "$T/q-model.raw" 2>&1) ||
    soft_fail "qemu-img compare of the clone and its model: $out"

# ======================================================== cp, tar, rsync
cp --sparse=always "$Q/q-flat.vmdk" "$T/cp.raw" || fail "cp --sparse=always of the flat disk"
same_soft "$T/cp.raw" "$T/q-model.raw" "cp --sparse=always copy of the flat disk"
cp -r --sparse=always "$Q" "$T/cp-dir" || fail "cp -r --sparse=always of the clone folder"
for f in q.vmx q.vmdk q-flat.vmdk; do same_soft "$T/cp-dir/$f" "$Q/$f" "cp -r of the clone folder: $f"; done

tar -cSf "$T/q.tar" -C "$CU" q || fail "tar -cSf of the clone folder"
listing=$(tar -tf "$T/q.tar" | LC_ALL=C sort | tr '\n' ' ')
[ "$listing" = "q/ q/q-flat.vmdk q/q.vmdk q/q.vmx " ] || soft_fail "tar listing of the clone folder: $listing"
mkdir "$T/untar"
tar -xSf "$T/q.tar" -C "$T/untar" || fail "tar -xSf of the clone folder's archive"
for f in q.vmx q.vmdk q-flat.vmdk; do same_soft "$T/untar/q/$f" "$Q/$f" "tar of the clone folder: extracted $f vs the mount's"; done
same_soft "$T/untar/q/q-flat.vmdk" "$T/q-model.raw" "tar of the clone folder: extracted flat disk vs the model"

if command -v rsync >/dev/null 2>&1; then
    rsync -a --sparse "$Q/" "$T/rsync/" || fail "rsync -a --sparse of the clone folder"
    for f in q.vmx q.vmdk q-flat.vmdk; do same_soft "$T/rsync/$f" "$Q/$f" "rsync of the clone folder: $f"; done
    same_soft "$T/rsync/q-flat.vmdk" "$T/q-model.raw" "rsync copy of the flat disk vs the model"
    # A restore: the changed backup written back in place, by deltas.
    write_both $((20 * M + 4321)) 150000 "$T/rsync/q-flat.vmdk" "$T/q-model.raw"
    write_both $((SIZE - 3000)) 3000 "$T/rsync/q-flat.vmdk" "$T/q-model.raw"
    out=$(rsync -I --inplace --no-whole-file "$T/rsync/q-flat.vmdk" "$Q/q-flat.vmdk" 2>&1) ||
        soft_fail "rsync --inplace --no-whole-file into the clone's flat disk: $out"
    same_soft "$Q/q-flat.vmdk" "$T/q-model.raw" "the flat disk after rsync --inplace wrote into it"
fi

# ============================ sha256sum of one clone while another is written
# s1 and s2 are clones of the same snapshot (the one made for q).
SRC="$MNT/clones/Ubuntu@vmclonefs: q"
[ -d "$SRC" ] || fail "no source folder for q's snapshot: $(ls "$MNT/clones")"
mkdir "$SRC/s1" "$SRC/s2" || fail "mkdir of two clones of q's snapshot"
S1=$SRC/s1/s1-flat.vmdk
S2=$SRC/s2/s2-flat.vmdk
cp "$T/parent.raw" "$T/s1-model.raw"
cp "$T/parent.raw" "$T/s2-model.raw"
for _ in $(seq 8); do
    len=$(((RANDOM * 32768 + RANDOM) % 300000 + 1))
    off=$(((RANDOM * 32768 + RANDOM) % (SIZE - len)))
    write_both "$off" "$len" "$S1" "$T/s1-model.raw"
done
want=$(sha256sum <"$T/s1-model.raw")
# The writer goes on until the reader is done (and writes at least 10 times).
(
    set -e
    i=0
    while [ $i -lt 10 ] || [ ! -e "$T/reader-done" ]; do
        i=$((i + 1))
        len=$(((RANDOM * 32768 + RANDOM) % 250000 + 1))
        off=$(((RANDOM * 32768 + RANDOM) % (SIZE - len)))
        flag=
        [ $((i % 2)) = 0 ] && flag=,direct
        head -c "$len" /dev/urandom >"$T/chunk-s2"
        dd if="$T/chunk-s2" of="$S2" bs=64K seek="$off" oflag=seek_bytes$flag conv=notrunc status=none
        dd if="$T/chunk-s2" of="$T/s2-model.raw" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
    done
    echo "$i" >"$T/writer-count"
) &
BG_PID=$!
for _ in 1 2 3 4; do
    got=$(sha256sum <"$S1") || fail "sha256sum of a clone's flat disk"
    [ "$got" = "$want" ] || soft_fail "sha256sum of s1 while s2 is written: $got, the model's is $want"
    got=$(dd if="$S1" bs=1M iflag=direct status=none | sha256sum)
    [ "$got" = "$want" ] || soft_fail "sha256sum of s1 read with O_DIRECT while s2 is written: $got, the model's is $want"
done
kill -0 "$BG_PID" 2>/dev/null || soft_fail "the writer into s2 was gone before the reader of s1 was done"
touch "$T/reader-done"
rc=0
wait "$BG_PID" || rc=$?
BG_PID=
[ $rc = 0 ] || fail "the writer into s2 failed (status $rc)"
note "8 reads of s1 while $(cat "$T/writer-count") writes went into s2"
same_soft "$S2" "$T/s2-model.raw" "s2 after the concurrent writer"
same_soft "$S1" "$T/s1-model.raw" "s1 after s2 was written"

# ======================================================== fio
mkdir "$CU/fio" || fail "mkdir clones/Ubuntu/fio"
FIO_FLAT=$CU/fio/fio-flat.vmdk
if dd if="$FIO_FLAT" of=/dev/null bs=4k count=1 iflag=direct status=none 2>"$T/dd.err"; then
    DIRECT=1
else
    DIRECT=0
    note "the flat disk refuses O_DIRECT ($(cat "$T/dd.err")): fio jobs run buffered"
fi
fio_jobs "$FIO_FLAT" 1 >"$T/fio-1.fio"
fio_jobs "$FIO_FLAT" 2 >"$T/fio-2.fio"
run_fio 1 || fio_failed "fio round 1 (write, then verify)"
# Round 2's check must fail on round 1's data, block by block.
if run_fio 2 --verify_only; then
    soft_fail "fio's check of round 2 passed before round 2 was written: it cannot see stale blocks"
fi
run_fio 2 || fio_failed "fio round 2 (overwrite, then verify)"
run_fio 2 --verify_only || fio_failed "fio round 2 check"
dd if="$FIO_FLAT" of="$T/fio-flat.raw" bs=1M iflag=direct status=none || fail "reading the fio clone's disk"
same_soft "$FIO_FLAT" "$T/fio-flat.raw" "the fio clone read buffered and with O_DIRECT"
# Outside the jobs' areas, the parent's bytes.
cp "$T/parent.raw" "$T/fio-model.raw"
dd if="$T/fio-flat.raw" of="$T/fio-model.raw" bs=4k skip=$((FIO_FROM / 4096)) seek=$((FIO_FROM / 4096)) \
    count=$(((FIO_TO - FIO_FROM) / 4096)) conv=notrunc status=none
same_soft "$T/fio-flat.raw" "$T/fio-model.raw" "the fio clone outside the areas fio wrote"
sync "$FIO_FLAT"

# ======================================================== the guest file system
mkdir "$CU/guest" || fail "mkdir clones/Ubuntu/guest"
GF=$CU/guest/guest-flat.vmdk
guest_tree "$GF"
tree=$TREE
[ "$tree" = "$parent_tree" ] ||
    soft_fail "the clone's guest fs vs the parent's raw copy: $(diff <(echo "$parent_tree") <(echo "$tree") | head -20)"
attach "$GF" --read-only
inner_mount "$PART" "$T/gro" ro,noload
[ "$(cat "$T/gro/etc/hostname")" = ubuntu ] || soft_fail "the clone's /etc/hostname: $(cat "$T/gro/etc/hostname")"
[ "$(stat -c %s "$T/gro/home/user/data.bin")" = $((384 * K)) ] || soft_fail "the clone's /home/user/data.bin size"
inner_umount "$T/gro"
detach "$DEV"

attach "$GF"
inner_mount "$PART" "$T/grw" rw
guest_changes "$T/grw"
inner_umount "$T/grw"
detach "$DEV"
attach "$GF" --read-only
e2fsck -fn "$PART" >"$T/e2fsck.out" 2>&1 || soft_fail "e2fsck -fn of the clone's guest fs after writing: $(tail -5 "$T/e2fsck.out")"
detach "$DEV"
guest_tree "$GF"
tree=$TREE
[ "$tree" = "$model_tree" ] ||
    soft_fail "the clone's guest fs after writing vs the model: $(diff <(echo "$model_tree") <(echo "$tree") | head -20)"
dd if="$GF" of="$T/guest-flat.raw" bs=1M iflag=direct status=none || fail "reading the guest clone's disk"
sync "$GF"

# ======================================================== after unmount
unmount_lib
STORE=$LIB/.vmclonefs/clones
qemu-img info --backing-chain "$STORE/q/q.vmdk" | grep -q "^backing file: .*Ubuntu/Ubuntu.vmdk" ||
    soft_fail "q's store is not over Ubuntu/Ubuntu.vmdk: $(qemu-img info "$STORE/q/q.vmdk")"
for c in q s1 s2 fio guest; do
    qemu-img check -q "$STORE/$c/$c.vmdk" || soft_fail "qemu-img check of $c's stored delta"
    raw_of "$STORE/$c/$c.vmdk" "$T/$c-store.raw"
done
same_soft "$T/q-store.raw" "$T/q-model.raw" "qemu-img's reading of q's store vs the model"
same_soft "$T/s1-store.raw" "$T/s1-model.raw" "qemu-img's reading of s1's store vs the model"
same_soft "$T/s2-store.raw" "$T/s2-model.raw" "qemu-img's reading of s2's store vs the model"
same_soft "$T/fio-store.raw" "$T/fio-flat.raw" "qemu-img's reading of the fio clone's store vs the disk fio left on the mount"
same_soft "$T/guest-store.raw" "$T/guest-flat.raw" "qemu-img's reading of the guest clone's store vs its disk on the mount"
guest_tree "$T/guest-store.raw"
tree=$TREE
[ "$tree" = "$model_tree" ] ||
    soft_fail "the guest fs in qemu-img's reading of the store vs the model: $(diff <(echo "$model_tree") <(echo "$tree") | head -20)"
# The parent never changed.
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent-after.raw"
same_bytes "$T/parent-after.raw" "$T/parent.raw" "the parent's raw image"
[ "$(sha256sum <"$LIB/Ubuntu/Ubuntu.vmdk")" = "$sha_parent_file" ] || soft_fail "Ubuntu/Ubuntu.vmdk changed"

# ======================================================== after a remount
mount_lib
attach "$GF" --read-only
inner_mount "$PART" "$T/gro" ro,noload
cmp -s "$T/gro/home/user/new.bin" "$T/new.bin" || soft_fail "the file written into the guest fs, after a remount"
[ "$(cat "$T/gro/etc/hostname")" = tools-clone ] || soft_fail "the guest's /etc/hostname after a remount: $(cat "$T/gro/etc/hostname")"
[ ! -e "$T/gro/home/user/notes.txt" ] || soft_fail "the file deleted in the guest fs is back after a remount"
inner_umount "$T/gro"
e2fsck -fn "$PART" >"$T/e2fsck.out" 2>&1 || soft_fail "e2fsck -fn of the clone's guest fs after a remount: $(tail -5 "$T/e2fsck.out")"
detach "$DEV"
guest_tree "$GF"
tree=$TREE
[ "$tree" = "$model_tree" ] ||
    soft_fail "the clone's guest fs after a remount vs the model: $(diff <(echo "$model_tree") <(echo "$tree") | head -20)"
run_fio 2 --verify_only || fio_failed "fio round 2 check after a remount"
same_soft "$FIO_FLAT" "$T/fio-flat.raw" "the fio clone after a remount"
same_soft "$Q/q-flat.vmdk" "$T/q-model.raw" "q after a remount"
unmount_lib
finish_soft_fails
note "fio, qemu-img, qemu-io, cp, tar$(command -v rsync >/dev/null && echo ', rsync'), sha256sum and the guest fs on loop devices agree with their oracles"
