#!/bin/bash
# bench/soak.sh: mod_pprof under SOAK_SECONDS (600) of mixed load with every endpoint
# requested over and over, a graceful restart every RESTART (60) seconds and children
# recycled every RECYCLE (500) connections; prints requests, unexpected answers, crashed
# children and fd/RSS growth per child. MPM selects the MPM (event). See bench/soak.py.
# Needs root (the server runs as www-data) and a built tree (make all check).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $(id -u) -eq 0 ]] || { echo "soak: must run as root" >&2; exit 1; }
[[ ${NOBUILD:-0} == 1 ]] || make -C "${BUILDDIR:-$here/..}" -j2 all check TESTS= >/dev/null
exec /usr/bin/python3 "$here/soak.py"
