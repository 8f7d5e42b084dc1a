#!/bin/sh
# RAUC 'bootloader=custom' backend for the tests' real RAUC device: U-Boot-style boot counters
# (BOOT_ORDER, BOOT_<name>_LEFT) kept with libubootenv's fw_printenv/fw_setenv in a file env, as
# RAUC's own U-Boot backend and the boot script in U-Boot keep them.
# Usage (RAUC calls it): get-primary | set-primary NAME | get-state NAME | set-state NAME good|bad
# The env's fw_env.config is $FW_ENV_CONFIG, else the one beside this script.
set -eu
CONFIG=${FW_ENV_CONFIG:-$(dirname "$0")/fw_env.config}
ATTEMPTS=3

get() { fw_printenv -c "$CONFIG" -n "$1" 2>/dev/null || true; }
# Several variables in one write: a half-updated env would be a state no bootloader could boot from.
put() { printf '%s\n' "$@" | fw_setenv -c "$CONFIG" -s -; }

order_without() {
    out=""
    for s in $(get BOOT_ORDER); do
        [ "$s" = "$1" ] || out="${out:+$out }$s"
    done
    printf '%s' "$out"
}

in_order() {
    for s in $(get BOOT_ORDER); do
        [ "$s" = "$1" ] && return 0
    done
    return 1
}

case "${1:-}" in
get-primary)
    for s in $(get BOOT_ORDER); do
        left=$(get "BOOT_${s}_LEFT")
        if [ "${left:-0}" -gt 0 ]; then echo "$s"; exit 0; fi
    done
    echo "no bootable slot in BOOT_ORDER='$(get BOOT_ORDER)'" >&2
    exit 1
    ;;
set-primary)
    rest=$(order_without "$2")
    put "BOOT_ORDER=$2${rest:+ $rest}" "BOOT_${2}_LEFT=$ATTEMPTS"
    ;;
get-state)
    left=$(get "BOOT_${2}_LEFT")
    if in_order "$2" && [ "${left:-0}" -gt 0 ]; then echo good; else echo bad; fi
    ;;
set-state)
    case "$3" in
    good)
        if in_order "$2"; then order=$(get BOOT_ORDER); else order="$(get BOOT_ORDER) $2"; fi
        put "BOOT_ORDER=$order" "BOOT_${2}_LEFT=$ATTEMPTS"
        ;;
    bad) put "BOOT_ORDER=$(order_without "$2")" "BOOT_${2}_LEFT=0" ;;
    *) echo "unknown state '$3' (good or bad)" >&2; exit 2 ;;
    esac
    ;;
*)
    echo "unknown command '${1:-}' (get-primary, set-primary, get-state, set-state)" >&2
    exit 2
    ;;
esac
