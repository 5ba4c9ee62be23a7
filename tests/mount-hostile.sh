#!/bin/bash
# Bad input loses nothing and crashes nothing. Beside the sample VMs the
# library holds VMs made broken on purpose: .vmx files that are binary
# junk, have a line without '=', an unterminated quote, a NUL, invalid
# UTF-8, a huge line; disk keys that name a missing file, a FIFO, a folder,
# /etc/passwd, a path or symlink out of the library; .vmsd files that are
# junk, list missing or escaping disks, absurd disk counts, loops,
# duplicate names; VMDKs that are empty, cut short, have impossible header
# fields or grain tables, descriptors with nonsense extents or extents out
# of the folder, parent hints out of the library or looping.
#
# Through all of it: the daemon mounts, stays up and exits cleanly;
# ls and ls -l of the mount and of clones/ work; the good VMs still clone
# and read what qemu-img says they hold, before, after and across a
# remount. A clone of a broken source is either refused with EINVAL, ENOENT
# or EIO, a log line naming the bad file, no store left and the VM's folder
# byte for byte as it was; or, where the input still describes a disk, made
# and read as qemu-img reads that disk (EIO where its data is gone, never
# other bytes), the VM's .vmx and .vmsd keeping every line they had.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

G=65536
make_library --size 16
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/ubuntu.raw"
raw_of "$LIB/Chain/Chain-000002.vmdk" "$T/chain.raw"
raw_of "$LIB/Chain/Chain.vmdk" "$T/chain-base.raw"
raw_of "$LIB/Chain/Chain-000001.vmdk" "$T/chain-conf.raw"
raw_of "$LIB/TwoDisks/TwoDisks.vmdk" "$T/two0.raw"
raw_of "$LIB/TwoDisks/TwoDisks_1.vmdk" "$T/two1.raw"
OUT=$T/outside      # disks outside the library, that paths point at
mkdir "$OUT"
(cd "$OUT" && qemu-img create -q -f vmdk -o subformat=monolithicFlat Out.vmdk 16M)
head -c 65536 /dev/urandom | dd of="$OUT/Out-flat.vmdk" conv=notrunc status=none
cp "$LIB/Chain/Chain.vmdk" "$OUT/Chain.vmdk"

# ---- making broken VMs

