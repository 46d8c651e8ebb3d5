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
BENCH=cpu_overhead
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
bench_settings
bench_check

# The command that reproduces this run, with every setting spelled out.
command="MPM=$MPM DURATION=$DURATION WARMUP=$WARMUP THREADS=$THREADS CONNS=$CONNS"
command+=" REPS=$REPS HZ=$HZ TARGET='$TARGET'"
[[ $BUILDDIR != "$top" ]] && command+=" BUILDDIR=$BUILDDIR"
command+=" bench/cpu_overhead.sh"

# One target per make: "all check bench" in one parallel make races on a fresh tree.
bench_build all
bench_build check
bench_build bench
bench_prepare

# The mod_pprof lines of configurations b and c.
pprof_lines() {
    cat <<EOF2
LoadModule pprof_module $MOD_PPROF
PprofCPURate $HZ
<Location /debug/pprof>
    SetHandler pprof-handler
    Require local
</Location>
EOF2
}

# measure KIND ROUND: one measurement of configuration a, b or c; appends
# "KIND ROUND REQS_PER_SEC RSS_SUM NCHILDREN" to $tmp/results.
measure() {
    local kind=$1 round=$2 name port url rps rss code cpu0 cpu1 nreq cpu_us
    port=$(free_port)
    case $kind in
        a) name=a-r$round; write_conf "$name" "$port" "" ;;
        *) name=$kind-r$round; write_conf "$name" "$port" "$(pprof_lines)" ;;
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
summary=$(awk -v reps="$REPS" "$AWK_MEDIAN"'
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
