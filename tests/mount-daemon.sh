#!/bin/bash
# The daemon as a process: --help lists each option once; files and folders
# made through the mount get the modes the caller's umask gives, whatever
# the daemon's own umask; SIGINT, SIGTERM and SIGHUP unmount and exit 0.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

# --help: every option once, -h and -V included.
"$VMCLONEFS" --help >"$T/help" 2>&1 || fail "--help exited non-zero"
for opt in -h --help -V --version; do
    n=$(grep -oE -- "(^|[[:space:],])$opt([[:space:],]|\$)" "$T/help" | wc -l)
    [ "$n" = 1 ] || soft_fail "--help lists $opt $n times"
done
# ...and still describes every option.
for opt in -d -f -s -o parent_handles= cache_timeout= log= clone_fd max_idle_threads \
    max_threads allow_other allow_root auto_unmount; do
    grep -qE -- "(^|[[:space:]])$opt" "$T/help" || fail "--help does not describe $opt"
done
grep -q "^vmclonefs [0-9]" <("$VMCLONEFS" --version) || fail "--version"
[ "$SOFT_FAILS" = 0 ] || cat "$T/help" >&2

make_library
mkdir "$T/real"
# mode_of UMASK CMD PATH-IN-FOLDER: the mode CMD makes under that umask.
mode_of() { (umask "$1" && "$2" "$3") && stat -c %a "$3"; }
# A strict daemon umask must not mask a second time what the caller's
# umask (applied by the kernel) already did.
umask 077
mount_lib
umask 022
for case in "077 touch x" "022 touch y" "002 touch z" "022 mkdir d" "077 mkdir e" "002 mkdir f"; do
    read -r um cmd name <<<"$case"
    want=$(mode_of "$um" "$cmd" "$T/real/$name")
    got=$(mode_of "$um" "$cmd" "$MNT/Ubuntu/$name")
    [ "$got" = "$want" ] || soft_fail "umask $um; $cmd: mode $got through the mount, $want in a real folder"
    got=$(stat -c %a "$LIB/Ubuntu/$name")
    [ "$got" = "$want" ] || soft_fail "umask $um; $cmd: mode $got in the library, want $want"
done
# Our own files keep the modes we give them, umask or not.
mkdir "$MNT/clones/Ubuntu/web1" || fail "mkdir of a clone"
bad=$(find "$LIB/.vmclonefs" -perm /022 -printf '%m %p\n')
[ -z "$bad" ] || fail "files of ours writable by others: $bad"
unmount_lib

# A signal ends the mount cleanly: exit 0, nothing left mounted. A shell
# starts background commands with SIGINT ignored, and nohup (or a CI
# runner) may have SIGHUP ignored; libfuse leaves an ignored signal alone,
# as it should. The daemon gets all three back through a wrapper that
# keeps its pid.
cat >"$T/sigdfl" <<SH
#!/bin/sh
exec perl -e '\$SIG{\$_} = "DEFAULT" for qw(INT TERM HUP); exec { \$ARGV[0] } @ARGV or die' "$VMCLONEFS" "\$@"
SH
chmod +x "$T/sigdfl"
n_unmounts=$(($(grep -c "unmounted $MNT\$" "$LOG") + 1))
for sig in INT TERM HUP; do
    VMCLONEFS=$T/sigdfl mount_lib
    kill -"$sig" "$DAEMON_PID"
    for _ in $(seq 200); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$DAEMON_PID" 2>/dev/null && fail "SIG$sig: the daemon is still running after 10 s"
    rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=
    [ $rc -eq 0 ] || soft_fail "SIG$sig: the daemon exited with status $rc"
    ! mountpoint -q "$MNT" || fail "SIG$sig: still mounted"
    ! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$DAEMON_ERR" || fail "SIG$sig: sanitizer report: $(cat "$DAEMON_ERR")"
    [ "$(grep -c "unmounted $MNT\$" "$LOG")" = "$n_unmounts" ] || fail "SIG$sig: no unmount line in the log"
    n_unmounts=$((n_unmounts + 1))
done
finish_soft_fails
note "help lists options once, modes follow the caller's umask, signals exit 0"