# A copy of VM FROM named NEW (its .vmx and .vmsd renamed; the disks keep
# their names, which the VMDKs' parent hints use).
vm_copy() { # NEW FROM
    cp -a "$LIB/$2" "$LIB/$1"
    mv "$LIB/$1/$2.vmx" "$LIB/$1/$1.vmx"
    mv "$LIB/$1/$2.vmsd" "$LIB/$1/$1.vmsd"
}
set_vmx() { # VM KEY VALUE: set a key in the VM's .vmx (raw text, no quoting)
    local k=${2//./\\.}
    sed -i "s|^$k = .*|$2 = $3|" "$LIB/$1/$1.vmx"
    grep -qF "$2 = $3" "$LIB/$1/$1.vmx" || fail "set_vmx $1 $2"
}
set_vmsd() { # VM KEY VALUE
    local k=${2//./\\.}
    sed -i "s|^$k = .*|$2 = $3|" "$LIB/$1/$1.vmsd"
    grep -qF "$2 = $3" "$LIB/$1/$1.vmsd" || fail "set_vmsd $1 $2"
}
# Writes VALUE (perl pack TEMPLATE) at OFFSET of the VM's Ubuntu.vmdk.
poke() { # VM OFFSET TEMPLATE VALUE
    perl -e 'open(my $fh, "+<:raw", $ARGV[0]) or die "$ARGV[0]: $!\n";
        sysseek($fh, $ARGV[1], 0) or die; syswrite($fh, pack($ARGV[2], $ARGV[3])) or die "$!\n";
        close($fh) or die "$!\n";' "$LIB/$1/Ubuntu.vmdk" "$2" "$3" "$4" || fail "poke $1"
}
# Sets the grain table entry of grain 0 (both copies) in the VM's Ubuntu.vmdk;
# with "gd", sets the first grain directory entry instead.
poke_table() { # VM gd|gt SECTOR
    perl -e '
        my ($file, $what, $sector) = @ARGV;
        open(my $fh, "+<:raw", $file) or die "$file: $!\n";
        sysread($fh, my $h, 512) == 512 or die;
        my ($rgd, $gd) = unpack("Q< Q<", substr($h, 48, 16));
        for my $d (grep { $_ } $gd, $rgd) {
            my $at = $d * 512;
            if ($what eq "gt") {
                sysseek($fh, $at, 0) or die; sysread($fh, my $e, 4) == 4 or die;
                $at = unpack("V", $e) * 512 or die "no grain table\n";
            }
            sysseek($fh, $at, 0) or die; syswrite($fh, pack("V", $sector)) == 4 or die;
        }
        close($fh) or die;' "$LIB/$1/Ubuntu.vmdk" "$2" "$3" || fail "poke_table $1"
}
# Sets parentFileNameHint in a sparse VMDK's embedded descriptor, in place.
set_hint() { # FILE HINT
    perl -e '
        my ($file, $hint) = @ARGV;
        open(my $fh, "+<:raw", $file) or die "$file: $!\n";
        sysread($fh, my $h, 512) == 512 or die;
        my ($doff, $dsize) = unpack("Q< Q<", substr($h, 28, 16));
        sysseek($fh, $doff * 512, 0) or die;
        sysread($fh, my $d, $dsize * 512) == $dsize * 512 or die;
        my $len = length($d);
        $d =~ s/\0.*//s;
        $d =~ s/^parentFileNameHint="[^"]*"$/parentFileNameHint="$hint"/m or die "$file: no hint\n";
        length($d) < $len or die "$file: hint too long\n";
        sysseek($fh, $doff * 512, 0) or die;
        syswrite($fh, $d . "\0" x ($len - length($d))) == $len or die;
        close($fh) or die;' "$1" "$2" || fail "set_hint $1"
    grep -aqF "parentFileNameHint=\"$2\"" "$1" || fail "set_hint $1: not there"
}
# A copy of Ubuntu whose disk is a monolithicFlat Flat.vmdk made by qemu-img,
# with data at the start; the descriptor can then be broken with sed.
flat_vm() { # NEW
    vm_copy "$1" Ubuntu
    rm "$LIB/$1/Ubuntu.vmdk"
    (cd "$LIB/$1" && qemu-img create -q -f vmdk -o subformat=monolithicFlat Flat.vmdk 16M)
    head -c 200000 /dev/urandom | dd of="$LIB/$1/Flat-flat.vmdk" conv=notrunc status=none
    set_vmx "$1" scsi0:0.fileName '"Flat.vmdk"'
}

# .vmx
vm_copy VmxJunk Ubuntu;      head -c 8192 /dev/urandom >"$LIB/VmxJunk/VmxJunk.vmx"
vm_copy VmxEmpty Ubuntu;     : >"$LIB/VmxEmpty/VmxEmpty.vmx"
vm_copy VmxNoEq Ubuntu;      sed -i 's/^memsize = .*/this line has no equals sign/' "$LIB/VmxNoEq/VmxNoEq.vmx"
vm_copy VmxQuote Ubuntu;     set_vmx VmxQuote scsi0:0.fileName '"Ubuntu.vmdk'
vm_copy VmxNul Ubuntu;       printf 'annotation = "a\0b"\n' >>"$LIB/VmxNul/VmxNul.vmx"
vm_copy VmxLatin1 Ubuntu;    printf 'annotation = "caf\xe9"\n' >>"$LIB/VmxLatin1/VmxLatin1.vmx"
vm_copy VmxHugeNoNl Ubuntu;  head -c $((8 * 1024 * 1024)) /dev/zero | tr '\0' A >>"$LIB/VmxHugeNoNl/VmxHugeNoNl.vmx"
vm_copy VmxHuge Ubuntu       # a huge line that is well formed
{ printf 'annotation = "'; head -c $((8 * 1024 * 1024)) /dev/zero | tr '\0' A; printf '"\n'; } >>"$LIB/VmxHuge/VmxHuge.vmx"
vm_copy VmxCRLF Ubuntu;      sed -i 's/$/\r/' "$LIB/VmxCRLF/VmxCRLF.vmx"
vm_copy VmxMissing Ubuntu;   set_vmx VmxMissing scsi0:0.fileName '"nothere.vmdk"'
vm_copy VmxDup Ubuntu;       echo 'scsi0:0.fileName = "other.vmdk"' >>"$LIB/VmxDup/VmxDup.vmx"
vm_copy VmxDotdot Ubuntu;    set_vmx VmxDotdot scsi0:0.fileName '"../../../../../../../../etc/passwd"'
vm_copy VmxAbs Ubuntu;       set_vmx VmxAbs scsi0:0.fileName '"/etc/passwd"'
vm_copy VmxAbsVmdk Ubuntu;   set_vmx VmxAbsVmdk scsi0:0.fileName "\"$OUT/Out.vmdk\""
vm_copy VmxDotdotVmdk Ubuntu; set_vmx VmxDotdotVmdk scsi0:0.fileName '"../../outside/Out.vmdk"'
vm_copy VmxLinkOut Ubuntu;   ln -s "$OUT/Out.vmdk" "$LIB/VmxLinkOut/link.vmdk"; set_vmx VmxLinkOut scsi0:0.fileName '"link.vmdk"'
vm_copy VmxLinkDev Ubuntu;   ln -s /dev/zero "$LIB/VmxLinkDev/zero.vmdk"; set_vmx VmxLinkDev scsi0:0.fileName '"zero.vmdk"'
vm_copy VmxFifo Ubuntu;      mkfifo "$LIB/VmxFifo/fifo.vmdk"; set_vmx VmxFifo scsi0:0.fileName '"fifo.vmdk"'
vm_copy VmxDir Ubuntu;       mkdir "$LIB/VmxDir/dir.vmdk"; set_vmx VmxDir scsi0:0.fileName '"dir.vmdk"'
# .vmsd
vm_copy VmsdJunk Chain;      head -c 4096 /dev/urandom >"$LIB/VmsdJunk/VmsdJunk.vmsd"
vm_copy VmsdMissing Chain;   set_vmsd VmsdMissing snapshot0.disk0.fileName '"gone.vmdk"'
vm_copy VmsdEscape Chain;    set_vmsd VmsdEscape snapshot0.disk0.fileName '"../../../../../../etc/passwd"'
vm_copy VmsdNumDisks Chain;  set_vmsd VmsdNumDisks snapshot0.numDisks '"4294967297"'
vm_copy VmsdNegDisks Chain;  set_vmsd VmsdNegDisks snapshot1.numDisks '"-1"'
vm_copy VmsdNoDisk Chain;    sed -i '/^snapshot1\.disk0/d' "$LIB/VmsdNoDisk/VmsdNoDisk.vmsd"
vm_copy VmsdDupName Chain;   set_vmsd VmsdDupName snapshot1.displayName '"Base install"'
vm_copy VmsdLoop Chain;      set_vmsd VmsdLoop snapshot1.parent '"2"'
vm_copy VmsdBadParent Chain; set_vmsd VmsdBadParent snapshot1.parent '"77"'
vm_copy VmsdNumSnaps Chain;  set_vmsd VmsdNumSnaps snapshot.numSnapshots '"2147483647"'
# sparse VMDKs (the VM's Ubuntu.vmdk)
vm_copy DiskZero Ubuntu;     : >"$LIB/DiskZero/Ubuntu.vmdk"
vm_copy DiskHeaderCut Ubuntu; truncate -s 300 "$LIB/DiskHeaderCut/Ubuntu.vmdk"
vm_copy DiskJunk Ubuntu;     head -c 512 /dev/urandom | dd of="$LIB/DiskJunk/Ubuntu.vmdk" conv=notrunc status=none
vm_copy DiskGrain0 Ubuntu;   poke DiskGrain0 20 'Q<' 0                  # grainSize
vm_copy DiskGrain3 Ubuntu;   poke DiskGrain3 20 'Q<' 3
vm_copy DiskGrainHuge Ubuntu; poke DiskGrainHuge 20 'Q<' $((1 << 40))
vm_copy DiskCap0 Ubuntu;     poke DiskCap0 12 'Q<' 0                    # capacity
vm_copy DiskCapHuge Ubuntu;  poke DiskCapHuge 12 'Q<' $((1 << 62))
vm_copy DiskGte0 Ubuntu;     poke DiskGte0 44 'V' 0                     # numGTEsPerGT
vm_copy DiskGteHuge Ubuntu;  poke DiskGteHuge 44 'V' 4294967295
vm_copy DiskGdFar Ubuntu;    poke DiskGdFar 56 'Q<' $((1 << 40)); poke DiskGdFar 48 'Q<' $((1 << 40))
vm_copy DiskDescHuge Ubuntu; poke DiskDescHuge 36 'Q<' $((1 << 50))
vm_copy DiskDescFar Ubuntu;  poke DiskDescFar 28 'Q<' $((1 << 50))
vm_copy DiskCut Ubuntu;      truncate -s 70000 "$LIB/DiskCut/Ubuntu.vmdk" # tables kept, data gone
vm_copy DiskGtFar Ubuntu;    poke_table DiskGtFar gt $((0xfffffff0))   # grain 0 past the end
vm_copy DiskGdEntryFar Ubuntu; poke_table DiskGdEntryFar gd $((0xfffffff0))
vm_copy DiskGtHeader Ubuntu; poke_table DiskGtHeader gt 1              # grain 0 over the header
# descriptors
flat_vm ExtGood
flat_vm ExtEscape;  sed -i 's|"Flat-flat.vmdk"|"../../outside/Out-flat.vmdk"|' "$LIB/ExtEscape/Flat.vmdk"
flat_vm ExtAbs;     sed -i 's|"Flat-flat.vmdk"|"/etc/passwd"|' "$LIB/ExtAbs/Flat.vmdk"
flat_vm ExtAbsOut;  sed -i "s|\"Flat-flat.vmdk\"|\"$OUT/Out-flat.vmdk\"|" "$LIB/ExtAbsOut/Flat.vmdk"
flat_vm ExtSelf;    sed -i 's|"Flat-flat.vmdk"|"Flat.vmdk"|' "$LIB/ExtSelf/Flat.vmdk"
flat_vm ExtHuge;    sed -i 's|^RW 32768 FLAT|RW 99999999999999999999 FLAT|' "$LIB/ExtHuge/Flat.vmdk"
flat_vm ExtType;    sed -i 's|^RW 32768 FLAT|RW 32768 BOGUS|' "$LIB/ExtType/Flat.vmdk"
flat_vm ExtNeg;     sed -i 's|^RW 32768 FLAT "Flat-flat.vmdk" 0|RW -5 FLAT "Flat-flat.vmdk" -7|' "$LIB/ExtNeg/Flat.vmdk"
flat_vm ExtNone;    sed -i '/^RW /d' "$LIB/ExtNone/Flat.vmdk"
flat_vm ExtShort;   raw_of "$LIB/ExtShort/Flat.vmdk" "$T/extshort.raw"
truncate -s 1M "$LIB/ExtShort/Flat-flat.vmdk"   # the extent's last 15 MiB are gone
flat_vm ExtMany;    perl -i -pe 'if (/^RW /) { $_ .= qq{RW 8 FLAT "Flat-flat.vmdk" 0\n} x 3000 }' "$LIB/ExtMany/Flat.vmdk"
# A FLAT extent that starts 2048 sectors (1 MiB) into its file; the bytes
# before it are other data.
flat_vm ExtOffset;  sed -i 's|^RW 32768 FLAT "Flat-flat.vmdk" 0|RW 32768 FLAT "Flat-flat.vmdk" 2048|' "$LIB/ExtOffset/Flat.vmdk"
truncate -s 17M "$LIB/ExtOffset/Flat-flat.vmdk"
head -c 300000 /dev/urandom | dd of="$LIB/ExtOffset/Flat-flat.vmdk" bs=1M seek=1 conv=notrunc status=none
# parent hints (Chain's middle link, the current state's parent and the
# "Configured" snapshot's disk)
vm_copy HintOut Chain;       set_hint "$LIB/HintOut/Chain-000001.vmdk" "$OUT/Chain.vmdk"
vm_copy HintDotdot Chain;    set_hint "$LIB/HintDotdot/Chain-000001.vmdk" "../../outside/Chain.vmdk"
vm_copy HintSelf Chain;      set_hint "$LIB/HintSelf/Chain-000001.vmdk" "Chain-000001.vmdk"
vm_copy HintLoop Chain;      set_hint "$LIB/HintLoop/Chain-000001.vmdk" "Chain-000002.vmdk"
vm_copy HintMissing Chain;   set_hint "$LIB/HintMissing/Chain-000001.vmdk" "nothere.vmdk"

raw_of "$LIB/ExtMany/Flat.vmdk" "$T/extmany.raw"
raw_of "$LIB/ExtOffset/Flat.vmdk" "$T/extoffset.raw"
cmp -s -n 300000 "$T/extoffset.raw" <(tail -c +$((1024 * 1024 + 1)) "$LIB/ExtOffset/Flat-flat.vmdk") ||
    fail "qemu-img does not read ExtOffset's extent from 1 MiB into its file"
raw_of "$LIB/DiskGtHeader/Ubuntu.vmdk" "$T/gtheader.raw"
raw_of "$LIB/ExtGood/Flat.vmdk" "$T/extgood.raw"
cmp -s -n "$G" "$T/gtheader.raw" "$T/ubuntu.raw" && fail "DiskGtHeader: grain 0 still reads as before"

BAD_VMS=$(cd "$LIB" && ls -d Vmx* Vmsd* Disk* Ext* Hint*)
declare -A INITIAL CHANGED
CHANGED[ExtGood]=1   # good_clones clones its current state
for vm in $BAD_VMS; do INITIAL[$vm]=$(tree_state "$LIB/$vm"); done
outside_before=$(tree_state "$OUT")
passwd_before=$(sha256sum </etc/passwd)

# ---- helpers for the checks

# The grains of the raw image FILE (a sparse VMDK, no parent) whose data
# qemu-img map puts at or past byte CUT of the file, even in part.
lost_grains() { # FILE CUT
    qemu-img map --output=json "$1" | perl -MJSON::PP -e '
        my ($cut, $G) = @ARGV; local $/; my @lost;
        for my $e (@{decode_json(<STDIN>)}) {
            next unless $e->{data} && defined $e->{offset};
            for (my $v = $e->{start}; $v < $e->{start} + $e->{length}; $v += $G) {
                push @lost, $v / $G if $e->{offset} + $v - $e->{start} + $G > $cut;
            }
        }
        print join(" ", @lost);' "$2" "$G"
}

# Reads DISK grain by grain against MODEL: "GRAIN eio", "GRAIN wrong",
# "GRAIN err ERRNO" for each grain that does not read as the model's;
# "open ERRNO" if DISK does not open; "size N" if its size is not MODEL's.
scan() { # DISK MODEL
    perl -e '
        use strict; use warnings; use Errno qw(EIO);
        my ($disk, $model, $G) = @ARGV;
        open(my $m, "<:raw", $model) or die "$model: $!\n";
        my $fd;
        unless (open($fd, "<:raw", $disk)) { print "open ", $!+0, "\n"; exit 0; }
        my $size = -s $model;
        print "size ", -s $disk, "\n" if -s $disk != $size;
        for (my $g = 0; $g * $G < $size; $g++) {
            my $n = $size - $g * $G < $G ? $size - $g * $G : $G;
            sysseek($m, $g * $G, 0); sysread($m, my $want, $n) == $n or die "short model\n";
            sysseek($fd, $g * $G, 0) or die "seek: $!\n";
            my ($got, $err) = ("", 0);
            while (length($got) < $n) {
                my $r = sysread($fd, my $buf, $n - length($got));
                if (!defined $r) { $err = $! + 0; last; }
                last if $r == 0;
                $got .= $buf;
            }
            if ($err == EIO) { print "$g eio\n"; }
            elsif ($err) { print "$g err $err\n"; }
            elsif ($got ne $want) { print "$g wrong\n"; }
        }' "$1" "$2" "$G"
}

# DISK reads as MODEL, but for EIO: on the grains in MUST_EIO, and on any
# grain when MAY is "any". Never other bytes, never another error.
check_disk() { # WHAT DISK MODEL MUST_EIO MAY
    local what=$1 out g bad=
    out=$(timeout -s KILL 60 bash -c "$(declare -f scan); G=$G; scan \"\$1\" \"\$2\"" _ "$2" "$3") ||
        fail "$what: reading $2 failed or hung"
    grep -q '^open' <<<"$out" && fail "$what: $2 does not open (errno ${out#open })"
    grep -q '^size' <<<"$out" && fail "$what: $2 is $(grep '^size' <<<"$out" | cut -d' ' -f2) bytes, qemu-img says $(stat -c %s "$3")"
    if grep -q wrong <<<"$out"; then
        soft_fail "$what: WRONG BYTES in $(grep -c wrong <<<"$out") grain(s): $(grep wrong <<<"$out" | cut -d' ' -f1 | head -8 | tr '\n' ' ')..."
        return 0
    fi
    grep -q ' err ' <<<"$out" && fail "$what: errors other than EIO: $(grep ' err ' <<<"$out" | head -3 | tr '\n' ' ')"
    for g in $4; do
        grep -qx "$g eio" <<<"$out" || soft_fail "$what: grain $g read without an error; its data is gone"
    done
    if [ "$5" != any ]; then
        while read -r g _; do
            [ -n "$g" ] && [[ " $4 " != *" $g "* ]] && bad="$bad $g"
        done <<<"$out"
        [ -z "$bad" ] || soft_fail "$what: grain(s)$bad fail with EIO but hold good data"
    fi
}

alive() { kill -0 "$DAEMON_PID" 2>/dev/null || fail "$1: the daemon died: $(tail -20 "$DAEMON_ERR")"; }

# The mount, clones/ and every folder in them list, and every name listed
# can be looked up (ls -l): a listing shows only what exists.
listings_work() { # WHAT
    local err
    ls "$MNT" "$MNT/clones" >/dev/null || fail "$1: ls of the mount or of clones/"
    if ! err=$(ls -l "$MNT" "$MNT/clones" 2>&1 >/dev/null); then
        soft_fail "$1: ls -l of clones/ fails: $(grep -c . <<<"$err") name(s) listed that do not look up: $(
            sed -n "s|^ls: cannot access '$MNT/||p" <<<"$err" | cut -d"'" -f1 | tr '\n' ' ')"
    fi
    for vm in $BAD_VMS; do
        ls -l "$MNT/$vm" >/dev/null || fail "$1: ls -l of the library folder $vm"
    done
    for f in VmxJunk/VmxJunk.vmx VmxHugeNoNl/VmxHugeNoNl.vmx VmsdJunk/VmsdJunk.vmsd DiskJunk/Ubuntu.vmdk; do
        cmp -s "$MNT/$f" "$LIB/$f" || fail "$1: $f reads otherwise through the mount"
    done
    alive "$1"
}

