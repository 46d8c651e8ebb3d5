#!/bin/bash
# bench/cost.sh: what mod_pprof costs per request, measured the quiet way: the server
# pinned to one CPU and the load to another, CPU time per request (utime + stime of the
# parent and every child over the window, divided by the requests completed), in
# interleaved rounds with medians and spread, side by side with what an admin would use
# instead (perf record -F 100 -g -a).
#
# Configurations, each on a freshly started server from the same generated httpd.conf
# (only the lines of the configuration differ):
#   none       mod_pprof not loaded
#   extstatus  mod_pprof not loaded, "ExtendedStatus On" (what httpd pays for times() and
#              the scoreboard's request details on every request)
#   idle       mod_pprof loaded, nothing running
#   cpu100     a server-wide CPU profile running at PprofCPURate 100 for the whole window
#   cpu1000    the same at PprofCPURate 1000
#   trace      an execution trace running for the whole window
#   perf       mod_pprof not loaded, `perf record -F 100 -g -a` running for the window
#              (its own process's CPU is reported apart)
# The request is a 1 KiB static file over keep-alive: a cheap request makes every fixed
# cost a large share of it.
#
# Environment (defaults): MPM (event), DURATION (10), WARMUP (2), THREADS (1), CONNS (16),
# REPS (5), CONFIGS (all, in the order above), SERVER_CPU (0), LOAD_CPU (1), BUILDDIR,
# NOBUILD, KEEP_TMP. Needs root, wrk, curl, taskset and perf.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
BENCH=cost
THREADS=${THREADS:-1}
REPS=${REPS:-5}
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
bench_settings
bench_check
CONFIGS=${CONFIGS:-none extstatus idle cpu100 cpu1000 trace perf}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SERVER_PREFIX="taskset -c $SERVER_CPU"
WRK_PREFIX="taskset -c $LOAD_CPU"
PERF=/usr/bin/perf
for c in $CONFIGS; do
    case $c in none|extstatus|idle|cpu100|cpu1000|trace|perf) ;;
        *) die "unknown configuration '$c' in CONFIGS" ;; esac
done
[[ " $CONFIGS " != *" perf "* || -x $PERF ]] || die "$PERF not found (apt-get install linux-perf)"
[[ -x /usr/bin/taskset ]] || die "taskset not found"

command="MPM=$MPM DURATION=$DURATION WARMUP=$WARMUP THREADS=$THREADS CONNS=$CONNS REPS=$REPS"
command+=" CONFIGS='$CONFIGS' SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU bench/cost.sh"

bench_build all
bench_build check
bench_prepare

# The lines a configuration adds to httpd.conf.
config_lines() {
    local hz=100
    case $1 in
        none|perf) return 0 ;;
        extstatus) echo "ExtendedStatus On"; return 0 ;;
        cpu1000) hz=1000 ;;
    esac
    cat <<EOF2
LoadModule pprof_module $MOD_PPROF
PprofCPURate $hz
LogLevel warn pprof:debug
<Location /debug/pprof>
    SetHandler pprof-handler
    Require local
</Location>
EOF2
}

