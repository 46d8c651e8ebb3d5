#!/bin/bash
# bench/cpu_overhead.sh: what mod_pprof costs Apache httpd in throughput and memory.
#
# One run measures, side by side on the same generated httpd.conf (only the mod_pprof
# lines differ), the throughput of a saturating wrk load over loopback in three
# configurations:
#   a  baseline   mod_pprof not loaded
#   b  idle       mod_pprof loaded, no profile running
#   c  profiling  mod_pprof loaded, a server-wide CPU profile running at $HZ Hz for the
#                 whole measurement (GET /debug/pprof/profile?seconds=DURATION+2)
# in interleaved rounds (a,b,c,a,b,c,...), so that drift (other load on the machine,
# thermal, caches) hits every configuration alike. Each measurement gets a freshly
# started server and a short warm-up load first. It reports the median requests/s of
# each configuration, b/a and c/a, and the memory profiling adds per child: the sum of
# the children's VmRSS during c minus during b (read at 2/3 of each measurement),
# divided by the number of children (and, for reference, b minus a: what loading the
# module costs).
#
# The request: by default GET of a 1 KiB static file (core's default handler). A cheap
# request makes any per-request or per-sample overhead a large share of its cost, so it
# shows up; a heavy handler would hide it. (/pprof-test/burn?ms=N would be the wrong
# choice: it burns for N ms of wall time, so a slower CPU makes it do less work instead
# of serving fewer requests.) TARGET overrides the path.
#
# Environment (defaults):
#   BUILDDIR  build tree with mod_pprof/.libs/mod_pprof.so (the source tree)
#   MPM       event | worker | prefork (event)
#   DURATION  seconds of each measurement (10)
#   WARMUP    seconds of warm-up load before each measurement (2)
#   THREADS   wrk threads (2)          CONNS  wrk connections (16)
#   REPS      rounds of a,b,c (3)      HZ     PprofCPURate (100)
#   TARGET    request path (/bench.html)
#   NOBUILD   1: skip make            KEEP_TMP  1: keep the temporary directory
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
BUILDDIR=$(cd "${BUILDDIR:-$top}" && pwd)
MPM=${MPM:-event}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
REPS=${REPS:-3}
HZ=${HZ:-100}
TARGET=${TARGET:-/bench.html}
NOBUILD=${NOBUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}

APACHE2=/usr/sbin/apache2
MODDIR=/usr/lib/apache2/modules
MOD_PPROF=$BUILDDIR/mod_pprof/.libs/mod_pprof.so
MOD_PPROF_TEST=$BUILDDIR/tests/module/.libs/mod_pprof_test.so
CLK_TCK=$(getconf CLK_TCK)
CMD_TIMEOUT=60          # each apache2 -k / -t command
START_TIMEOUT=30        # until a started server answers
STOP_TIMEOUT=30         # until a stopped server's processes are gone