N=0
# refused SOURCE LOGSTR: mkdir of a clone of SOURCE fails with EINVAL,
# ENOENT or EIO, within 30 s; a log line since holds LOGSTR; SOURCE's VM
# folder is as it was and no store is left.
refused() {
    local src=$1 vm=${1%%@*} before out rc=0
    N=$((N + 1))
    before=$(tree_state "$LIB/$vm")
    log_mark
    out=$(timeout -s KILL 30 mkdir "$MNT/clones/$src/h$N" 2>&1) || rc=$?
    alive "mkdir clones/$src/h$N"
    [ $rc -ne 137 ] || fail "mkdir clones/$src/h$N hung"
    if [ $rc -eq 0 ]; then
        fail "mkdir clones/$src/h$N succeeded: a clone of a broken source"
    fi
    [[ $out == *"Invalid argument"* || $out == *"No such file or directory"* || $out == *"Input/output error"* ]] ||
        fail "mkdir clones/$src/h$N: expected EINVAL, ENOENT or EIO, got: $out"
    expect_log "mkdir clones/$src (${out##*: })" "$2"
    same_tree "$before" "$LIB/$vm" "a refused clone of $src"
    [ ! -e "$LIB/.vmclonefs/clones/h$N" ] || fail "a refused clone of $src left its store"
    [ ! -e "$MNT/clones/$src/h$N" ] || fail "a refused clone of $src shows in the mount"
}

