#!/bin/bash
# Durability: once fsync on a clone's flat disk returns, its bytes survive
# kill -9 of the daemon; a store left by a crash is one qemu-img check
# accepts and reads as the model says; writes without fsync reach the store
# through the background sync within seconds; and killing the daemon at
# random moments under a running writer never loses an fsynced byte, never
# tears anything outside what was being written, and never leaves a store
# that fails to open or read.
#
# Oracles: a model file changed the same way as the disk; qemu-img's reading
# of the store with no vmclonefs running; for the random kills, a log the
# writer keeps of what it started and what fsync confirmed.
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

G=65536
make_library --size 16
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
cp "$T/parent.raw" "$T/model.raw"
SIZE=$(stat -c %s "$T/parent.raw")
STORE=$LIB/.vmclonefs/clones/web1/web1.vmdk
FLAT=$MNT/clones/Ubuntu/web1/web1-flat.vmdk

# Like write_both, but the disk's copy goes through dd conv=fsync: when dd
# returns, fsync has returned.
write_fsynced() {
    local off=$1 len=$2
    head -c "$len" /dev/urandom >"$T/chunk"
    dd if="$T/chunk" of="$FLAT" bs=64K seek="$off" oflag=seek_bytes conv=notrunc,fsync status=none \
        || fail "dd conv=fsync of $len bytes at $off into the clone"
    dd if="$T/chunk" of="$T/model.raw" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# UBSan reports and carries on; a killed daemon never reaches unmount_lib's check.
check_sanitizer() {
    if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$DAEMON_ERR"; then
        cat "$DAEMON_ERR" >&2
        fail "sanitizer report from the daemon"
    fi
}

# Kills the daemon and checks the store with no vmclonefs running: qemu-img
# check accepts it and qemu-img's reading of it goes to $T/store.raw.
crash_and_check_store() {
    local what=$1 pid=$DAEMON_PID
    crash_daemon
    check_sanitizer
    ! kill -0 "$pid" 2>/dev/null || fail "$what: the daemon survived kill -9"
    ! mountpoint -q "$MNT" || fail "$what: the mount is still there"
    qemu-img check -q "$STORE" >"$T/check.out" 2>&1 \
        || fail "$what: qemu-img check rejects the store after kill -9: $(cat "$T/check.out")"
    raw_of "$STORE" "$T/store.raw" || fail "$what: qemu-img cannot read the store"
}

mount_lib
mkdir "$MNT/clones/Ubuntu/web1" || fail "mkdir of a linked clone"
same_bytes "$FLAT" "$T/model.raw" "a new clone reads as its parent"

# ---- 1. fsync, then kill -9 at once -------------------------------------
# Unaligned, grain-aligned, grain-crossing, rewrites of stored grains (in
# place) and new grains (appended), the first and the last bytes.
write_fsynced 0 512
write_fsynced $((3 * G)) $G
write_fsynced $((5 * G - 100)) 300
write_fsynced $((20 * G + 777)) 200000
write_fsynced $((3 * G + 4096)) 1000          # rewrites a stored grain in place
write_fsynced $((20 * G + 5000)) 70000        # again, across two stored grains
write_fsynced $((SIZE - 3000)) 3000
write_fsynced $((100 * G)) $((4 * G))
for _ in $(seq 6); do
    len=$(( (RANDOM * 32768 + RANDOM) % 150000 + 1 ))
    off=$(( (RANDOM * 32768 + RANDOM) % (SIZE - len) ))
    write_fsynced "$off" "$len"
done
crash_and_check_store "fsync then kill -9"
same_bytes "$T/store.raw" "$T/model.raw" "qemu-img's reading of the store after fsync and kill -9"

mount_lib
same_bytes "$FLAT" "$T/model.raw" "the clone after fsync, kill -9 and remount"
grep -q "web1" "$LOG" || fail "log says nothing about web1"
note "fsynced writes survive kill -9; qemu-img check accepts the store"

# ---- 2. no fsync: the background sync makes it durable within ~5 s -------
# New grains (their table entries live in memory until a sync) and a stored
# grain rewritten in place.
write_both $((150 * G + 10)) 100000 "$FLAT" "$T/model.raw"
write_both $((180 * G)) $((2 * G)) "$FLAT" "$T/model.raw"
write_both $((3 * G + 9000)) 5000 "$FLAT" "$T/model.raw"
sleep 7
crash_and_check_store "write, no fsync, sleep 7, kill -9"
same_bytes "$T/store.raw" "$T/model.raw" "qemu-img's reading of the store 7 s after writes without fsync"
mount_lib
same_bytes "$FLAT" "$T/model.raw" "the clone 7 s after writes without fsync, kill -9 and remount"
note "writes without fsync are on disk 7 s later (background sync)"

# ---- 3. kill -9 at random moments under a running writer -------------------
# The writer mixes writes it fsyncs (zone F, unaligned, random lengths) with
# whole-grain writes it never syncs (zone W, each grain filled with a tag
# naming the write and the grain). It logs "S seq off len" before an fsynced
# write and "D seq" once fsync returned, "W seq grain" before the others.
cat >"$T/writer.py" <<'EOF'
import os, random, sys, time
flat, logpath, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
f0, f1, w0, w1 = (int(a) for a in sys.argv[4:8])
G = 65536
rnd = random.Random(seed)
log = open(logpath, "w", buffering=1)
fd = os.open(flat, os.O_RDWR)
log.write("O\n")

def pwrite_all(data, off):
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], off + done)