die() { echo "cpu_overhead: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

case $MPM in event|worker|prefork) ;; *) die "MPM must be event, worker or prefork" ;; esac
for v in DURATION WARMUP THREADS CONNS REPS HZ; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "$v must be a positive integer"
done
[[ $HZ -le 1000 ]] || die "HZ must be 1..1000"
[[ $TARGET == /* ]] || die "TARGET must be a path starting with /"
for t in "$APACHE2" /usr/bin/wrk /usr/bin/curl /usr/bin/timeout; do
    [[ -x $t ]] || die "$t not found"
done
[[ $(id -u) -eq 0 ]] || die "must run as root (the servers run as User www-data)"

# The command that reproduces this run, with every setting spelled out.
command="MPM=$MPM DURATION=$DURATION WARMUP=$WARMUP THREADS=$THREADS CONNS=$CONNS"
command+=" REPS=$REPS HZ=$HZ TARGET='$TARGET'"
[[ $BUILDDIR != "$top" ]] && command+=" BUILDDIR=$BUILDDIR"
command+=" bench/cpu_overhead.sh"

if [[ $NOBUILD != 1 ]]; then
    log "building: make -C $BUILDDIR -j2 all check bench"
    timeout 3600 make -C "$BUILDDIR" -j2 all check bench >"${TMPDIR:-/tmp}/cpu_overhead-make.$$.log" 2>&1 \
        || { tail -40 "${TMPDIR:-/tmp}/cpu_overhead-make.$$.log" >&2; die "make all check bench failed (last 40 lines above); NOBUILD=1 skips it"; }
    rm -f "${TMPDIR:-/tmp}/cpu_overhead-make.$$.log"
fi
[[ -f $MOD_PPROF && -f $MOD_PPROF_TEST ]] || die "modules not built in $BUILDDIR"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mod_pprof-bench.XXXXXX")
chmod 0755 "$tmp"
mkdir -m 0755 "$tmp/htdocs"
head -c 1024 /dev/zero | tr '\0' 'x' >"$tmp/htdocs/bench.html"
chmod 0644 "$tmp/htdocs/bench.html"
# Snapshot the modules: every measurement loads the same bytes, even if the build tree is
# rebuilt during the run.
mkdir -m 0755 "$tmp/modules"
cp "$MOD_PPROF" "$MOD_PPROF_TEST" "$tmp/modules/"
chmod 0644 "$tmp/modules/"*.so
MOD_PPROF=$tmp/modules/mod_pprof.so
MOD_PPROF_TEST=$tmp/modules/mod_pprof_test.so

running_conf=""         # the config of the server now running, if any

# Every process of the server whose parent pid is $1: the parent and its children.
children_of() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }

stop_server() {
    local conf=$running_conf pidfile pid deadline
    [[ -n $conf ]] || return 0
    running_conf=""
    pidfile=${conf%.conf}.pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    timeout "$CMD_TIMEOUT" "$APACHE2" -f "$conf" -k stop >/dev/null 2>&1 || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        log "server $pid did not stop within ${STOP_TIMEOUT}s; killing it"
        local kids
        kids=$(children_of "$pid")
        kill -KILL "$pid" $kids 2>/dev/null || true
    fi
}

cleanup() {
    local rc=$?
    stop_server
    if [[ -n ${curl_pid:-} ]]; then
        kill "$curl_pid" 2>/dev/null || true
    fi
    if [[ -n ${wrk_pid:-} ]]; then
        kill "$wrk_pid" 2>/dev/null || true
    fi
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
        echo "cpu_overhead: temporary files kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# MPM sizing: a fixed number of children from the start (no spawning or reaping during a
# measurement), room for every connection plus the profile request.
start_servers() { if [[ $MPM == prefork ]]; then echo $((CONNS + 8)); else echo 2; fi; }
mpm_tuning() {
    local workers=$((CONNS + 8)) tpc
    if [[ $MPM == prefork ]]; then
        cat <<EOF
StartServers $(start_servers)
MinSpareServers 1
MaxSpareServers $workers
ServerLimit $workers
MaxRequestWorkers $workers
EOF
    else
        tpc=$(( (workers + 1) / 2 ))
        ((tpc < 16)) && tpc=16
        cat <<EOF
StartServers $(start_servers)
ServerLimit $(start_servers)
ThreadsPerChild $tpc
MaxRequestWorkers $((2 * tpc))
MinSpareThreads 1
MaxSpareThreads $((2 * tpc))
EOF
    fi
}

# write_conf NAME PORT WITH_PPROF(0|1): $tmp/NAME.conf
write_conf() {
    local name=$1 port=$2 with=$3 modlines=""
    if [[ $with == 1 ]]; then
        modlines="LoadModule pprof_module $MOD_PPROF
PprofCPURate $HZ
<Location /debug/pprof>
    SetHandler pprof-handler
    Require local
</Location>"
    fi
    mkdir -p -m 0755 "$tmp/$name.run"
    cat >"$tmp/$name.conf" <<EOF
# Generated by bench/cpu_overhead.sh ($name)
ServerRoot "$tmp"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
DefaultRuntimeDir "$tmp/$name.run"
PidFile "$tmp/$name.pid"
ErrorLog "$tmp/$name.error_log"
LogLevel warn
User www-data
Group www-data
Timeout $((DURATION + 120))
KeepAlive On
MaxKeepAliveRequests 0
DocumentRoot "$tmp/htdocs"

LoadModule mpm_${MPM}_module $MODDIR/mod_mpm_${MPM}.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule authz_host_module $MODDIR/mod_authz_host.so
LoadModule pprof_test_module $MOD_PPROF_TEST
<Location /pprof-test>
    SetHandler pprof-test
</Location>

$(mpm_tuning)

# --- mod_pprof (only in the configurations with it) ---
$modlines
EOF
    chmod 0644 "$tmp/$name.conf"
}

# start_server NAME PORT: start and wait until TARGET answers 200.
start_server() {
    local name=$1 port=$2 conf=$tmp/$1.conf out deadline code=""
    out=$(timeout "$CMD_TIMEOUT" "$APACHE2" -f "$conf" -t 2>&1) || die "apache2 -t ($name): $out"
    : >"$tmp/$name.error_log"
    running_conf=$conf
    out=$(timeout "$CMD_TIMEOUT" "$APACHE2" -f "$conf" -k start 2>&1) \
        || die "apache2 -k start ($name): $out"
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$port$TARGET" || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    [[ $code == 200 ]] || die "server $name did not answer 200 on $TARGET within ${START_TIMEOUT}s: $(tail -5 "$tmp/$name.error_log")"
    # Wait for every child (StartServers) to be up, so that all of them share the load.
    while ((SECONDS < deadline)); do
        (($(children_of "$(cat "$tmp/$name.pid")" | wc -w) >= $(start_servers))) && { sleep 0.5; return 0; }
        sleep 0.1
    done
    die "server $name did not start its $(start_servers) children within ${START_TIMEOUT}s"
}

# Sum of VmRSS (KiB) and number of the children of the running server.
children_rss() {
    local pid kids k rss sum=0 n=0
    pid=$(cat "${running_conf%.conf}.pid")
    kids=$(children_of "$pid")
    for k in $kids; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$k/status" 2>/dev/null || true)
        [[ -n $rss ]] || continue
        sum=$((sum + rss)); n=$((n + 1))
    done
    echo "$sum $n"
}

# CPU time (utime + stime, all threads, in clock ticks) of the running server's children.
children_cpu() {
    local pid kids k t sum=0
    pid=$(cat "${running_conf%.conf}.pid")
    kids=$(children_of "$pid")
    for k in $kids; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends comm.
        t=$(sed 's/.*) //' "/proc/$k/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
        [[ -n $t ]] && sum=$((sum + t))
    done
    echo "$sum"
}

# run_wrk SECONDS URL OUTFILE [RSSFILE]: run the load; with RSSFILE, write children's
# RSS there at 2/3 of the run.
run_wrk() {
    local secs=$1 url=$2 out=$3 rssfile=${4:-}
    timeout $((secs + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency "$url" >"$out" 2>&1 &
    wrk_pid=$!
    if [[ -n $rssfile ]]; then
        sleep "$(awk -v s="$secs" 'BEGIN { printf "%.1f", s * 2 / 3 }')"
        children_rss >"$rssfile"
    fi
    wait "$wrk_pid" || { cat "$out" >&2; die "wrk failed"; }
    wrk_pid=""
    if grep -q 'Non-2xx' "$out"; then
        cat "$out" >&2
        die "wrk saw non-2xx responses"
    fi
    # A handful of socket errors under a saturating load on a busy machine does not
    # change the figures; say so, but go on.
    if grep -q 'Socket errors' "$out"; then
        log "warning: wrk $(grep 'Socket errors' "$out" | sed 's/^ *//') ($(basename "$out"))"
    fi
}

# check_log NAME: fail on crashes and mod_pprof errors in its error_log.
check_log() {
    local bad
    bad=$(grep -E 'Segmentation fault|exit signal|AH00052|AH00060|Aborted|double free|corrupted|\[pprof:(error|crit|alert|emerg)\]' \
          "$tmp/$1.error_log" || true)
    [[ -z $bad ]] || die "error_log of $1 has problems:
$bad"
}

# measure KIND ROUND: one measurement of configuration a, b or c; appends
# "KIND ROUND REQS_PER_SEC RSS_SUM NCHILDREN" to $tmp/results.
measure() {
    local kind=$1 round=$2 name port url rps rss code cpu0 cpu1 nreq cpu_us
    port=$(free_port)
    case $kind in
        a) name=a-r$round; write_conf "$name" "$port" 0 ;;
        *) name=$kind-r$round; write_conf "$name" "$port" 1 ;;
    esac
    url="http://127.0.0.1:$port$TARGET"
    start_server "$name" "$port"
    run_wrk "$WARMUP" "$url" "$tmp/$name.warmup"
    if [[ $kind == c ]]; then
        curl -s -o "$tmp/$name.profile.pb.gz" -w '%{http_code}' -m $((DURATION + 120)) \
            "http://127.0.0.1:$port/debug/pprof/profile?seconds=$((DURATION + 2))" \
            >"$tmp/$name.profile.code" 2>&1 &
        curl_pid=$!
        sleep 0.5       # let every child's sampler start before the load does
    fi
    cpu0=$(children_cpu)
    run_wrk "$DURATION" "$url" "$tmp/$name.wrk" "$tmp/$name.rss"
    cpu1=$(children_cpu)
    if [[ $kind == c ]]; then
        wait "$curl_pid" || true
        curl_pid=""
        code=$(cat "$tmp/$name.profile.code")
        [[ $code == 200 ]] || die "profile request returned '$code' ($name): $(head -c 300 "$tmp/$name.profile.pb.gz")"
        [[ -s $tmp/$name.profile.pb.gz ]] || die "empty profile ($name)"
    fi
    stop_server
    check_log "$name"
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/$name.wrk")
    [[ -n $rps ]] || { cat "$tmp/$name.wrk" >&2; die "no Requests/sec in wrk output"; }
    rss=$(cat "$tmp/$name.rss")
    nreq=$(awk '/ requests in / {print $1}' "$tmp/$name.wrk")
    cpu_us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$nreq" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
    echo "$kind $round $rps $rss $cpu_us" >>"$tmp/results"
    log "round $round $kind: $rps req/s; ${cpu_us} us CPU/request; children RSS ${rss% *} KiB over ${rss#* } children"
}