# kept_lines OLD NEW WHAT IGNORE: every line of OLD (but those matching the
# regex IGNORE) is a line of NEW; line ends do not count.
kept_lines() {
    local lost
    lost=$(grep -vxF -f <(tr -d '\r' <"$2") <(tr -d '\r' <"$1") | grep -vE "$4" | head -c 300 || true)
    [ -z "$lost" ] || soft_fail "$3: lines lost: $lost"
}

# allowed SOURCE MODEL MUST_EIO MAY: a clone of SOURCE may be refused (as
# in refused, the log naming the VM) or made; made, it reads as MODEL
# (check_disk), and a clone of the current state kept every line of the
# VM's .vmx and .vmsd but the ones a snapshot changes.
allowed() {
    local src=$1 vm=${1%%@*} out rc=0 d before
    N=$((N + 1))
    cp "$LIB/$vm/$vm.vmx" "$T/old.vmx"
    cp "$LIB/$vm/$vm.vmsd" "$T/old.vmsd"
    before=$(tree_state "$LIB/$vm")
    log_mark
    out=$(timeout -s KILL 30 mkdir "$MNT/clones/$src/h$N" 2>&1) || rc=$?
    alive "mkdir clones/$src/h$N"
    [ $rc -ne 137 ] || fail "mkdir clones/$src/h$N hung"
    if [ $rc -ne 0 ]; then
        note "clones/$src refused: ${out##*: }"
        [[ $out == *"Invalid argument"* || $out == *"No such file or directory"* || $out == *"Input/output error"* ]] ||
            fail "mkdir clones/$src/h$N: expected success, EINVAL, ENOENT or EIO, got: $out"
        expect_log "mkdir clones/$src" "$vm"
        same_tree "$before" "$LIB/$vm" "a refused clone of $src"
        return 0
    fi
    d=$MNT/clones/$src/h$N/h$N-flat.vmdk
    check_disk "clone of $src" "$d" "$2" "$3" "$4"
    if [ "$src" = "$vm" ]; then
        CHANGED[$vm]=1
        kept_lines "$T/old.vmx" "$LIB/$vm/$vm.vmx" "$vm.vmx after a clone" '^scsi0:0\.fileName = '
        kept_lines "$T/old.vmsd" "$LIB/$vm/$vm.vmsd" "$vm.vmsd after a clone" \
            '^snapshot\.(lastUID|current|numSnapshots) = '
    fi
}