# measure CONFIG ROUND: one measurement; appends
# "CONFIG ROUND US_PER_REQUEST REQS_PER_SEC RSS_PER_CHILD_KIB LOST PERF_US" to results.
measure() {
    local cfg=$1 round=$2 name=$1-r$2 port url nreq cpu0 cpu1 rps us rss lost="-" perf_us="-"
    local bg="" window=$((DURATION + 2))
    port=$(free_port)
    write_conf "$name" "$port" "$(config_lines "$cfg")"
    url="http://127.0.0.1:$port$TARGET"
    start_server "$name" "$port"
    run_wrk "$WARMUP" "$url" "$tmp/$name.warmup"
    case $cfg in
        cpu100|cpu1000|trace)
            local ep=profile
            [[ $cfg == trace ]] && ep=trace
            taskset -c "$LOAD_CPU" curl -s -o "$tmp/$name.out" -w '%{http_code}' \
                -m $((window + 120)) "http://127.0.0.1:$port/debug/pprof/$ep?seconds=$window" \
                >"$tmp/$name.code" 2>&1 &
            curl_pid=$!
            bg=curl
            sleep 0.5 ;;
        perf)
            # bash's `times` prints its children's (perf's) user and system time.
            taskset -c "$LOAD_CPU" bash -c "$PERF record -q -F 100 -g -a -o '$tmp/$name.perf' \
                -- sleep $window >/dev/null 2>&1; times" >"$tmp/$name.times" 2>&1 &
            curl_pid=$!
            bg=perf
            sleep 0.5 ;;
    esac
    cpu0=$(children_cpu parent)
    run_wrk "$DURATION" "$url" "$tmp/$name.wrk" "$tmp/$name.rss"
    cpu1=$(children_cpu parent)
    if [[ -n $bg ]]; then
        wait "$curl_pid" || true
        curl_pid=""
    fi
    nreq=$(awk '/ requests in / {print $1}' "$tmp/$name.wrk")
    case $bg in
        curl) [[ $(cat "$tmp/$name.code") == 200 && -s $tmp/$name.out ]] \
                  || die "$cfg request answered '$(cat "$tmp/$name.code")' ($name)" ;;
        perf) perf_us=$(awk -v n="$nreq" 'NR == 2 {
                  split($1, u, /[ms]/); split($2, s, /[ms]/)
                  printf "%.3f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1e6 / n }' \
                  "$tmp/$name.times") ;;
    esac
    stop_server
    check_log "$name"
    if [[ $cfg == trace ]]; then
        lost=$(sed -n 's/.*PP0401: trace done.* \([0-9][0-9]*\) records lost.*/\1/p' \
               "$tmp/$name.error_log" | tail -1)
        [[ -n $lost ]] || lost="?"
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/$name.wrk")
    rss=$(awk '{ printf "%.0f", $2 ? $1 / $2 : 0 }' "$tmp/$name.rss")
    us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$nreq" \
         'BEGIN { printf "%.3f", t * 1e6 / hz / n }')
    echo "$cfg $round $us $rps $rss $lost $perf_us" >>"$tmp/results"
    log "round $round $cfg: $us us CPU/request, $rps req/s, $rss KiB/child, lost $lost, perf ${perf_us} us/request"
}

nconf=$(wc -w <<<"$CONFIGS")
log "temp dir $tmp; $REPS rounds of $nconf configurations of ${DURATION}s; server on CPU $SERVER_CPU, load on CPU $LOAD_CPU"
: >"$tmp/results"
for ((r = 1; r <= REPS; r++)); do
    for c in $CONFIGS; do
        measure "$c" "$r"
    done
done

summary=$(awk -v reps="$REPS" -v order="$CONFIGS" "$AWK_MEDIAN"'
{ us[$1, $2] = $3; rps[$1, $2] = $4; rss[$1, $2] = $5; lost[$1, $2] = $6; pus[$1, $2] = $7 }
END {
    n = split(order, cfg, " ")
    base = "none"
    printf "%-10s %12s %10s %22s %10s %12s %s\n", "config", "us/request", "vs none", \
        "per-round ratios", "req/s", "RSS/child", "notes"
    for (i = 1; i <= n; i++) {
        c = cfg[i]; line = ""; m = 0
        for (r = 1; r <= reps; r++) {
            U[r] = us[c, r]; R[r] = rps[c, r]; S[r] = rss[c, r]
            if (us[base, r] > 0) { Q[r] = 100 * (us[c, r] / us[base, r] - 1); m++ }
        }
        lo = 1e9; hi = -1e9
        for (r = 1; r <= m; r++) { if (Q[r] < lo) lo = Q[r]; if (Q[r] > hi) hi = Q[r] }
        notes = ""
        if (c == "trace") { l = ""; for (r = 1; r <= reps; r++) l = l " " lost[c, r]; notes = "records lost:" l }
        if (c == "perf") { for (r = 1; r <= reps; r++) P[r] = pus[c, r]; notes = sprintf("perf process %.2f us/request", median(P, reps)) }
        printf "%-10s %12.2f %+9.1f%%   %+6.1f..%+5.1f%%       %10.0f %9.0f KiB %s\n", c, \
            median(U, reps), (m ? median(Q, m) : 0), lo, hi, median(R, reps), median(S, reps), notes
    }
}' "$tmp/results")

cat <<EOF

---------------------------------------------------------------------------------------
mod_pprof cost per request ($(date -u +%Y-%m-%d), $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, Linux $(uname -r), $($APACHE2 -v | sed -n 's/^Server version: //p'))
load: $WRK_PREFIX wrk -t$THREADS -c$CONNS -d${DURATION}s over loopback, GET $TARGET, $MPM MPM;
server: $SERVER_PREFIX apache2; CPU per request = utime+stime of parent and children / requests;
$REPS interleaved rounds; "vs none" is the median of the per-round ratios to none
$summary
command: $command
---------------------------------------------------------------------------------------
EOF
