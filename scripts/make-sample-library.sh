#!/usr/bin/env bash
# make-sample-library.sh - build a folder of VMware Workstation-style VMs for
# the vmclonefs demo, test suite and benchmark.
#
#   scripts/make-sample-library.sh [--size MIB] [--big GIB] LIBRARY
#
# No root, no mounts. Everything is deterministic: two runs give byte-identical
# files (VMDK CIDs, ext4 UUIDs, hash seeds and times, MBR id, data, UUIDs and
# MACs are all fixed). S below is --size in bytes (default 64 MiB).
#
# Ubuntu/     Ubuntu.vmdk, monolithicSparse, S, scsi0:0. MBR (id 0x5ca1ab1e),
#             one Linux partition at 1 MiB (sector 2048) ending 1 MiB before
#             the end, holding ext4 (UUID 0d2b5f1e-...-3f6b2a8d7c10, label
#             "rootfs"): /etc/hostname = "ubuntu", /usr/lib/os-release (and
#             the /etc/os-release symlink), /etc/fstab, /etc/hosts,
#             /etc/machine-id, /home/user/notes.txt, /home/user/data.bin
#             (384 KiB, generator seed 1). Outside the partition:
#             0xe5 at [S-1M, S-1M+64K) and 0xe6 at [S-4K, S).
# Split/      Split.vmdk (twoGbMaxExtentSparse descriptor) + Split-s001.vmdk,
#             Split-s002.vmdk; V = max(2560 MiB, S). B = end of the first
#             extent (2 GiB with qemu-img). 0x41 at [0, 1M),
#             0x42 at [B-512K, B+512K), 0x43 at [V-1M, V). The rest reads 0.
# TwoDisks/   TwoDisks.vmdk on scsi0:0: a guest disk like Ubuntu's but
#             hostname "twodisks", fs UUID ...7c20, data.bin seed 2.
#             TwoDisks_1.vmdk on sata0:1 (a CD-ROM on sata0:0), size S/2:
#             0x51 at [0, 1M), 0x52 at [S/4, S/4+1M), 0x53 at [S/2-1M, S/2).
# Chain/      Chain.vmdk (base) <- Chain-000001.vmdk <- Chain-000002.vmdk, the
#             .vmx on Chain-000002.vmdk, Chain.vmsd with snapshots "Base
#             install" (uid 1, Chain.vmdk) and "Configured" (uid 2, parent 1,
#             Chain-000001.vmdk), current = 2. Writes, in order:
#               base:   0x11 [0,1M)  0x12 [4M,6M)  0x13 [S-1M,S)
#               000001: 0x21 [512K,1536K)  0x22 [5M+4K,5M+8K)  0x23 [8M,9M)
#               000002: 0x31 [768K,832K)  0x00 [4M,4M+64K)  0x32 [S-64K,S)
#                       0x33 [10M+512,10M+1536)
# Big/        only with --big GIB: Big.vmdk, GIB GiB, first GIB*512 MiB filled
#             with generator data (seed 7), the rest sparse.
#
# The data generator (gen_data SEED BYTES) is an xorshift32 stream: a 1 MiB
# block from SEED, each MiB i of the output being that block XORed with a
# 32-bit key derived from SEED and i.

set -euo pipefail
export LC_ALL=C   # mke2fs -d sorts names with strcoll; keep it byte order
umask 022