# The sample VMs clone and read what qemu-img says.
good_clones() { # ROUND
    local r=$1 C=$MNT/clones
    mkdir "$C/Ubuntu/u$r" "$C/Chain/c$r" "$C/Chain@Configured/s$r" "$C/TwoDisks/t$r" "$C/ExtGood/e$r" ||
        fail "round $r: mkdir of clones of good VMs"
    check_good "$r"
}
check_good() { # ROUND
    local r=$1 C=$MNT/clones
    same_bytes "$C/Ubuntu/u$r/u$r-flat.vmdk" "$T/ubuntu.raw" "round $r: clone of Ubuntu"
    same_bytes "$C/Chain/c$r/c$r-flat.vmdk" "$T/chain.raw" "round $r: clone of Chain"
    same_bytes "$C/Chain@Configured/s$r/s$r-flat.vmdk" "$T/chain-conf.raw" "round $r: clone of Chain@Configured"
    same_bytes "$C/TwoDisks/t$r/t$r-flat.vmdk" "$T/two0.raw" "round $r: clone of TwoDisks, disk 0"
    same_bytes "$C/TwoDisks/t$r/t${r}_1-flat.vmdk" "$T/two1.raw" "round $r: clone of TwoDisks, disk 1"
    same_bytes "$C/ExtGood/e$r/e$r-flat.vmdk" "$T/extgood.raw" "round $r: clone of a monolithicFlat VM"
}