log "temp dir $tmp; $REPS rounds of a,b,c; $((REPS * 3)) measurements of ${DURATION}s (+${WARMUP}s warm-up)"
: >"$tmp/results"
for ((r = 1; r <= REPS; r++)); do
    for k in a b c; do
        measure "$k" "$r"
    done
done

# --- summary ----------------------------------------------------------------------------
summary=$(awk -v reps="$REPS" '
function median(arr, n,    i, j, t, tmp) {
    for (i = 1; i <= n; i++) tmp[i] = arr[i]
    for (i = 2; i <= n; i++) for (j = i; j > 1 && tmp[j-1] > tmp[j]; j--) {
        t = tmp[j]; tmp[j] = tmp[j-1]; tmp[j-1] = t }
    return n % 2 ? tmp[(n+1)/2] : (tmp[n/2] + tmp[n/2+1]) / 2
}
{ rps[$1, $2] = $3; rss[$1, $2] = $4; nch[$1, $2] = $5; cpu[$1, $2] = $6 }
END {
    for (r = 1; r <= reps; r++) {
        A[r] = rps["a", r]; B[r] = rps["b", r]; C[r] = rps["c", r]
        rb[r] = 100 * B[r] / A[r]; rc[r] = 100 * C[r] / A[r]
        mem[r] = rss["c", r] / nch["c", r] - rss["b", r] / nch["b", r]
        idle[r] = rss["b", r] / nch["b", r] - rss["a", r] / nch["a", r]
        CA[r] = cpu["a", r]; CB[r] = cpu["b", r]; CC[r] = cpu["c", r]
        cb[r] = 100 * CB[r] / CA[r]; cc[r] = 100 * CC[r] / CA[r]
    }
    ma = median(A, reps); mb = median(B, reps); mc = median(C, reps)
    lb = ""; lc = ""; la = ""; lbb = ""; lcc = ""; lm = ""
    for (r = 1; r <= reps; r++) {
        la = la sprintf(" %.0f", A[r]); lbb = lbb sprintf(" %.0f", B[r]); lcc = lcc sprintf(" %.0f", C[r])
        lb = lb sprintf(" %.1f", rb[r]); lc = lc sprintf(" %.1f", rc[r]); lm = lm sprintf(" %+.0f", mem[r])
    }
    printf "baseline (a, no mod_pprof):   %9.0f req/s  (rounds:%s)\n", ma, la
    printf "idle (b, mod_pprof loaded):   %9.0f req/s  (rounds:%s)\n", mb, lbb
    printf "profiling (c, CPU profile):   %9.0f req/s  (rounds:%s)\n", mc, lcc
    printf "idle:      %5.1f%% of baseline  (per-round b/a:%s; their median %.1f%%)\n", \
        100 * mb / ma, lb, median(rb, reps)
    printf "profiling: %5.1f%% of baseline  (per-round c/a:%s; their median %.1f%%)\n", \
        100 * mc / ma, lc, median(rc, reps)
    lcb = ""; lcc2 = ""
    for (r = 1; r <= reps; r++) { lcb = lcb sprintf(" %.1f", cb[r]); lcc2 = lcc2 sprintf(" %.1f", cc[r]) }
    printf "CPU per request (children, us): a %.1f, b %.1f, c %.1f (medians)\n", \
        median(CA, reps), median(CB, reps), median(CC, reps)
    printf "  idle:      %5.1f%% of baseline CPU/request  (per-round b/a:%s)\n", 100 * median(CB, reps) / median(CA, reps), lcb
    printf "  profiling: %5.1f%% of baseline CPU/request  (per-round c/a:%s)\n", 100 * median(CC, reps) / median(CA, reps), lcc2
    printf "memory while profiling: %+.0f KiB per child (VmRSS c - b; %d children; per round:%s)\n", \
        median(mem, reps), nch["c", 1], lm
    printf "memory when loaded:     %+.0f KiB per child (VmRSS b - a, for reference)\n", median(idle, reps)
}' "$tmp/results")

cat <<EOF

---------------------------------------------------------------------------------------
mod_pprof CPU-profiling overhead ($(date -u +%Y-%m-%d), $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, Linux $(uname -r), $($APACHE2 -v | sed -n 's/^Server version: //p'))
load: wrk -t$THREADS -c$CONNS -d${DURATION}s over loopback, GET $TARGET, $MPM MPM; $REPS interleaved rounds of a,b,c, medians
profile (c): GET /debug/pprof/profile?seconds=$((DURATION + 2)) at PprofCPURate $HZ, all children
$summary
command: $command
---------------------------------------------------------------------------------------
EOF
