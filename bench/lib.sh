# shellcheck shell=bash disable=SC2034
# bench/lib.sh: what the Apache benchmarks (cpu_overhead.sh, trace_overhead.sh) share.
# Sourced, never run. Each runs Debian's real apache2 from a generated httpd.conf on a free
# loopback port, one fresh server per measurement, and drives it with wrk.
#
# The sourcing script sets, before sourcing:
#   BENCH   its name, for messages and file names (cpu_overhead)
#   top     the source tree (bench/..)
# and then calls, in this order:
#   bench_settings      defaults of the common environment variables, the constants
#   bench_check         validates them and the tools; dies on a problem
#   bench_build T...    unless NOBUILD=1: make -C $BUILDDIR -j2 T... (one invocation)
#   bench_prepare       the temporary directory ($tmp), the 1 KiB page, the snapshot of
#                       the modules, the EXIT trap
# after which write_conf, start_server, run_wrk, stop_server, check_log, children_rss
# and children_cpu serve its measure function. $AWK_MEDIAN is an awk median() for its
# summary. The script's own background jobs go in curl_pid and wrk_pid, which cleanup
# kills on exit.

# Common environment variables and constants (see the header of each script).
bench_settings() {
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
    # Commands put before apache2 -k start and before wrk (e.g. "taskset -c 0"): children
    # inherit the server's CPU affinity.
    SERVER_PREFIX=${SERVER_PREFIX:-}
    WRK_PREFIX=${WRK_PREFIX:-}

    APACHE2=/usr/sbin/apache2
    MODDIR=/usr/lib/apache2/modules
    MOD_PPROF=$BUILDDIR/mod_pprof/.libs/mod_pprof.so
    MOD_PPROF_TEST=$BUILDDIR/tests/module/.libs/mod_pprof_test.so
    CLK_TCK=$(getconf CLK_TCK)
    CMD_TIMEOUT=60          # each apache2 -k / -t command
    START_TIMEOUT=30        # until a started server answers
    STOP_TIMEOUT=30         # until a stopped server's processes are gone
}

die() { echo "$BENCH: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

bench_check() {
    local v t
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
}

# bench_build TARGET...: make them in $BUILDDIR (one make invocation), unless NOBUILD=1.
bench_build() {
    local mklog=${TMPDIR:-/tmp}/$BENCH-make.$$.log
    [[ $NOBUILD != 1 ]] || return 0
    log "building: make -C $BUILDDIR -j2 $*"
    timeout 3600 make -C "$BUILDDIR" -j2 "$@" >"$mklog" 2>&1 \
        || { tail -40 "$mklog" >&2; die "make $* failed (last 40 lines above); NOBUILD=1 skips it"; }
    rm -f "$mklog"
}

bench_prepare() {
    [[ -f $MOD_PPROF && -f $MOD_PPROF_TEST ]] || die "modules not built in $BUILDDIR"

    tmp=$(mktemp -d "${TMPDIR:-/tmp}/mod_pprof-bench.XXXXXX")
    chmod 0755 "$tmp"
    mkdir -m 0755 "$tmp/htdocs"
    head -c 1024 /dev/zero | tr '\0' 'x' >"$tmp/htdocs/bench.html"
    chmod 0644 "$tmp/htdocs/bench.html"
    # Snapshot the modules: every measurement loads the same bytes, even if the build tree
    # is rebuilt during the run.
    mkdir -m 0755 "$tmp/modules"
    cp "$MOD_PPROF" "$MOD_PPROF_TEST" "$tmp/modules/"
    chmod 0644 "$tmp/modules/"*.so
    MOD_PPROF=$tmp/modules/mod_pprof.so
    MOD_PPROF_TEST=$tmp/modules/mod_pprof_test.so

    running_conf=""         # the config of the server now running, if any
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

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
        echo "$BENCH: temporary files kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}

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

# write_conf NAME PORT MODLINES: $tmp/NAME.conf; MODLINES (the mod_pprof lines, empty in
# the configurations without it) go at its end.
write_conf() {
    local name=$1 port=$2 modlines=$3
    mkdir -p -m 0755 "$tmp/$name.run"
    cat >"$tmp/$name.conf" <<EOF
# Generated by bench/$BENCH.sh ($name)
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
    # shellcheck disable=SC2086
    out=$(timeout "$CMD_TIMEOUT" $SERVER_PREFIX "$APACHE2" -f "$conf" -k start 2>&1) \
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

# CPU time (utime + stime, all threads, in clock ticks) of the running server's children
# (with "parent" as $1: of the parent too).
children_cpu() {
    local pid kids k t sum=0
    pid=$(cat "${running_conf%.conf}.pid")
    kids=$(children_of "$pid")
    [[ ${1:-} == parent ]] && kids="$pid $kids"
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
    # shellcheck disable=SC2086
    timeout $((secs + 30)) $WRK_PREFIX wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency "$url" >"$out" 2>&1 &
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

# awk: median(arr, n) of arr[1..n] (arr is left as it is).
AWK_MEDIAN='
function median(arr, n,    i, j, t, tmp) {
    for (i = 1; i <= n; i++) tmp[i] = arr[i]
    for (i = 2; i <= n; i++) for (j = i; j > 1 && tmp[j-1] > tmp[j]; j--) {
        t = tmp[j]; tmp[j] = tmp[j-1]; tmp[j-1] = t }
    return n % 2 ? tmp[(n+1)/2] : (tmp[n/2] + tmp[n/2+1]) / 2
}'
