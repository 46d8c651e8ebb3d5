#!/bin/bash
# bench/child_mem.sh: what a child's memory is with mod_pprof, by what it shares and what
# it holds alone.
#
#   bench/child_mem.sh [MPM]          event (default), worker or prefork; ~2 minutes
#
# Four servers one after another from one generated httpd.conf (only the mod_pprof lines
# differ): none (not loaded), idle (loaded), cpu (a CPU profile at PprofCPURate 100 of 8 s
# under load) and trace (a trace of 8 s under load). Each is loaded by `wrk -t1 -c16` for
# 4 s first (every worker thread has served), then for 6 s while the profile or trace runs
# ("during", read 6 s into the profile), then read again 1 s after it ended ("after");
# "peak" is the most each child held in readings every 100 ms from the request to "after"
# (the collecting child merges, symbolizes and encodes after the window).
# For each phase it prints, per child: private memory (Private_Dirty + Private_Clean of
# /proc/PID/smaps_rollup: what the child holds alone), Pss (its shared pages divided among
# the processes that map them) and VmRSS (every page it maps, shared or not, counted
# again in every child), as the median over the children and the largest child (under
# load, the child that collected the profile or trace: it merges, symbolizes and
# encodes). Threaded MPMs run 2 children of THREADS (25) worker threads; prefork 24
# children. Needs root, wrk and curl. Environment: BUILDDIR (the source tree), THREADS
# (25), KEEP_TMP (0), SMAPS_DIR (unset: when set, every child's /proc/PID/smaps of every
# phase is copied there as CONFIG-PHASE-PID, to see which mapping holds what), CONFIGS
# (which servers to run, of "none idle cpu trace": all of them by default).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILDDIR=$(cd "${BUILDDIR:-$here/..}" && pwd)
MPM=${1:-event}
THREADS=${THREADS:-25}
KEEP_TMP=${KEEP_TMP:-0}
APACHE2=/usr/sbin/apache2
MODDIR=/usr/lib/apache2/modules
MOD_PPROF=$BUILDDIR/mod_pprof/.libs/mod_pprof.so
MOD_TEST=$BUILDDIR/tests/module/.libs/mod_pprof_test.so

die() { echo "child_mem: $*" >&2; exit 1; }
case $MPM in event|worker|prefork) ;; *) die "MPM must be event, worker or prefork" ;; esac
[[ $THREADS =~ ^[0-9]+$ && $THREADS -ge 1 ]] || die "THREADS must be a positive integer"
[[ $(id -u) == 0 ]] || die "run as root (the server switches to www-data)"
for f in "$MOD_PPROF" "$MOD_TEST"; do
    [[ -f $f ]] || die "$f not found: make all check TESTS= in $BUILDDIR"
done
for t in "$APACHE2" /usr/bin/wrk /usr/bin/curl; do [[ -x $t ]] || die "$t not found"; done

