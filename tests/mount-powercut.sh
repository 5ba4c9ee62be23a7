#!/bin/bash
# Power cuts: whatever a power cut leaves of the library, every byte whose
# fsync through the mount had returned reads back, no grain reads as bytes
# that were never written, and every store passes qemu-img check and opens
# and reads through our own core with no EIO. kill -9 (mount-durability.sh)
# cannot show this: the page cache survives it, so a missing data sync or a
# table written before its grains goes unseen there.
#
# How: the daemon runs under tests/libiorecord.so, which logs every change
# it makes to files under the library and every fsync/fdatasync that
# returned. The workload goes through a real mount: a linked clone, rounds
# of writes to its flat disk (rewrites inside stored grains, new grains,
# partial grains, writes across a grain boundary), each round ended by an
# fsync; a second clone made half-way, written too; a clone of the first
# clone (which freezes its delta while it is open); a remount in between.
# Then tests/powercut-replay rebuilds, from a copy of the library taken
# before the workload, what a cut at sampled moments could leave: writes a
# barrier covered are there, writes in flight are dropped or (other seeds)
# a random subset is kept, metadata is applied in order (see its header).
#
# Oracles: a model of each clone's disk (the versions each 64 KiB grain
# went through, and which of them an fsync acknowledged) checked by
# tests/powercut-check against qemu-img's reading of each rebuilt store
# (qemu-img convert over its parent) and against our core's reading of it
# (vcf_clone_open + vcf_disk_read); qemu-img check for each store and the
# VM's current disk.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir and top_builddir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

SHIM=$top_builddir/tests/libiorecord.so
REPLAY=$top_builddir/tests/powercut-replay
CHECK=$top_builddir/tests/powercut-check
for f in "$SHIM" "$REPLAY" "$CHECK"; do
    [ -e "$f" ] || fail "$f is missing (make check builds it)"
done
G=65536
MAX_CUTS=${VCF_POWERCUT_CUTS:-40}
SEEDS="0 1 2"   # all lost, a random subset kept, the newest kept (see powercut-replay.c)
RECLOG=$T/io.log
RANDOM=${VCF_POWERCUT_SEED:-8}   # the workload is the same every run

make_library --size 16
# A parent of random bytes everywhere: a grain whose table entry reached the
# disk before its data then reads as zeros, which no version of it holds (on
# the sample's mostly empty disk those zeros would pass for the parent's).
head -c $((4 << 20)) /dev/urandom >"$T/random.raw"
rm "$LIB/Ubuntu/Ubuntu.vmdk"
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse,adapter_type=lsilogic \
    "$T/random.raw" "$LIB/Ubuntu/Ubuntu.vmdk"
cp -a "$LIB" "$T/pre"                 # the library before the workload
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
same_bytes "$T/parent.raw" "$T/random.raw" "qemu-img's reading of the random parent"
SIZE=$(stat -c %s "$T/parent.raw")
N_GRAINS=$((SIZE / G))

# The daemon under the recorder. Under ASan the sanitizer's runtime must
# come first in LD_PRELOAD, or it refuses to start.
preload=$SHIM
asan=$(ldd "$VMCLONEFS" | awk '/libasan\.so/ { print $3; exit }')
[ -z "$asan" ] || preload=$asan:$SHIM
cat >"$T/recorded-vmclonefs" <<EOF
#!/bin/sh
VCF_IORECORD_DIR='$LIB' VCF_IORECORD_LOG='$RECLOG' LD_PRELOAD='$preload' exec '$VMCLONEFS' "\$@"
EOF
chmod +x "$T/recorded-vmclonefs"
REAL_VMCLONEFS=$VMCLONEFS
VMCLONEFS=$T/recorded-vmclonefs

# A marker record in the log, after everything the daemon logged so far:
# one write, appended like the recorder's own records. Not printf >>: bash
# flushes its output at each newline, and a daemon record that landed
# between the header and the text broke the log (seen in CI). dd gathers
# the whole record (iflag=fullblock) and appends it in one write.
mark() {
    local text=$1
    printf 'M 0 0 0 %d 0\n%s' "${#text}" "$text" |
        dd of="$RECLOG" oflag=append conv=notrunc iflag=fullblock bs=64K status=none
}

# ---- the workload --------------------------------------------------------
mkdir -p "$T/model/chunks"
N_CHUNKS=0
declare -A WRITTEN   # "clone grain" -> 1 once the workload wrote that grain
declare -A SOURCE=([web1]=Ubuntu [web2]=Ubuntu [web3]=web1)

