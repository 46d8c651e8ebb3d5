#!/bin/bash
# bench/trace_overhead.sh [MPM]: what a running execution trace costs Apache httpd.
#
# One run measures, side by side on the same generated httpd.conf (only the mod_pprof
# lines differ), the throughput of a saturating wrk load over loopback in three
# configurations:
#   a  baseline   mod_pprof not loaded
#   b  idle       mod_pprof loaded, no profile and no trace running
#   c  tracing    mod_pprof loaded, a server-wide execution trace running for the whole
#                 measurement: curl -o FILE .../debug/pprof/trace?seconds=DURATION+2,
#                 started just before the load (no CPU samples: as in Go, a trace has
#                 them only while a CPU profile runs too; cpu_overhead.sh measures that)
# in interleaved rounds (a,b,c,a,b,c,...), so that drift (other load on the machine,
# thermal, caches) hits every configuration alike. Each measurement gets a freshly
# started server and a short warm-up load first. It reports the median requests/s of
# each configuration, b/a and c/a, the children's CPU time per request, the trace's size
# per request wrk completed during it, and what tracing adds to the children's VmRSS. Every
# trace file is then read by the real `go tool trace -d` (Go's parser): a failure is
# reported in the summary (the run goes on; nothing here asserts on a figure).
#
# The request: by default GET of a 1 KiB static file (core's default handler), as in
# cpu_overhead.sh: a cheap request makes any per-request overhead (here: the trace
# records each request writes) a large share of its cost. TARGET overrides the path.
#
# MPM: the first argument, else $MPM, else event (event | worker | prefork).
# Environment (defaults):
#   BUILDDIR  build tree with mod_pprof/.libs/mod_pprof.so (the source tree)
#   DURATION  seconds of each measurement (10); the trace lasts DURATION+2
#   WARMUP    seconds of warm-up load before each measurement (2)
#   THREADS   wrk threads (2)          CONNS  wrk connections (16)
#   REPS      rounds of a,b,c (3)      HZ     PprofCPURate (100; no effect on a lone trace)
#   TARGET    request path (/bench.html)
#   GO        the go command for the validity check (go; none found: check skipped)
#   NOBUILD   1: skip make            KEEP_TMP  1: keep the temporary directory
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
BENCH=trace_overhead
MPM=${1:-${MPM:-event}}
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
bench_settings
bench_check
(($# <= 1)) || die "usage: bench/trace_overhead.sh [event|worker|prefork]"
GO=${GO:-$(command -v go || true)}
TRACE_SECONDS=$((DURATION + 2))

# The command that reproduces this run, with every setting spelled out.
command="DURATION=$DURATION WARMUP=$WARMUP THREADS=$THREADS CONNS=$CONNS"
command+=" REPS=$REPS HZ=$HZ TARGET='$TARGET'"
[[ $BUILDDIR != "$top" ]] && command+=" BUILDDIR=$BUILDDIR"
command+=" bench/trace_overhead.sh $MPM"

# Two make invocations: "all" and "check" in one -j2 make race on a clean tree (both
# recurse into the same libtool targets).
bench_build all
bench_build check
bench_prepare

# The mod_pprof lines of configurations b and c. pprof:debug makes the trace handler log
# its statistics (PP0401: events, CPU samples, records lost); mod_pprof logs nothing per
# request at any level, and b has the same line.
pprof_lines() {
    cat <<EOF
LoadModule pprof_module $MOD_PPROF
LogLevel pprof:debug
PprofCPURate $HZ
<Location /debug/pprof>
    SetHandler pprof-handler
    Require local
</Location>
EOF
}

# wait_trace_started HEADERFILE: until curl has the response's headers (the handler
# sends them once every child has started tracing; the body, which curl -o writes through
# a stdio buffer, is no sign), at most 5 s.
wait_trace_started() {
    local i
    for ((i = 0; i < 50; i++)); do
        grep -q '^HTTP/' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    log "warning: no response headers 5 s after the trace request; starting the load anyway"
}

# measure KIND ROUND: one measurement of configuration a, b or c; appends
# "KIND ROUND REQS_PER_SEC RSS_SUM NCHILDREN CPU_US NREQ TRACE_BYTES TASKS EVENTS LOST
# REPAIRED" to $tmp/results (the last five are - outside c).
measure() {
    local kind=$1 round=$2 name port url rps rss code cpu0 cpu1 nreq cpu_us
    local bytes=- tasks=- events=- lost=- repaired=- stats extra
    port=$(free_port)
    case $kind in
        a) name=a-r$round; write_conf "$name" "$port" "" ;;
        *) name=$kind-r$round; write_conf "$name" "$port" "$(pprof_lines)" ;;
    esac
    url="http://127.0.0.1:$port$TARGET"
    start_server "$name" "$port"
    run_wrk "$WARMUP" "$url" "$tmp/$name.warmup"
    if [[ $kind == c ]]; then
        curl -s -o "$tmp/$name.trace" -D "$tmp/$name.trace.headers" -w '%{http_code}' \
            -m $((TRACE_SECONDS + 120)) \
            "http://127.0.0.1:$port/debug/pprof/trace?seconds=$TRACE_SECONDS" \
            >"$tmp/$name.trace.code" 2>&1 &
        curl_pid=$!
        wait_trace_started "$tmp/$name.trace.headers"
    fi
    cpu0=$(children_cpu)
    run_wrk "$DURATION" "$url" "$tmp/$name.wrk" "$tmp/$name.rss"
    cpu1=$(children_cpu)
    if [[ $kind == c ]]; then
        wait "$curl_pid" || true
        curl_pid=""
        code=$(cat "$tmp/$name.trace.code")
        [[ $code == 200 ]] || die "trace request returned '$code' ($name): $(head -c 300 "$tmp/$name.trace")"
        [[ -s $tmp/$name.trace ]] || die "empty trace ($name)"
        bytes=$(stat -c %s "$tmp/$name.trace")
    fi
    stop_server
    check_log "$name"
    if [[ $kind == c ]]; then
        # "PP0401: trace done after 12.0 s: 2 children, 33 threads, N tasks, N events,
        # N CPU samples, N records lost, N repaired"
        stats=$(grep -o 'PP0401: .*' "$tmp/$name.error_log" | tail -1 || true)
        if [[ -n $stats ]]; then
            tasks=$(sed -n 's/.* \([0-9][0-9]*\) tasks.*/\1/p' <<<"$stats")
            events=$(sed -n 's/.* \([0-9][0-9]*\) events.*/\1/p' <<<"$stats")
            lost=$(sed -n 's/.* \([0-9][0-9]*\) records lost.*/\1/p' <<<"$stats")
            repaired=$(sed -n 's/.* \([0-9][0-9]*\) repaired.*/\1/p' <<<"$stats")
            log "round $round c: ${stats#PP0401: }"
        fi
        [[ -n $tasks ]] || tasks=-
        [[ -n $events ]] || events=-
        [[ -n $lost ]] || lost=-
        [[ -n $repaired ]] || repaired=-
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/$name.wrk")
    [[ -n $rps ]] || { cat "$tmp/$name.wrk" >&2; die "no Requests/sec in wrk output"; }
    rss=$(cat "$tmp/$name.rss")
    nreq=$(awk '/ requests in / {print $1}' "$tmp/$name.wrk")
    cpu_us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$nreq" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
    echo "$kind $round $rps $rss $cpu_us $nreq $bytes $tasks $events $lost $repaired" >>"$tmp/results"
    extra=""
    if [[ $kind == c ]]; then
        extra=$(awk -v b="$bytes" -v n="$nreq" 'BEGIN { printf "; trace %d bytes, %.1f per request", b, b / n }')
    fi
    log "round $round $kind: $rps req/s; ${cpu_us} us CPU/request; children RSS ${rss% *} KiB over ${rss#* } children$extra"
}