# ---- the mount
mount_lib
listings_work "first mount"
good_clones 1

# .vmx
refused VmxJunk VmxJunk/VmxJunk.vmx
refused VmxEmpty VmxEmpty/VmxEmpty.vmx
refused VmxNoEq VmxNoEq/VmxNoEq.vmx
refused VmxQuote VmxQuote/VmxQuote.vmx
refused VmxNul VmxNul/VmxNul.vmx
# A byte that is not UTF-8 in a line cloning does not need: the VM clones,
# the line is logged and kept as it is, in the VM's .vmx and the clone's.
allowed VmxLatin1 "$T/ubuntu.raw" "" none
[ -d "$MNT/clones/VmxLatin1/h$N" ] || fail "VmxLatin1 (a Latin-1 annotation) did not clone"
grep -q $'^annotation = "caf\xe9"' "$MNT/clones/VmxLatin1/h$N/h$N.vmx" ||
    fail "the clone of VmxLatin1 lost its annotation line"
expect_log "VmxLatin1's unreadable line" "VmxLatin1.vmx:" "annotation: text is not valid UTF-8"
refused VmxHugeNoNl VmxHugeNoNl/VmxHugeNoNl.vmx
refused VmxMissing nothere.vmdk
refused VmxDup VmxDup/      # the last key wins, as in VMware: other.vmdk
refused VmxDotdot VmxDotdot/
refused VmxAbs VmxAbs/
refused VmxAbsVmdk Out.vmdk
refused VmxDotdotVmdk Out.vmdk
refused VmxLinkOut link.vmdk
refused VmxLinkDev zero.vmdk
refused VmxFifo fifo.vmdk
refused VmxDir dir.vmdk
allowed VmxHuge "$T/ubuntu.raw" "" none
allowed VmxCRLF "$T/ubuntu.raw" "" none
# .vmsd
for s in VmsdJunk "VmsdJunk@Base install" "VmsdJunk@Configured"; do refused "$s" VmsdJunk.vmsd; done
for s in VmsdEscape "VmsdEscape@Base install"; do refused "$s" VmsdEscape/; done
refused "VmsdMissing@Base install" gone.vmdk
refused VmsdNumDisks VmsdNumDisks.vmsd
refused "VmsdNegDisks@Configured" VmsdNegDisks.vmsd
refused "VmsdNoDisk@Configured" VmsdNoDisk.vmsd
refused "VmsdDupName@Base install" VmsdDupName
allowed VmsdMissing "$T/chain.raw" "" none
allowed "VmsdMissing@Configured" "$T/chain-conf.raw" "" none
allowed "VmsdLoop@Base install" "$T/chain-base.raw" "" none
allowed "VmsdLoop@Configured" "$T/chain-conf.raw" "" none
allowed VmsdLoop "$T/chain.raw" "" none
allowed "VmsdBadParent@Configured" "$T/chain-conf.raw" "" none
allowed VmsdNumSnaps "$T/chain.raw" "" none
# VMDKs
for vm in DiskZero DiskHeaderCut DiskJunk DiskGrain0 DiskGrain3 DiskCap0 DiskCapHuge DiskGte0 \
    DiskGteHuge DiskGdFar DiskDescHuge DiskDescFar; do
    refused "$vm" "$vm/Ubuntu.vmdk"
