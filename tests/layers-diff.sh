#!/bin/bash
# The differential test of the disk readers: every disk of the sample
# library, and layouts it lacks, read through our layer stack and through
# libvmdk (tests/layer-diff), must give the bytes `qemu-img convert -O raw`
# gives. The extra layouts: split sparse extents whose sizes are not a
# multiple of the grain (grains straddle extent ends), flat extents at an
# offset inside their file (libvmdk misreads those, so only ours is
# compared there), chains mixing flat, sparse, zeroed-grain and
# stream-optimized links, and a VMFS flat descriptor. No mount needed.
# shellcheck disable=SC2154  # make check sets top_srcdir and top_builddir
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "# $*"; }
DIFF=$top_builddir/tests/layer-diff
[ -x "$DIFF" ] || fail "no $DIFF"
T=$(mktemp -d "${TMPDIR:-/tmp}/vcf-layers.XXXXXX")
trap 'rm -rf "$T"' EXIT
LIB=$T/lib
"$top_srcdir/scripts/make-sample-library.sh" "$LIB" >/dev/null

# diff_disk DISK WANT [RAW]: DISK reads the same through our stack and
# libvmdk as qemu-img convert (or RAW, when given) says, and the stack has
# WANT ("LEVELS VMDK_LEVELS").
diff_disk() {
    if [ -n "${3:-}" ]; then
        mv "$3" "$T/raw"
    else
        qemu-img convert -U -f vmdk -O raw "$1" "$T/raw" || fail "qemu-img convert $1"
    fi
    out=$("$DIFF" ${NO_LIBVMDK:+--no-libvmdk} "$1" "$T" "$T/raw") || fail "$1: readers differ: $out"
    got=$(echo "$out" | grep -v '^#')
    [ "$got" = "$2" ] || fail "$1: stack of $got levels, not $2"
    note "$(basename "$1"): $(echo "$out" | tr '\n' ' ')"
    rm -f "$T/raw"
}

# The sample library: every link of every chain.
diff_disk "$LIB/Ubuntu/Ubuntu.vmdk" "1 0"
diff_disk "$LIB/Split/Split.vmdk" "1 0"
diff_disk "$LIB/TwoDisks/TwoDisks.vmdk" "1 0"
diff_disk "$LIB/TwoDisks/TwoDisks_1.vmdk" "1 0"
diff_disk "$LIB/Chain/Chain.vmdk" "1 0"
diff_disk "$LIB/Chain/Chain-000001.vmdk" "2 0"
diff_disk "$LIB/Chain/Chain-000002.vmdk" "3 0"

X=$T/x
mkdir "$X"
cd "$X"
qio() { qemu-io -f vmdk "$@" >/dev/null || fail "qemu-io $*"; }
descriptor() {   # NAME CREATE_TYPE CID PARENT_CID, extents on stdin
    { printf '# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\nCID=%s\nparentCID=%s\n' "$3" "$4"
      printf 'createType="%s"\n\n# Extent description\n' "$2"
      cat
      printf '\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\n'
      printf 'ddb.geometry.cylinders = "16"\nddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\n'
      printf 'ddb.adapterType = "ide"\n'; } > "$1"
}

# Split sparse: extents of 1000, 3000 and 2096 sectors with 128-sector
# grains, each with data across its last, partial grain. qemu-img misreads
# an extent that starts inside a grain (it takes the grain offset from the
# disk offset, not the extent's), so the oracle is each extent file (a
# disk of its own) converted by qemu-img, end to end.
i=0
: > sp.raw
for n in 1000 3000 2096; do
    i=$((i + 1))
    qemu-img create -q -f vmdk -o subformat=monolithicSparse "sp-s00$i.vmdk" $((n * 512))
    qio -c "write -P 0x6$i 0 64k" -c "write -P 0x7$i $(((n - 100) * 512)) $((100 * 512))" "sp-s00$i.vmdk"
    qemu-img convert -f vmdk -O raw "sp-s00$i.vmdk" part.raw
    cat part.raw >> sp.raw
done
descriptor sp.vmdk twoGbMaxExtentSparse 1234abcd ffffffff <<'X'
RW 1000 SPARSE "sp-s001.vmdk"
RW 3000 SPARSE "sp-s002.vmdk"
RW 2096 SPARSE "sp-s003.vmdk"
X
diff_disk "$X/sp.vmdk" "1 0" sp.raw

# Flat extents at offsets inside their files, one of them not a whole
# number of grains, then a sparse delta over them written at the seams.
head -c $((8 * 512)) /dev/zero | tr '\0' '\356' > fo-a.bin
head -c $((2048 * 512)) /dev/urandom >> fo-a.bin
head -c $((3 * 512)) /dev/zero | tr '\0' '\357' > fo-b.bin
head -c $((1000 * 512)) /dev/urandom >> fo-b.bin
descriptor fo.vmdk monolithicFlat 00c0ffee ffffffff <<'X'
RW 2048 FLAT "fo-a.bin" 8
RW 1000 FLAT "fo-b.bin" 3
X
diff_disk "$X/fo.vmdk" "1 0"
qemu-img create -q -f vmdk -o subformat=monolithicSparse -b fo.vmdk -F vmdk fo-d.vmdk
qio -c "write -P 0x44 $((2040 * 512)) 8k" -c "write -P 0x45 $((3000 * 512)) 24064" fo-d.vmdk
diff_disk "$X/fo-d.vmdk" "2 0"

# Flat base <- sparse delta <- zeroed-grain delta, writes at each level.
qemu-img create -q -f vmdk -o subformat=monolithicFlat mix.vmdk 8M
qio -c "write -P 0x51 0 8M" mix.vmdk
qemu-img create -q -f vmdk -o subformat=monolithicSparse -b mix.vmdk -F vmdk mix-1.vmdk
qio -c "write -P 0x52 1M 100k" -c "write -P 0x53 7M 1M" mix-1.vmdk
qemu-img create -q -f vmdk -o subformat=monolithicSparse,zeroed_grain=on -b mix-1.vmdk -F vmdk mix-2.vmdk
qio -c "write -z 1M 128k" -c "write -P 0x54 3M 4k" -c "write -z 6M 64k" mix-2.vmdk
# libvmdk 20200926 reads a zeroed grain as the sector its entry (1) names,
# the descriptor's text: only ours is compared with qemu-img here.
NO_LIBVMDK=1 diff_disk "$X/mix-2.vmdk" "3 0"
diff_disk "$X/mix-1.vmdk" "2 0"

# Stream-optimized (compressed) base under a sparse delta: libvmdk reads
# the base, we read the delta.
qemu-img create -q -f vmdk -o subformat=monolithicSparse so-src.vmdk 4M
qio -c "write -P 0x61 0 1M" -c "write -P 0x62 3M 512k" so-src.vmdk
qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized so-src.vmdk so.vmdk
qemu-img create -q -f vmdk -o subformat=monolithicSparse -b so.vmdk -F vmdk so-d.vmdk
qio -c "write -P 0x63 512k 1M" so-d.vmdk
diff_disk "$X/so-d.vmdk" "2 1"

# A VMFS flat descriptor (an ESXi disk copied to a host).
head -c $((4096 * 512)) /dev/urandom > vm-flat.vmdk
descriptor vm.vmdk vmfs 0badf00d ffffffff <<'X'
RW 4096 VMFS "vm-flat.vmdk"
X
diff_disk "$X/vm.vmdk" "1 0"

note "every layout reads the same through our layers, libvmdk and qemu-img"
