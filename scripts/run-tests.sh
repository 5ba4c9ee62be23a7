#!/bin/bash
# Sets everything up and runs the whole test suite: installs the Debian
# packages, builds with warnings as errors, runs `make check`, then runs it
# again on a build with AddressSanitizer and UBSan, then `make distcheck`.
# Run as root (the mount tests mount FUSE file systems).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/install-deps.sh
[ -x configure ] || autoreconf -fi
jobs=$(nproc)

step() { printf '\n=== %s ===\n' "$*"; }

step "build and test (warnings are errors)"
mkdir -p build/plain
(cd build/plain && "$top/configure" --enable-werror -q && make -j"$jobs" -s && make -j"$jobs" check) || {
    cat build/plain/test-suite.log 2>/dev/null | tail -n 200; exit 1; }

step "build and test under AddressSanitizer and UBSan"
mkdir -p build/asan
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
(cd build/asan && "$top/configure" --enable-werror -q CFLAGS="-O1 -g $san" LDFLAGS="$san" \
    && make -j"$jobs" -s \
    && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
       make -j"$jobs" check) || { cat build/asan/test-suite.log 2>/dev/null | tail -n 200; exit 1; }

# In CI FUSE works, so a skipped test is a failure, not a pass.
count() { grep -h "^# $1:" build/plain/test-suite.log build/asan/test-suite.log | awk '{n += $3} END {print n + 0}'; }
passed=$(count PASS); failed=$(( $(count FAIL) + $(count ERROR) + $(count XPASS) )); skipped=$(count SKIP)
if [ "$skipped" -gt 0 ]; then
    echo "error: $skipped tests skipped; every test must run here" >&2
    grep -h "^SKIP:" build/*/tests/*.log build/*/test-suite.log 2>/dev/null | head
    exit 1
fi

step "make distcheck"
(cd build/plain && make -s distcheck DISTCHECK_CONFIGURE_FLAGS=--enable-werror) || exit 1

step "all tests passed"
echo "tests: $passed passed, $failed failed"
