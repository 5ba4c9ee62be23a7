# Shared by the scripts: messages and argument checks. Needs $PROG.

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

usage_error() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    printf "Try '%s --help'.\n" "$PROG" >&2
    exit 2
}

positive_int() { # NAME VALUE
    if ! [[ $2 =~ ^[0-9]{1,9}$ ]] || (( 10#$2 == 0 )); then
        usage_error "$1 needs a positive whole number, not '$2'"
    fi
}