tmp=$(mktemp -d /tmp/mod_pprof-mem.XXXXXX)
chmod 0755 "$tmp"
mkdir -p -m 0755 "$tmp/htdocs" "$tmp/run"
head -c 1024 /dev/zero | tr '\0' a >"$tmp/htdocs/bench.html"
chmod -R a+rX "$tmp"
port=$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
running=""
cleanup() {
    local rc=$?
    [[ -z $running ]] || timeout 60 "$APACHE2" -f "$running" -k stop >/dev/null 2>&1 || true
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then echo "child_mem: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

if [[ $MPM == prefork ]]; then
    # More children than wrk's 16 kept-alive connections: the profile's request needs one.
    tuning="StartServers 24
MinSpareServers 24
MaxSpareServers 24
ServerLimit 24
MaxRequestWorkers 24"
else
    tuning="StartServers 2
ServerLimit 2
ThreadsPerChild $THREADS
MaxRequestWorkers $((2 * THREADS))
MinSpareThreads 1
MaxSpareThreads $((2 * THREADS))"
fi

write_conf() {
    local name=$1 modlines=$2
    cat >"$tmp/$name.conf" <<EOF
ServerRoot "$tmp"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
DefaultRuntimeDir "$tmp/run"
PidFile "$tmp/$name.pid"
ErrorLog "$tmp/$name.error_log"
LogLevel warn
User www-data
Group www-data
Timeout 60
KeepAlive On
MaxKeepAliveRequests 0
DocumentRoot "$tmp/htdocs"
LoadModule mpm_${MPM}_module $MODDIR/mod_mpm_${MPM}.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule authz_host_module $MODDIR/mod_authz_host.so
LoadModule pprof_test_module $MOD_TEST
$tuning
$modlines
EOF
}

children() { ps -o pid= --ppid "$(cat "$tmp/$1.pid")" | tr -d ' '; }

# Each child's private, Pss and RSS (KiB), a line "pid private pss rss" each.
readings() {
    local k
    for k in $(children "$1"); do
        awk -v k="$k" '/^Rss:/ { r = $2 } /^Pss:/ { s = $2 } /^Private_(Clean|Dirty):/ { p += $2 }
             END { if (r != "") print k, p + 0, s + 0, r }' "/proc/$k/smaps_rollup" 2>/dev/null || true
    done
}

# One line: the phase, then private, Pss and RSS (MiB) as median and largest child, from
# readings on stdin (a child read several times counts with its largest of each).
summary() {
    /usr/bin/python3 -c '
import statistics, sys
peak = {}
for l in sys.stdin:
    f = l.split()
    if len(f) == 4:
        old = peak.get(f[0], (0, 0, 0))
        peak[f[0]] = tuple(max(a, int(b)) for a, b in zip(old, f[1:]))
rows = list(peak.values())
name, phase = sys.argv[1], sys.argv[2]
cols = []
for i in range(3):
    xs = [r[i] / 1024.0 for r in rows] or [0.0]
    cols.append("%6.2f %6.2f" % (statistics.median(xs), max(xs)))
print("%-6s %-7s %3d   %s   %s   %s" % (name, phase, len(rows), *cols))' "$1" "$2"
}

snapshot() {
    local name=$1 phase=$2 k
    if [[ -n ${SMAPS_DIR:-} ]]; then
        for k in $(children "$name"); do
            cat "/proc/$k/smaps" >"$SMAPS_DIR/$name-$phase-$k" 2>/dev/null || true
        done
    fi
    readings "$name" | summary "$name" "$phase"
}

# Every 100 ms until the file $2 exists: what each child held at most meanwhile (the
# collecting child merges and symbolizes after the window, between "during" and "after").
watch_peak() {
    while [[ ! -e $2 ]]; do
        readings "$1"
        sleep 0.1
    done >"$tmp/$1.peaks"
}

load() { wrk -t1 -c16 -d"$1"s "http://127.0.0.1:$port/bench.html" >/dev/null; }

pp_lines="LoadModule pprof_module $MOD_PPROF
<Location /debug/pprof>
    SetHandler pprof-handler
    Require local
</Location>"

echo "child memory, $MPM MPM ($( [[ $MPM == prefork ]] && echo "24 children" || echo "2 children of $THREADS threads")), MiB per child: median and largest child"
echo "config phase   kids  private(med max)  Pss(med max)      RSS(med max)"
for c in ${CONFIGS:-none idle cpu trace}; do
    case $c in none|idle|cpu|trace) ;; *) die "CONFIGS: none, idle, cpu or trace, not $c" ;; esac
    if [[ $c == none ]]; then write_conf "$c" ""; else write_conf "$c" "$pp_lines"; fi
    timeout 60 "$APACHE2" -f "$tmp/$c.conf" -k start
    running=$tmp/$c.conf
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/bench.html") == 200 ]] && break
        sleep 0.1
    done
    sleep 1
    load 4
    snapshot "$c" before
    cpid=""
    case $c in
        cpu) curl -s -o "$tmp/cpu.pb" "http://127.0.0.1:$port/debug/pprof/profile?seconds=8" & cpid=$! ;;
        trace) curl -s -o "$tmp/trace.out" "http://127.0.0.1:$port/debug/pprof/trace?seconds=8" & cpid=$! ;;
    esac
    wpid=""
    if [[ -n $cpid ]]; then
        watch_peak "$c" "$tmp/$c.done" & wpid=$!
    fi
    load 6
    snapshot "$c" during
    if [[ -n $cpid ]]; then
        wait "$cpid" || die "the $c request failed"
    fi
    sleep 1
    snapshot "$c" after
    if [[ -n $wpid ]]; then
        touch "$tmp/$c.done"
        wait "$wpid"
        summary "$c" peak <"$tmp/$c.peaks"
    fi
    ! grep -E 'Segmentation fault|AH00052|Assertion' "$tmp/$c.error_log" || die "a child died ($c)"
    timeout 60 "$APACHE2" -f "$tmp/$c.conf" -k stop
    running=""
    for _ in $(seq 100); do [[ -e $tmp/$c.pid ]] || break; sleep 0.1; done
    sleep 1
done
[[ ! -f $tmp/cpu.pb ]] || echo "cpu profile: $(stat -c %s "$tmp/cpu.pb") bytes"
[[ ! -f $tmp/trace.out ]] || echo "trace: $(stat -c %s "$tmp/trace.out") bytes"
