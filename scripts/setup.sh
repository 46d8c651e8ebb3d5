#!/usr/bin/env bash
# Install what a fresh Debian 12 lacks to build and test mod_pprof, then build it.
# Run as root. Idempotent: safe to run again.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

PACKAGES=(
    build-essential autoconf automake libtool pkg-config
    apache2 apache2-dev
    libunwind-dev zlib1g-dev libprotobuf-c-dev protobuf-c-compiler libdw-dev libelf-dev
    check protobuf-compiler golang-go
    python3 python3-pytest python3-protobuf
    curl wrk apache2-utils
    libapache2-mod-php8.2 openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Debian's apache2 package starts a server on port 80 where it can: we use our own.
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    echo "== autoreconf"
    autoreconf -fi
fi
if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
    echo "== configure"
    ./configure --enable-werror
fi
echo "== build"
make -j"$(nproc)"
make -j"$(nproc)" check TESTS= >/dev/null   # builds the test module and unit tests only