PROG=${0##*/}
SIZE_MIB=64
BIG_GIB=0
MIN_SIZE_MIB=16
SPLIT_MIB=2560
# 2024-01-15 10:00:00 UTC, used for every time stamp we control
EPOCH=1705312800
MiB=$((1024 * 1024))

usage() {
    cat <<EOF
Usage: $PROG [--size MIB] [--big GIB] LIBRARY

Make a folder of VMware Workstation-style VMs (Ubuntu, Split, TwoDisks,
Chain, and Big with --big) with deterministic content.

  --size MIB   virtual size of the small disks (default 64, at least $MIN_SIZE_MIB)
  --big GIB    also make Big/ with one GIB GiB disk, half of it data
  -h, --help   show this help

LIBRARY must not exist or be an empty folder.
EOF
}

# shellcheck source=scripts/script-lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/script-lib.sh"

LIBRARY=
while (( $# > 0 )); do
    case $1 in
    --size) (( $# >= 2 )) || usage_error "--size needs a value"
        positive_int --size "$2"; SIZE_MIB=$((10#$2)); shift 2 ;;
    --size=*) positive_int --size "${1#*=}"; SIZE_MIB=$((10#${1#*=})); shift ;;
    --big) (( $# >= 2 )) || usage_error "--big needs a value"
        positive_int --big "$2"; BIG_GIB=$((10#$2)); shift 2 ;;
    --big=*) positive_int --big "${1#*=}"; BIG_GIB=$((10#${1#*=})); shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -?*) usage_error "unknown option '$1'" ;;
    *) [[ -z $LIBRARY ]] || usage_error "only one LIBRARY, got '$LIBRARY' and '$1'"
        LIBRARY=$1; shift ;;
    esac
done
if (( $# > 0 )); then
    [[ -z $LIBRARY && $# -eq 1 ]] || usage_error "only one LIBRARY"
    LIBRARY=$1
fi
[[ -n $LIBRARY ]] || usage_error "no LIBRARY given"
(( SIZE_MIB >= MIN_SIZE_MIB )) || usage_error "--size must be at least $MIN_SIZE_MIB MiB"
(( SIZE_MIB <= 1048576 )) || usage_error "--size above 1 TiB is not sensible here"
(( BIG_GIB <= 4096 )) || usage_error "--big above 4096 GiB is not sensible here"

for tool in qemu-img qemu-io sfdisk mkfs.ext4 debugfs perl md5sum; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' is needed but not found (Debian: qemu-utils, fdisk, e2fsprogs, perl, coreutils)"
done

if [[ -e $LIBRARY || -L $LIBRARY ]]; then
    [[ -d $LIBRARY ]] || die "'$LIBRARY' exists and is not a folder; refusing to touch it"
    [[ -z $(ls -A -- "$LIBRARY") ]] ||
        die "'$LIBRARY' exists and is not empty; refusing to write into it (give a new or empty folder)"
fi
mkdir -p -- "$LIBRARY"
LIBRARY=$(cd -- "$LIBRARY" && pwd -P)

START_NS=$(date +%s%N)
# Scratch space lives in the library so a big raw file lands where the user
# expects the space to go (not in a RAM-backed /tmp); removed on exit.
WORK=$(mktemp -d "$LIBRARY/.make-sample-library.XXXXXX")
DONE=0
cleanup() {
    rm -rf -- "$WORK"
    (( DONE )) || printf '%s: failed; %s is incomplete, remove it before running again\n' \
        "$PROG" "$LIBRARY" >&2
}
trap cleanup EXIT

# ---------------------------------------------------------------- helpers

hexid() { # TEXT -> 32 hex digits, fixed for a given TEXT
    printf '%s' "vmclonefs-sample/$1" | md5sum | cut -c1-32
}

# gen_data SEED BYTES: deterministic pseudo-random bytes on stdout.
gen_data() {
    perl -e '
        use strict; use warnings;
        my ($seed, $left) = @ARGV;
        my $M = 0xffffffff;
        sub xs { my $x = shift; $x ^= ($x << 13) & $M; $x ^= $x >> 17;
                 $x ^= ($x << 5) & $M; return $x; }
        my $x = (($seed + 1) * 2654435761) & $M; $x ||= 0x9e3779b9;
        my @w; for (1 .. 262144) { $x = xs($x); push @w, $x; }
        my $block = pack("V*", @w);
        binmode STDOUT;
        for (my $i = 0; $left > 0; $i++) {
            my $k = (($seed * 0x85ebca6b) ^ ($i * 0x9e3779b9) ^ 0x5bd1e995) & $M;
            $k = xs(xs(xs($k || 1)));
            my $chunk = $block ^ (pack("V", $k) x 262144);
            my $n = $left < 1048576 ? $left : 1048576;
            print substr($chunk, 0, $n) or die "write: $!\n";
            $left -= $n;
        }' "$1" "$2"
}

# set_cid FILE CID [PARENT_CID]: rewrite CID (and parentCID) in a VMDK
# descriptor, embedded in a sparse extent or a text file of its own, in
# place. qemu-img/qemu-io put a random CID in every image they create or open
# for writing (printed with %x, so 1 to 8 digits); fixed CIDs make the files
# reproducible. Children must be fixed along with their parent.
set_cid() {
    perl -e '
        use strict; use warnings;
        my ($file, $cid, $pcid) = @ARGV;
        open(my $fh, "+<:raw", $file) or die "$file: $!\n";
        my ($off, $len);
        sysread($fh, my $hdr, 512) // die "$file: $!\n";
        if (substr($hdr, 0, 4) eq "KDMV") {        # hosted sparse extent
            my ($doff, $dsize) = unpack("Q< Q<", substr($hdr, 28, 16));
            die "$file: no embedded descriptor\n" unless $doff && $dsize;
            ($off, $len) = ($doff * 512, $dsize * 512);
        } else {                                   # descriptor file
            ($off, $len) = (0, -s $fh);
        }
        sysseek($fh, $off, 0) or die "$file: $!\n";
        (sysread($fh, my $buf, $len) // -1) == $len or die "$file: short read\n";
        my $text = $buf =~ s/\0.*//sr;
        $text =~ s/^CID=[0-9a-fA-F]{1,8}$/CID=$cid/m or die "$file: no CID line\n";
        if ($pcid ne "") {
            $text =~ s/^parentCID=[0-9a-fA-F]{1,8}$/parentCID=$pcid/m
                or die "$file: no parentCID line\n";
        }
        if ($off > 0) {
            length($text) < $len or die "$file: descriptor does not fit\n";
            $text .= "\0" x ($len - length($text));
        } else {
            truncate($fh, 0) or die "$file: $!\n";
        }
        sysseek($fh, $off, 0) or die "$file: $!\n";
        syswrite($fh, $text) == length($text) or die "$file: short write\n";
        close($fh) or die "$file: $!\n";' "$1" "$2" "${3:-}"
}

cid_of() { hexid "cid/$1" | cut -c1-8; }

qio() { # qemu-io, quiet on success, loud on failure
    local out
    out=$(qemu-io "$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
    if grep -qiE 'error|failed' <<<"$out"; then
        printf '%s\n' "$out" >&2
        return 1
    fi
}

to_vmdk() { # RAW OUT ADAPTER: raw -> monolithicSparse (zero runs stay sparse)
    qemu-img convert -f raw -O vmdk \
        -o "subformat=monolithicSparse,adapter_type=$3,hwversion=19" "$1" "$2"
}

# debugfs with a command file; fail on any complaint on stderr.
debugfs_script() { # IMAGE CMDFILE
    local err
    err=$(E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$2" "$1" 2>&1 >/dev/null |
        grep -v '^debugfs [0-9]' || true)
    [[ -z $err ]] || die "debugfs on $1: $err"
}

# guest_disk RAW SIZE_MIB HOSTNAME FS_UUID SEED: a raw disk that looks like
# a small installed Linux: MBR, one partition at 1 MiB, ext4 made with
# mkfs.ext4 -d, the last MiB left outside the partition.
guest_disk() {
    local raw=$1 size=$2 host=$3 uuid=$4 seed=$5
    local root="$WORK/root-$host" fs="$WORK/fs-$host.img" cmds="$WORK/debugfs-$host"
    local part_mib=$((size - 2)) p

    rm -rf -- "$root"
    mkdir -p "$root/etc" "$root/usr/lib" "$root/home/user" "$root/tmp" "$root/root"
    printf '%s\n' "$host" >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tip6-localhost ip6-loopback\n' \
        "$host" >"$root/etc/hosts"
    printf '# /etc/fstab: static file system information.\nUUID=%s / ext4 errors=remount-ro 0 1\n' \
        "$uuid" >"$root/etc/fstab"
    printf '%s\n' "$(hexid "machine-id/$host")" >"$root/etc/machine-id"
    cat >"$root/usr/lib/os-release" <<'EOF'
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=jammy
EOF
    ln -s ../usr/lib/os-release "$root/etc/os-release"
    cat >"$root/home/user/notes.txt" <<EOF
Notes for $host
===============
This disk was made by vmclonefs scripts/make-sample-library.sh.
Its content is fixed: tests compare it byte for byte.
data.bin holds 393216 bytes from generator seed $seed.
EOF
    gen_data "$seed" $((384 * 1024)) >"$root/home/user/data.bin"
    chmod 755 "$root" "$root/etc" "$root/usr" "$root/usr/lib" "$root/home"
    chmod 1777 "$root/tmp"
    chmod 700 "$root/root"
    chmod 750 "$root/home/user"
    chmod 644 "$root/etc/hostname" "$root/etc/hosts" "$root/etc/fstab" \
        "$root/etc/machine-id" "$root/usr/lib/os-release" \
        "$root/home/user/notes.txt" "$root/home/user/data.bin"

    rm -f -- "$fs"
    E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -b 4096 -L rootfs -U "$uuid" \
        -E "hash_seed=$uuid,root_owner=0:0" -d "$root" "$fs" "${part_mib}M" >/dev/null

    # mke2fs -d copies owners, atime and ctime from the staging files; pin them.
    : >"$cmds"
    while IFS= read -r p; do
        p=${p#.}; p=${p:-/}
        printf 'sif "%s" %s @%s\n' "$p" atime "$EPOCH" "$p" ctime "$EPOCH" \
            "$p" mtime "$EPOCH" "$p" crtime "$EPOCH" >>"$cmds"
        case $p in
        /home/user | /home/user/*) printf 'sif "%s" uid 1000\nsif "%s" gid 1000\n' "$p" "$p" ;;
        *) printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$p" "$p" ;;
        esac >>"$cmds"
    done < <(cd "$root" && find . | sort)
    debugfs_script "$fs" "$cmds"

    rm -f -- "$raw"
    truncate -s "${size}M" "$raw"
    sfdisk -q --no-reread --no-tell-kernel "$raw" >/dev/null <<EOF
label: dos
label-id: 0x5ca1ab1e
unit: sectors

start=2048, size=$((part_mib * 2048)), type=83, bootable
EOF
    dd if="$fs" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
    rm -f -- "$fs"
    rm -rf -- "$root"
}

# write_vmx DIR NAME MEMSIZE NUMVCPUS: a .vmx as Workstation 16.2+ writes it
# (hardware version 19). Storage lines come on stdin, in Workstation's order.
write_vmx() {
    local dir=$1 name=$2 mem=$3 cpus=$4 storage h v b vc mac vmci
    storage=$(cat)
    h=$(hexid "uuid/$name")
    v=$(hexid "vc/$name")
    b="56 4d ${h:0:2} ${h:2:2} ${h:4:2} ${h:6:2} ${h:8:2} ${h:10:2}-${h:12:2} ${h:14:2} ${h:16:2} ${h:18:2} ${h:20:2} ${h:22:2} ${h:24:2} ${h:26:2}"
    vc="52 ${v:0:2} ${v:2:2} ${v:4:2} ${v:6:2} ${v:8:2} ${v:10:2} ${v:12:2}-${v:14:2} ${v:16:2} ${v:18:2} ${v:20:2} ${v:22:2} ${v:24:2} ${v:26:2} ${v:28:2}"
    # Workstation derives the MAC and the VMCI id from uuid.bios's last bytes.
    mac="00:0c:29:${h:22:2}:${h:24:2}:${h:26:2}"
    vmci=$(( 16#${h:20:8} )); (( vmci < 2147483648 )) || vmci=$(( vmci - 4294967296 ))
    {
        cat <<EOF
#!/usr/bin/vmware
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
pciBridge0.present = "TRUE"
pciBridge4.present = "TRUE"
pciBridge4.virtualDev = "pcieRootPort"
pciBridge4.functions = "8"
pciBridge5.present = "TRUE"
pciBridge5.virtualDev = "pcieRootPort"
pciBridge5.functions = "8"
pciBridge6.present = "TRUE"
pciBridge6.virtualDev = "pcieRootPort"
pciBridge6.functions = "8"
pciBridge7.present = "TRUE"
pciBridge7.virtualDev = "pcieRootPort"
pciBridge7.functions = "8"
vmci0.present = "TRUE"
hpet0.present = "TRUE"
nvram = "$name.nvram"
virtualHW.productCompatibility = "hosted"
powerType.powerOff = "soft"
powerType.powerOn = "soft"
powerType.suspend = "soft"
powerType.reset = "soft"
displayName = "$name"
usb.vbluetooth.startConnected = "TRUE"
guestOS = "ubuntu-64"
tools.syncTime = "FALSE"
sound.autoDetect = "TRUE"
sound.virtualDev = "hdaudio"
sound.fileName = "-1"
sound.present = "TRUE"
numvcpus = "$cpus"
cpuid.coresPerSocket = "1"
vcpu.hotadd = "TRUE"
memsize = "$mem"
mem.hotadd = "TRUE"
$storage
usb.present = "TRUE"
ehci.present = "TRUE"
svga.graphicsMemoryKB = "8388608"
ethernet0.connectionType = "nat"
ethernet0.addressType = "generated"
ethernet0.virtualDev = "e1000"
serial0.fileType = "thinprint"
serial0.fileName = "thinprint"
ethernet0.present = "TRUE"
extendedConfigFile = "$name.vmxf"
floppy0.present = "FALSE"
uuid.bios = "$b"
uuid.location = "$b"
vc.uuid = "$vc"
pciBridge0.pciSlotNumber = "17"
pciBridge4.pciSlotNumber = "21"
pciBridge5.pciSlotNumber = "22"
pciBridge6.pciSlotNumber = "23"
pciBridge7.pciSlotNumber = "24"
scsi0.pciSlotNumber = "16"
usb.pciSlotNumber = "32"
ethernet0.pciSlotNumber = "33"
sound.pciSlotNumber = "34"
ehci.pciSlotNumber = "35"
EOF
        if grep -q '^sata0\.present' <<<"$storage"; then
            echo 'sata0.pciSlotNumber = "36"'
        fi
        cat <<EOF
svga.vramSize = "268435456"
vmotion.checkpointFBSize = "4194304"
vmotion.checkpointSVGAPrimarySize = "268435456"
vmotion.svga.mobMaxSize = "1073741824"
vmotion.svga.graphicsMemoryKB = "8388608"
ethernet0.generatedAddress = "$mac"
ethernet0.generatedAddressOffset = "0"
vmci0.id = "$vmci"
monitor.phys_bits_used = "45"
cleanShutdown = "TRUE"
softPowerOff = "FALSE"
tools.remindInstall = "FALSE"
checkpoint.vmState = ""
EOF
    } >"$dir/$name.vmx"

    cat >"$dir/$name.vmxf" <<EOF
<?xml version="1.0"?>
<Foundry>
<VM>
<VMId type="string">$vc</VMId>
<ClientMetaData>
<clientMetaDataAttributes/>
<HistoryEventList/></ClientMetaData>
<vmxPathName type="string">$name.vmx</vmxPathName></VM></Foundry>
EOF
    # Workstation keeps an empty .vmsd until the first snapshot.
    [[ -e $dir/$name.vmsd ]] || : >"$dir/$name.vmsd"
}

kib_used() { du -ck -- "$@" | tail -n1 | cut -f1; }

summary() { printf '%-9s %s\n' "$1" "$2"; }

S=$((SIZE_MIB * MiB))

# ---------------------------------------------------------------- Ubuntu

d="$LIBRARY/Ubuntu"
mkdir "$d"
guest_disk "$WORK/ubuntu.raw" "$SIZE_MIB" ubuntu 0d2b5f1e-6c4a-4f0e-9e53-3f6b2a8d7c10 1
qio -f raw -c "write -P 0xe5 $((S - MiB)) 64k" -c "write -P 0xe6 $((S - 4096)) 4k" "$WORK/ubuntu.raw"
to_vmdk "$WORK/ubuntu.raw" "$d/Ubuntu.vmdk" lsilogic
rm -f -- "$WORK/ubuntu.raw"
set_cid "$d/Ubuntu.vmdk" "$(cid_of Ubuntu.vmdk)"
write_vmx "$d" Ubuntu 2048 2 <<'EOF'
scsi0.virtualDev = "lsilogic"
scsi0.present = "TRUE"
scsi0:0.fileName = "Ubuntu.vmdk"
scsi0:0.present = "TRUE"
sata0.present = "TRUE"
sata0:1.deviceType = "cdrom-image"
sata0:1.fileName = "/home/user/isos/ubuntu-22.04.4-live-server-amd64.iso"
sata0:1.present = "TRUE"
sata0:1.startConnected = "FALSE"
scsi0:0.redo = ""
EOF
summary Ubuntu "scsi0:0 Ubuntu.vmdk monolithicSparse ${SIZE_MIB} MiB: MBR, ext4 at 1 MiB (hostname ubuntu), pattern in last MiB; $(kib_used "$d"/*.vmdk) KiB used"

# ---------------------------------------------------------------- Split

d="$LIBRARY/Split"
mkdir "$d"
split_mib=$(( SIZE_MIB > SPLIT_MIB ? SIZE_MIB : SPLIT_MIB ))
V=$((split_mib * MiB))
(cd "$d" && qemu-img create -q -f vmdk \
    -o subformat=twoGbMaxExtentSparse,adapter_type=lsilogic,hwversion=19 Split.vmdk "${split_mib}M")
first=$(awk '$1 == "RW" { print $2; exit }' "$d/Split.vmdk")
[[ $first =~ ^[0-9]+$ ]] || die "cannot read the first extent of $d/Split.vmdk"
B=$((first * 512))
(( B + 512 * 1024 <= V - MiB )) || die "Split: extent boundary too close to the end"
qio -c "write -P 0x41 0 1M" -c "write -P 0x42 $((B - 512 * 1024)) 1M" \
    -c "write -P 0x43 $((V - MiB)) 1M" "$d/Split.vmdk"
# qemu-io rewrote this descriptor as a NUL-padded 512-byte block when it
# updated the CID; set_cid writes it back as the plain text VMware writes.
set_cid "$d/Split.vmdk" "$(cid_of Split.vmdk)"
write_vmx "$d" Split 1024 1 <<'EOF'
scsi0.virtualDev = "lsilogic"
scsi0.present = "TRUE"
scsi0:0.fileName = "Split.vmdk"
scsi0:0.present = "TRUE"
scsi0:0.redo = ""
EOF
extents=$(find "$d" -maxdepth 1 -name 'Split-s[0-9][0-9][0-9].vmdk' | wc -l)
summary Split "scsi0:0 Split.vmdk twoGbMaxExtentSparse ${split_mib} MiB in $extents extents (boundary at $B), patterns at start, across the boundary, at end; $(kib_used "$d"/*.vmdk) KiB used"

# ---------------------------------------------------------------- TwoDisks

d="$LIBRARY/TwoDisks"
mkdir "$d"
guest_disk "$WORK/two0.raw" "$SIZE_MIB" twodisks 0d2b5f1e-6c4a-4f0e-9e53-3f6b2a8d7c20 2
to_vmdk "$WORK/two0.raw" "$d/TwoDisks.vmdk" lsilogic
rm -f -- "$WORK/two0.raw"
half=$((S / 2))
truncate -s "$half" "$WORK/two1.raw"
qio -f raw -c "write -P 0x51 0 1M" -c "write -P 0x52 $((half / 2)) 1M" \
    -c "write -P 0x53 $((half - MiB)) 1M" "$WORK/two1.raw"
to_vmdk "$WORK/two1.raw" "$d/TwoDisks_1.vmdk" ide
rm -f -- "$WORK/two1.raw"
set_cid "$d/TwoDisks.vmdk" "$(cid_of TwoDisks.vmdk)"
set_cid "$d/TwoDisks_1.vmdk" "$(cid_of TwoDisks_1.vmdk)"
write_vmx "$d" TwoDisks 1024 1 <<'EOF'
scsi0.virtualDev = "lsilogic"
scsi0.present = "TRUE"
scsi0:0.fileName = "TwoDisks.vmdk"
scsi0:0.present = "TRUE"
sata0.present = "TRUE"
sata0:0.deviceType = "cdrom-raw"
sata0:0.fileName = "auto detect"
sata0:0.autodetect = "TRUE"
sata0:0.present = "TRUE"
sata0:0.startConnected = "FALSE"
sata0:1.fileName = "TwoDisks_1.vmdk"
sata0:1.present = "TRUE"
scsi0:0.redo = ""
sata0:1.redo = ""
EOF
summary TwoDisks "scsi0:0 TwoDisks.vmdk ${SIZE_MIB} MiB (MBR+ext4, hostname twodisks), sata0:1 TwoDisks_1.vmdk $((SIZE_MIB / 2)) MiB (patterns), both monolithicSparse; $(kib_used "$d"/*.vmdk) KiB used"

# ---------------------------------------------------------------- Chain

d="$LIBRARY/Chain"
mkdir "$d"
truncate -s "$S" "$WORK/chain.raw"
qio -f raw -c "write -P 0x11 0 1M" -c "write -P 0x12 4M 2M" \
    -c "write -P 0x13 $((S - MiB)) 1M" "$WORK/chain.raw"
to_vmdk "$WORK/chain.raw" "$d/Chain.vmdk" lsilogic
rm -f -- "$WORK/chain.raw"
# Run from inside the folder so the parentFileNameHint is the bare name:
# qemu-img writes the -b string verbatim.
(cd "$d" && qemu-img create -q -f vmdk -o subformat=monolithicSparse,adapter_type=lsilogic,hwversion=19 \
    -b Chain.vmdk -F vmdk Chain-000001.vmdk)
qio -c "write -P 0x21 512k 1M" -c "write -P 0x22 $((5 * MiB + 4096)) 4k" \
    -c "write -P 0x23 8M 1M" "$d/Chain-000001.vmdk"
(cd "$d" && qemu-img create -q -f vmdk -o subformat=monolithicSparse,adapter_type=lsilogic,hwversion=19 \
    -b Chain-000001.vmdk -F vmdk Chain-000002.vmdk)
qio -c "write -P 0x31 768k 64k" -c "write -P 0x00 4M 64k" \
    -c "write -P 0x32 $((S - 65536)) 64k" -c "write -P 0x33 $((10 * MiB + 512)) 1k" \
    "$d/Chain-000002.vmdk"
for f in Chain.vmdk Chain-000001.vmdk Chain-000002.vmdk; do
    grep -aq '^parentFileNameHint="/' "$d/$f" && die "$f: absolute parentFileNameHint"
done
set_cid "$d/Chain.vmdk" "$(cid_of Chain.vmdk)"
set_cid "$d/Chain-000001.vmdk" "$(cid_of Chain-000001.vmdk)" "$(cid_of Chain.vmdk)"
set_cid "$d/Chain-000002.vmdk" "$(cid_of Chain-000002.vmdk)" "$(cid_of Chain-000001.vmdk)"

# VMware keeps create times as microseconds since 1970 split into two
# 32-bit halves, the low one signed.
vmsd_time() { # SECONDS -> "HIGH LOW"
    local us=$(( $1 * 1000000 )) lo
    lo=$(( us & 0xffffffff )); (( lo < 2147483648 )) || lo=$(( lo - 4294967296 ))
    printf '%s %s\n' $(( us >> 32 )) "$lo"
}
read -r t1h t1l < <(vmsd_time $((EPOCH + 3600)))
read -r t2h t2l < <(vmsd_time $((EPOCH + 7200)))
cat >"$d/Chain.vmsd" <<EOF
.encoding = "UTF-8"
snapshot.lastUID = "2"
snapshot.current = "2"
snapshot0.uid = "1"
snapshot0.filename = "Chain-Snapshot1.vmsn"
snapshot0.displayName = "Base install"
snapshot0.description = ""
snapshot0.createTimeHigh = "$t1h"
snapshot0.createTimeLow = "$t1l"
snapshot0.numDisks = "1"
snapshot0.disk0.fileName = "Chain.vmdk"
snapshot0.disk0.node = "scsi0:0"
snapshot.numSnapshots = "2"
snapshot1.uid = "2"
snapshot1.filename = "Chain-Snapshot2.vmsn"
snapshot1.parent = "1"
snapshot1.displayName = "Configured"
snapshot1.description = "After first-boot configuration"
snapshot1.createTimeHigh = "$t2h"
snapshot1.createTimeLow = "$t2l"
snapshot1.numDisks = "1"
snapshot1.disk0.fileName = "Chain-000001.vmdk"
snapshot1.disk0.node = "scsi0:0"
snapshot.mru0.uid = "2"
snapshot.mru1.uid = "1"
EOF
write_vmx "$d" Chain 1024 1 <<'EOF'
scsi0.virtualDev = "lsilogic"
scsi0.present = "TRUE"
scsi0:0.fileName = "Chain-000002.vmdk"
scsi0:0.present = "TRUE"
scsi0:0.redo = ""
EOF
summary Chain "scsi0:0 Chain-000002.vmdk -> Chain-000001.vmdk -> Chain.vmdk, ${SIZE_MIB} MiB; snapshots 'Base install' (1), 'Configured' (2, current); $(kib_used "$d"/*.vmdk) KiB used"

# ---------------------------------------------------------------- Big

if (( BIG_GIB > 0 )); then
    d="$LIBRARY/Big"
    mkdir "$d"
    gen_data 7 $((BIG_GIB * 512 * MiB)) >"$WORK/big.raw"
    truncate -s "${BIG_GIB}G" "$WORK/big.raw"
    to_vmdk "$WORK/big.raw" "$d/Big.vmdk" lsilogic
    rm -f -- "$WORK/big.raw"
    set_cid "$d/Big.vmdk" "$(cid_of Big.vmdk)"
    write_vmx "$d" Big 2048 2 <<'EOF'
scsi0.virtualDev = "lsilogic"
scsi0.present = "TRUE"
scsi0:0.fileName = "Big.vmdk"
scsi0:0.present = "TRUE"
scsi0:0.redo = ""
EOF
    summary Big "scsi0:0 Big.vmdk monolithicSparse ${BIG_GIB} GiB, first $((BIG_GIB * 512)) MiB data (seed 7), rest sparse; $(kib_used "$d"/*.vmdk) KiB used"
fi

DONE=1
elapsed_ms=$(( ($(date +%s%N) - START_NS) / 1000000 ))
printf 'Made %s in %d.%03d s\n' "$LIBRARY" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