done
allowed DiskCut "$T/ubuntu.raw" "$(lost_grains "$LIB/Ubuntu/Ubuntu.vmdk" 70000)" any
allowed DiskGtFar "$T/ubuntu.raw" "0" none
allowed DiskGdEntryFar "$T/ubuntu.raw" "$(lost_grains "$LIB/Ubuntu/Ubuntu.vmdk" 0)" any
allowed DiskGrainHuge "$T/ubuntu.raw" "" any
allowed DiskGtHeader "$T/gtheader.raw" "" none   # what the disk says, as qemu-img reads it
for vm in ExtEscape ExtAbs ExtAbsOut ExtSelf ExtHuge ExtType ExtNeg ExtNone; do
    refused "$vm" "$vm/Flat.vmdk"
done
allowed ExtShort "$T/extshort.raw" "$(seq -s ' ' 16 255)" none
allowed ExtMany "$T/extmany.raw" "" none
allowed ExtOffset "$T/extoffset.raw" "" none
for vm in HintOut HintDotdot HintSelf HintLoop HintMissing; do
    refused "$vm" "$vm/Chain-000001.vmdk"
    refused "$vm@Configured" "$vm/Chain-000001.vmdk"
    allowed "$vm@Base install" "$T/chain-base.raw" "" none
done