log "temp dir $tmp; $MPM MPM; $REPS rounds of a,b,c; $((REPS * 3)) measurements of ${DURATION}s (+${WARMUP}s warm-up)"
: >"$tmp/results"
for ((r = 1; r <= REPS; r++)); do
    for k in a b c; do
        measure "$k" "$r"
    done
done

# --- the traces, read by Go's own parser -------------------------------------------------
# go tool trace -d parses the whole file (Go 1.19's internal/trace: the same parser the
# viewer uses) and prints every event; a parse error exits non-zero.
gocheck=""
if [[ -z $GO || ! -x $GO ]]; then
    gocheck="skipped (no go command; GO= names one)"
else
    gohome=$tmp/gohome
    mkdir -p "$gohome"
    gover=$(HOME=$gohome GOCACHE=$gohome/go-build GOTOOLCHAIN=local "$GO" env GOVERSION 2>/dev/null || echo '?')
    nok=0
    failed=""
    for ((r = 1; r <= REPS; r++)); do
        f=$tmp/c-r$r.trace
        log "go tool trace -d c-r$r.trace ($(stat -c %s "$f") bytes)"
        if HOME=$gohome GOCACHE=$gohome/go-build GOPATH=$gohome/go GOTOOLCHAIN=local GOFLAGS='' \
            timeout 600 "$GO" tool trace -d "$f" >/dev/null 2>"$tmp/c-r$r.trace.err"; then
            nok=$((nok + 1))
        else
            failed+="
  c-r$r.trace: go tool trace -d exited $?: $(head -c 400 "$tmp/c-r$r.trace.err" | tr '\n' ' ')"
        fi
    done
    if [[ -z $failed ]]; then
        gocheck="ok: all $REPS traces parsed ($gover)"
    else
        gocheck="FAILED for $((REPS - nok)) of $REPS traces ($gover; files kept in $tmp)$failed"
        KEEP_TMP=1
    fi
