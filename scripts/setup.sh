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
    libapache2-mod-php8.2 php8.2-dev openssl
    clang libclang-rt-14-dev
)
# clang and libclang-rt-14-dev (libFuzzer's runtime): make fuzz. The sanitizer build
# (--enable-sanitizers) uses gcc's libasan and libubsan, which come with build-essential.

# Go 1.23, whose `go tool trace` (the newer viewer) the trace tests also use; Debian 12
# has it in the bookworm-backports suite, beside the default Go 1.19.
BACKPORTS=(golang-1.23-go)
APT_ETC=${APT_ETC:-/etc/apt}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# A bookworm-backports entry in any source file, one-line or deb822 (comments aside).
has_backports() {
    # -q: a match wins over files that do not exist
    grep -qsE '^[^#]*([[:space:]]|^)bookworm-backports([[:space:]]|$)' \
        "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list \
        "$APT_ETC"/sources.list.d/*.sources
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
missing_bpo=()
for p in "${BACKPORTS[@]}"; do
    installed "$p" || missing_bpo+=("$p")
done
if [ ${#missing_bpo[@]} -gt 0 ] && ! has_backports; then
    # As Debian documents it (https://backports.debian.org/Instructions/), in deb822 form.
    # Added only when no source names the suite: a second one makes apt warn.
    echo "== adding the bookworm-backports suite"
    cat >"$APT_ETC"/sources.list.d/bookworm-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_bpo[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]} ${missing_bpo[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
    # Debian's apache2 package starts a server on port 80 where it can: we use our own.
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ ${#missing_bpo[@]} -gt 0 ]; then
    # /usr/lib/go-1.23/bin/go; the default `go` stays Debian's 1.19.
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${missing_bpo[@]}"
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