# One write of LEN bytes at OFF into clone NAME in round R, in one write(2)
# so that the daemon sees one request; the model notes it.
write_one() {
    local name=$1 r=$2 off=$3 len=$4 sync=$5 conv=notrunc
    local chunk=$T/model/chunks/$N_CHUNKS
    N_CHUNKS=$((N_CHUNKS + 1))
    head -c "$len" /dev/urandom >"$chunk"
    [ "$sync" = 1 ] && conv=notrunc,fsync
    dd if="$chunk" of="$MNT/clones/${SOURCE[$name]}/$name/$name-flat.vmdk" bs="$len" count=1 \
        seek="$off" oflag=seek_bytes conv="$conv" status=none \
        || fail "round $r: dd of $len bytes at $off into $name"
    echo "$r $off $len $chunk" >>"$T/model/$name.writes"
    for ((g = off / G; g <= (off + len - 1) / G; g++)); do WRITTEN[$name $g]=1; done
}

# A random number below $1 in $N; not in a subshell, where bash reseeds RANDOM.
rnd() { N=$(( (RANDOM * 32768 + RANDOM) % $1 )); }

# A round of writes into NAME: each touches grains no other write of the
# round touches (the model's versions of a grain are then what the disk
# can hold after a cut), the last one fsyncs. Kinds: inside a stored
# grain, a whole new grain, part of a new grain, across a grain boundary.
round() {
    local name=$1 r=$2 k g off len
    local -A used=()
    local writes=()
    for k in old new partial cross old partial; do
        for _ in $(seq 50); do
            rnd $((N_GRAINS - 1)); g=$N
            if [ -n "${used[$g]:-}" ] || [ -n "${used[$((g + 1))]:-}" ]; then continue; fi
            case $k in
            old) [ -n "${WRITTEN[$name $g]:-}" ] || continue
                 rnd $((G - 1)); off=$((g * G + N)); rnd $(( (g + 1) * G - off )); len=$((N + 1)) ;;
            new) [ -z "${WRITTEN[$name $g]:-}" ] || continue
                 off=$((g * G)); len=$G ;;
            partial) [ -z "${WRITTEN[$name $g]:-}" ] || continue
                 rnd 60000; off=$((g * G + N)); rnd 4000; len=$((N + 1)) ;;
            cross) rnd 30000; off=$(( (g + 1) * G - N - 1 )); rnd 30000; len=$((N + 4000)) ;;
            esac
            used[$g]=1
            [ $(( (off + len - 1) / G )) -gt "$g" ] && used[$((g + 1))]=1
            writes+=("$off $len")
            break
        done
    done
    [ ${#writes[@]} -ge 4 ] || fail "round $r: no room for the writes"
    local i=0 w sync=0
    for w in "${writes[@]}"; do
        i=$((i + 1))
        [ "$i" = ${#writes[@]} ] && sync=1
        # shellcheck disable=SC2086  # "off len"
        write_one "$name" "$r" $w "$sync"
    done
    mark "ack $name $r"
}

mount_lib
mkdir "$MNT/clones/Ubuntu/web1" || fail "mkdir of clone web1"
mark "made web1"
cp "$T/parent.raw" "$T/model/web1.base"
for r in 1 2 3; do round web1 "$r"; done
# A second clone half-way: clone creation is under the cuts too.
mkdir "$MNT/clones/Ubuntu/web2" || fail "mkdir of clone web2"
mark "made web2"
cp "$T/parent.raw" "$T/model/web2.base"
for r in 4 5; do round web1 "$r"; round web2 "$r"; done
# A clone of a clone: web1's delta is frozen (links, renames) under the
# cuts too, while web1 is open; web3 starts from web1 as it is now.
model_of() { # NAME OUT: the model's bytes of NAME after every write so far
    cp "$T/model/$1.base" "$2"
    while read -r _ off len chunk; do
        dd if="$chunk" of="$2" bs="$len" seek="$off" oflag=seek_bytes conv=notrunc status=none
    done <"$T/model/$1.writes"
}
model_of web1 "$T/model/web3.base"
mkdir "$MNT/clones/web1/web3" || fail "mkdir of clone web3 of clone web1"
mark "made web3"
round web3 5
# A remount: a clean close, a new session (new CID, unclean flag) after it.
# Then web2 turns full: its copy (slowed down to last through the rounds)
# and its promotion to a standalone disk are under the cuts too.
unmount_lib
mount_lib -o copy_rate=1
setfattr -n user.vmclonefs.type -v full "$MNT/clones/Ubuntu/web2" || fail "setfattr web2 full"
mark "full web2"
for r in 6 7 8; do round web1 "$r"; round web2 "$r"; round web3 "$r"; done
wait_state "$MNT/clones/Ubuntu/web2" full 30
unmount_lib
total=$(awk '{ n += $3 } END { print n }' "$T"/model/web*.writes)
note "workload: $N_CHUNKS writes, $((total / 1024)) KiB, 8 rounds, 3 clones (one of a clone), one remount"

# The model is right about the live library, or nothing below means much.
VMCLONEFS=$REAL_VMCLONEFS
for name in web1 web2 web3; do
    model_of "$name" "$T/model.raw"
    raw_of "$LIB/.vmclonefs/clones/$name/$name.vmdk" "$T/store.raw"
    same_bytes "$T/store.raw" "$T/model.raw" "qemu-img's reading of $name after the workload"
done

# ---- the cuts ---------------------------------------------------------------
S=$T/state
RAW=$T/raw
cuts=$("$REPLAY" cuts "$RECLOG" "$MAX_CUTS" 2>"$T/cuts.err") || fail "replay: $(cat "$T/cuts.err")"
note "log: $(cat "$T/cuts.err"); $(wc -w <<<"$cuts") cuts x $(wc -w <<<"$SEEDS") seeds"
grep -q ', [1-9][0-9]* links' "$T/cuts.err" || fail "the log holds no link: no freeze was under the cuts"
states=0 kept_total=0 acked_states=0 copy_states=0 full_states=0
for cut in $cuts; do
    for seed in $SEEDS; do
        what="cut after record $cut, seed $seed"
        rm -rf "$S" "$RAW"
        cp -a "$T/pre" "$S"
        mkdir "$RAW"
        "$REPLAY" build "$RECLOG" "$S" "$cut" "$seed" >"$T/marks" 2>"$T/replay.err" \
            || fail "$what: replay: $(cat "$T/replay.err")"
        grep -q '^ack ' "$T/marks" && acked_states=$((acked_states + 1))
        kept_total=$((kept_total + $(sed -n 's/.* \([0-9]*\) in flight kept.*/\1/p' "$T/replay.err")))
        vmdisk=$(sed -n 's/^scsi0:0\.fileName = "\(.*\)"$/\1/p' "$S/Ubuntu/Ubuntu.vmx")
        qemu-img check -q "$S/Ubuntu/$vmdisk" >"$T/check.out" 2>&1 \
            || fail "$what: qemu-img check rejects the VM's disk $vmdisk: $(cat "$T/check.out")"
        for store in "$S"/.vmclonefs/clones/*/*.vmdk; do
            [ -e "$store" ] || continue
            name=$(basename "$store" .vmdk)
            qemu-img check -q "$store" >"$T/check.out" 2>&1 \
                || fail "$what: qemu-img check rejects $name's store ($(cat "$T/replay.err")): $(cat "$T/check.out")"
            raw_of "$store" "$RAW/$name.raw" 2>"$T/check.out" \
                || fail "$what: qemu-img cannot read $name's store: $(cat "$T/check.out")"
        done
        "$CHECK" "$S" "$T/model" "$T/marks" "$RAW" >"$T/check.out" 2>&1 \
            || fail "$what ($(cat "$T/replay.err")); markers before the cut: $(tr '\n' ',' <"$T/marks"):
$(cat "$T/check.out")"
        grep -q "^web2 copied to 0:[1-9]" "$T/check.out" && copy_states=$((copy_states + 1))
        grep -q "^web2 full" "$T/check.out" && full_states=$((full_states + 1))
        states=$((states + 1))
    done
done
[ "$acked_states" -gt 0 ] || fail "no state had an acknowledged write: the test proved nothing"
[ "$kept_total" -gt 0 ] || fail "no write in flight was ever kept: the test proved nothing"
[ "$copy_states" -gt 0 ] && [ "$full_states" -gt 0 ] ||
    fail "cuts fell in web2's copy $copy_states times and after it $full_states times: both must"
note "$states power-cut states checked ($acked_states with acknowledged writes, $kept_total writes in flight kept in all, $copy_states in web2's full copy, $full_states after it)"