fi

# --- summary ----------------------------------------------------------------------------
summary=$(awk -v reps="$REPS" -v tsec="$TRACE_SECONDS" "$AWK_MEDIAN"'
{ rps[$1, $2] = $3; rss[$1, $2] = $4; nch[$1, $2] = $5; cpu[$1, $2] = $6
  nreq[$1, $2] = $7; bytes[$1, $2] = $8; tk[$1, $2] = $9; ev[$1, $2] = $10; lost[$1, $2] = $11
  rep[$1, $2] = $12 }
END {
    for (r = 1; r <= reps; r++) {
        A[r] = rps["a", r]; B[r] = rps["b", r]; C[r] = rps["c", r]
        rb[r] = 100 * B[r] / A[r]; rc[r] = 100 * C[r] / A[r]
        mem[r] = rss["c", r] / nch["c", r] - rss["b", r] / nch["b", r]
        idle[r] = rss["b", r] / nch["b", r] - rss["a", r] / nch["a", r]
        CA[r] = cpu["a", r]; CB[r] = cpu["b", r]; CC[r] = cpu["c", r]
        cb[r] = 100 * CB[r] / CA[r]; cc[r] = 100 * CC[r] / CA[r]
        BY[r] = bytes["c", r]; BPR[r] = BY[r] / nreq["c", r]
        BPT[r] = tk["c", r] > 0 ? BY[r] / tk["c", r] : 0
    }
    ma = median(A, reps); mb = median(B, reps); mc = median(C, reps)
    lb = ""; lc = ""; la = ""; lbb = ""; lcc = ""; lm = ""; lbpr = ""; lby = ""; lev = ""; llost = ""; lrep = ""; ltk = ""; lbpt = ""
    for (r = 1; r <= reps; r++) {
        la = la sprintf(" %.0f", A[r]); lbb = lbb sprintf(" %.0f", B[r]); lcc = lcc sprintf(" %.0f", C[r])
        lb = lb sprintf(" %.1f", rb[r]); lc = lc sprintf(" %.1f", rc[r]); lm = lm sprintf(" %+.0f", mem[r])
        lbpr = lbpr sprintf(" %.1f", BPR[r]); lby = lby sprintf(" %.2f", BY[r] / 1048576)
        lev = lev " " ev["c", r]; llost = llost " " lost["c", r]; lrep = lrep " " rep["c", r]
        ltk = ltk sprintf(" %s/%d", tk["c", r], nreq["c", r])
        lbpt = lbpt (tk["c", r] > 0 ? sprintf(" %.1f", BPT[r]) : " -")
    }
    printf "baseline (a, no mod_pprof):   %9.0f req/s  (rounds:%s)\n", ma, la
    printf "idle (b, mod_pprof loaded):   %9.0f req/s  (rounds:%s)\n", mb, lbb
    printf "tracing (c, trace running):   %9.0f req/s  (rounds:%s)\n", mc, lcc
    printf "idle:      %5.1f%% of baseline  (per-round b/a:%s; their median %.1f%%)\n", \
        100 * mb / ma, lb, median(rb, reps)
    printf "tracing:   %5.1f%% of baseline  (per-round c/a:%s; their median %.1f%%)\n", \
        100 * mc / ma, lc, median(rc, reps)
    lcb = ""; lcc2 = ""
    for (r = 1; r <= reps; r++) { lcb = lcb sprintf(" %.1f", cb[r]); lcc2 = lcc2 sprintf(" %.1f", cc[r]) }
    printf "CPU per request (children, us): a %.1f, b %.1f, c %.1f (medians)\n", \
        median(CA, reps), median(CB, reps), median(CC, reps)
    printf "  idle:      %5.1f%% of baseline CPU/request  (per-round b/a:%s)\n", 100 * median(CB, reps) / median(CA, reps), lcb
    printf "  tracing:   %5.1f%% of baseline CPU/request  (per-round c/a:%s)\n", 100 * median(CC, reps) / median(CA, reps), lcc2
    printf "trace bytes per request: %.1f  (median; per round:%s; file size / requests wrk completed)\n", \
        median(BPR, reps), lbpr
    printf "trace size: %.2f MiB median for %d s, %.0f KiB/s  (per round, MiB:%s)\n", \
        median(BY, reps) / 1048576, tsec, median(BY, reps) / 1024 / tsec, lby
    printf "requests traced (tasks/requests wrk completed) per round:%s\n", ltk
    printf "trace bytes per traced request: %.1f  (median; per round:%s; file size / tasks)\n", \
        median(BPT, reps), lbpt
    printf "trace records per round: events%s; lost%s; repaired%s  (PP0401; -: not logged)\n", lev, llost, lrep
    printf "memory while tracing: %+.0f KiB per child (VmRSS c - b; %d children; per round:%s)\n", \
        median(mem, reps), nch["c", 1], lm
    printf "memory when loaded:   %+.0f KiB per child (VmRSS b - a, for reference)\n", median(idle, reps)
}' "$tmp/results")

cat <<EOF

---------------------------------------------------------------------------------------
mod_pprof execution-trace overhead ($(date -u +%Y-%m-%d), $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, Linux $(uname -r), $($APACHE2 -v | sed -n 's/^Server version: //p'))
load: wrk -t$THREADS -c$CONNS -d${DURATION}s over loopback, GET $TARGET, $MPM MPM; $REPS interleaved rounds of a,b,c, medians
trace (c): curl -o FILE /debug/pprof/trace?seconds=$TRACE_SECONDS started just before the load, no CPU profile alongside, all children
$summary
go tool trace -d: $gocheck
targets (the issue, not asserted): tracing >= 97% of baseline; idle within the noise (compare the per-round spread)
command: $command
---------------------------------------------------------------------------------------
EOF
