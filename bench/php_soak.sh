#!/bin/bash
# bench/php_soak.sh: mod_pprof with mod_pprof_php under SOAK_SECONDS (600) of PHP load
# (prefork, mod_php; half with opcache on, half off: OPCACHE=both|on|off) while CPU
# profiles, goroutine dumps, heap and allocs profiles and traces are taken continuously;
# children recycled every RECYCLE (300) connections. Prints requests, failed PHP requests,
# crashed children and how many profiles named the scripts' functions; exit status 1 on
# any failure. See bench/php_soak.py. Needs root (the server runs as www-data) and a
# built tree (make all check) with PHP's headers found by configure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $(id -u) -eq 0 ]] || { echo "php_soak: must run as root" >&2; exit 1; }
[[ ${NOBUILD:-0} == 1 ]] || make -C "${BUILDDIR:-$here/..}" -j2 all check TESTS= >/dev/null
exec /usr/bin/python3 "$here/php_soak.py"