seq = seed * 1000000
deadline = time.monotonic() + 30
try:
    while time.monotonic() < deadline:
        seq += 1
        if rnd.random() < 0.3:
            n = rnd.randint(1, 150000)
            off = rnd.randint(f0, f1 - n)
            log.write(f"S {seq} {off} {n}\n")
            pwrite_all(random.Random(seq).randbytes(n), off)
            os.fsync(fd)
            log.write(f"D {seq}\n")
        else:
            g = rnd.randrange(w0 // G, w1 // G)
            log.write(f"W {seq} {g}\n")
            pwrite_all(b"%08d:%06d\n" % (seq % 10**8, g) * (G // 16), g * G)
except OSError as e:
    log.write(f"E {e.errno}\n")
EOF
# Checks qemu-img's reading of the store after the kill (GOT) against the
# state before the round (PRE) and the writer's log: every fsynced write is
# there; the write in flight, if any, left each 512-byte sector old or new;
# each sector of zone W is old or one of the tags written to its grain;
# everything else is as it was.
cat >"$T/check.py" <<'EOF'
import random, sys
pre, got, logpath = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), sys.argv[3]
w0, w1 = int(sys.argv[4]), int(sys.argv[5])
G, SEC = 65536, 512
exp = bytearray(pre)
started, done, tags, errors = {}, set(), {}, []
for line in open(logpath):
    f = line.split()
    if f[0] == "S":
        started[int(f[1])] = (int(f[2]), int(f[3]))
    elif f[0] == "D":
        done.add(int(f[1]))
    elif f[0] == "W":
        tags.setdefault(int(f[2]), set()).add(b"%08d:%06d\n" % (int(f[1]) % 10**8, int(f[2])) * (SEC // 16))
alt = {}   # sector -> the other content it may have
for seq, (off, n) in started.items():   # in log order
    data = random.Random(seq).randbytes(n)
    if seq in done:
        exp[off:off + n] = data
    else:
        new = bytearray(exp)
        new[off:off + n] = data
        for s in range(off // SEC, (off + n - 1) // SEC + 1):
            alt[s] = bytes(new[s * SEC:(s + 1) * SEC])
if len(got) != len(exp):
    errors.append(f"size {len(got)}, expected {len(exp)}")
for g in range(len(exp) // G):
    a, b = g * G, (g + 1) * G
    if got[a:b] == exp[a:b]:
        continue
    for s in range(a // SEC, b // SEC):
        have = got[s * SEC:(s + 1) * SEC]
        if have == exp[s * SEC:(s + 1) * SEC] or have == alt.get(s):
            continue
        if w0 <= s * SEC < w1 and have in tags.get(g, ()):
            continue
        errors.append(f"disk offset {s * SEC}: {have[:16]!r}..., expected {bytes(exp[s * SEC:s * SEC + 16])!r}...")
        break
print(f"{len(done)} fsynced writes, {len(started) - len(done)} in flight, "
      f"{sum(1 for _ in open(logpath) if _.startswith('W'))} unsynced grain writes")
for e in errors[:5]:
    print("mismatch at", e)
sys.exit(1 if errors else 0)
EOF

F0=$((4 * 1024 * 1024)); F1=$((8 * 1024 * 1024))
W0=$((8 * 1024 * 1024)); W1=$((16 * 1024 * 1024 - 2 * G))
total_fsynced=0
for round in 1 2 3 4 5; do
    cp "$T/model.raw" "$T/pre.raw"
    rm -f "$T/writer.log"
    python3 "$T/writer.py" "$FLAT" "$T/writer.log" "$round" $F0 $F1 $W0 $W1 2>"$T/writer.err" &
    wpid=$!
    # Let it get going (opened the disk, started two writes), then kill at
    # a random moment up to 1.6 s later.
    for _ in $(seq 250); do
        [ -f "$T/writer.log" ] && [ "$(wc -l <"$T/writer.log")" -ge 3 ] && break
        sleep 0.02
    done
    sleep "$(( RANDOM % 16 / 10 )).$(( RANDOM % 10 ))"
    kill -0 "$wpid" 2>/dev/null || fail "round $round: the writer stopped before the kill: $(cat "$T/writer.err" "$T/writer.log" | tail -5)"
    crash_and_check_store "round $round: kill -9 under a writer"
    wait "$wpid" || fail "round $round: the writer failed: $(cat "$T/writer.err")"
    grep -q '^E ' "$T/writer.log" || fail "round $round: the writer saw no error from the dead mount"
    python3 "$T/check.py" "$T/pre.raw" "$T/store.raw" "$T/writer.log" $W0 $W1 >"$T/check.out" \
        || fail "round $round: the store after kill -9 is not what was written: $(cat "$T/check.out")"
    note "round $round: $(head -1 "$T/check.out")"
    total_fsynced=$(( total_fsynced + $(grep -c '^D ' "$T/writer.log" || true) ))
    # Remount: every byte reads (no EIO from checksums re-derived after the
    # crash) and the mount agrees with qemu-img's reading of the store.
    mount_lib
    cat "$FLAT" >"$T/mounted.raw" || fail "round $round: reading the clone after kill -9 and remount failed"
    same_bytes "$T/mounted.raw" "$T/store.raw" "round $round: the mount and qemu-img after kill -9"
    cp "$T/store.raw" "$T/model.raw"
done
[ "$total_fsynced" -gt 0 ] || fail "no fsync completed in any round: the test proved nothing"

unmount_lib
qemu-img check -q "$STORE" || fail "qemu-img check after a clean unmount"
raw_of "$STORE" "$T/store.raw"
same_bytes "$T/store.raw" "$T/model.raw" "qemu-img's reading after the last clean unmount"
note "kill -9 under a writer: $total_fsynced fsynced writes all kept, stores always valid"