listings_work "after the broken clones"
check_good 1
good_clones 2

# ---- a remount scans the same library again
unmount_lib
log_mark
mount_lib
listings_work "remount"
check_good 1
check_good 2
good_clones 3
refused VmxJunk VmxJunk/VmxJunk.vmx
refused DiskJunk DiskJunk/Ubuntu.vmdk
unmount_lib

# Nothing outside the library changed; the VMs no clone was made of (by
# their current state) are as they were before the first mount.
same_tree "$outside_before" "$OUT" "the disks outside the library"
[ "$(sha256sum </etc/passwd)" = "$passwd_before" ] || fail "/etc/passwd changed"
for vm in $BAD_VMS; do
    [ -n "${CHANGED[$vm]:-}" ] || same_tree "${INITIAL[$vm]}" "$LIB/$vm" "broken VM $vm after two mounts"
done
# Every disk here that libvmdk opens reads through our layer stack exactly
# as through libvmdk and qemu-img, or fails with EIO where a file is cut or
# points outside itself (qemu-img reads zeros there): never other bytes.
# tests/layers-diff.sh does the same for the sample library and more
# layouts. A disk libvmdk refuses stays refused.
n_diffed=0
declare -A DIFFED   # VM folders copied unchanged from one another: once
while IFS= read -r -d '' disk; do
    key="$(find "$(dirname "$disk")" -maxdepth 1 -type f -name '*.vmdk' -print0 | sort -z \
           | xargs -0 cat | md5sum) $(basename "$disk")"
    [ -z "${DIFFED[$key]:-}" ] || continue
    DIFFED[$key]=1
    # Small disks only: some here claim terabytes.
    vsize=$(qemu-img info -U --output=json "$disk" 2>/dev/null | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p' | head -n 1 || true)
    [ -n "$vsize" ] && [ "$vsize" -le $((256 << 20)) ] || continue
    # Opened by libvmdk first: qemu-img follows a parent hint loop forever.
    "$top_builddir/tests/layer-diff" "$disk" "$LIB" - >/dev/null 2>&1 || continue
    timeout 60 qemu-img convert -U -f vmdk -O raw "$disk" "$T/diff.raw" 2>/dev/null || continue
    rc=0
    out=$("$top_builddir/tests/layer-diff" --reads 50 "$disk" "$LIB" "$T/diff.raw" 2>&1) || rc=$?
    rm -f "$T/diff.raw"
    [ $rc -eq 2 ] && continue   # libvmdk refuses it: so do we
    [ $rc -eq 0 ] || [ $rc -eq 3 ] || soft_fail "$disk: our layers, libvmdk and qemu-img differ: $out"
    n_diffed=$((n_diffed + 1))
done < <(find "$LIB" -path "$LIB/.vmclonefs" -prune -o -name '*.vmdk' -type f -size -100M -print0)
[ "$n_diffed" -ge 5 ] || fail "only $n_diffed hostile disks were compared"
note "$n_diffed disks libvmdk opens read the same through our layers, libvmdk and qemu-img"

finish_soft_fails
note "broken .vmx, .vmsd and VMDKs: refused with a reason or read right; nothing lost, no crash"
