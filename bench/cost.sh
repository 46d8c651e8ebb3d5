#!/bin/bash
# bench/cost.sh: what mod_pprof costs per request, precise enough to decide 1%.
#
# Every configuration's server runs at the same time (each its own port, config, error_log
# and cpuacct cgroup), all pinned to the same server CPU. A slice's cost is the server's CPU
# in it (its cgroup's usage: parent, children, every thread, in ns; without cgroups, the
# sum of every thread's schedstat), read just before and after the slice, divided by the
# requests wrk completed in it. Three ways to lay the slices out (MODE):
#   parallel   every server is loaded at once, each by a wrk of its own, in windows of
#              SLICE seconds: a window is a slice of every configuration, and
#              whatever else runs on the machine (builds, tests, the VM's neighbours) hits
#              all of them in the same instant, so it cancels in their ratios. The servers
#              share the CPU (and its caches) as equals.
#   pairs      (the default) windows in which none and one other configuration (the next
#              in turn) are loaded at once, each by its own wrk: the machine's noise still
#              hits both alike, and each shares the CPU (and caches) with one other server
#              only.
#   alternate  the load (one wrk) alternates between the servers: each round takes every
#              configuration once, in a shuffled order, each slice paired with a slice of
#              none right before or after it (which comes first alternates). Cancels slow
#              drifts only: on a busy machine the load of others changes within seconds.
# The figure of a configuration is the median of its ratios to none's slice in the same
# window (or pair), with their interquartile range and a bootstrap 95% interval of that
# median, and the pooled ratio (all CPU over all requests). `none2` is a second, identical
# none server: its ratio (an A/A test) shows what the method resolves on this machine
# during this run.
#
# Configurations:
#   none       mod_pprof not loaded
#   none2      the same, a second server (A/A)
#   extstatus  mod_pprof not loaded, "ExtendedStatus On"
#   idle       mod_pprof loaded, nothing running
#   noheap     the same with PprofMemProfileRate 0 (no heap sampling: Go's MemProfileRate
#              is on by default, so idle samples the heap)
#   cpu100     CPU profiles at PprofCPURate 100 scraped back to back all run long
#              (profile?seconds=SCRAPE again and again, as Parca and Alloy do)
#   cpu1000    the same at PprofCPURate 1000
#   trace      execution traces scraped back to back (trace?seconds=SCRAPE)
#   X-base     (for X idle, cpu100, cpu1000, trace; with BASE set) X with the module of
#              the build tree BASE: a change against what it changes, in the same run
#   perf       mod_pprof not loaded, sampled by perf at 100 Hz with call graphs, perf's own
#              CPU reported apart. alternate: `perf record -F 100 -g -a` during each of
#              this server's slices (started before the slice's first CPU read, stopped
#              after its last). parallel: -a would sample every server alike, so
#              `perf record -F 100 -g -p <its parent and children>` for the whole run
# The scrapes' collecting child is one of the server's children: its CPU is in the
# server's. What a server spends outside its slices (the collector merging a window that
# ended while another server was loaded, idle ticks) is reported apart too, per request
# the server served ("outside").
#
# The request is a 1 KiB static file over keep-alive: a cheap request makes every fixed
# cost a large share of it.
#
# Environment (defaults): MODE (pairs), MPM (event), SLICE seconds (2), ROUNDS (windows
# in parallel: 60, in pairs: 120; rounds in alternate: 12), WARMUP (2),
# SCRAPE seconds (10), QUIET seconds (2 x SCRAPE), BASE (none), THREADS (1), CONNS (16), CONFIGS (all, in the order above), SEED
# (1), SERVER_CPU (0), LOAD_CPU (1), BUILDDIR, NOBUILD, KEEP_TMP. Needs root, wrk, curl,
# taskset, python3 and perf.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
BENCH=cost
THREADS=${THREADS:-1}
SLICE=${SLICE:-2}
MODE=${MODE:-pairs}
case $MODE in
    parallel) ROUNDS=${ROUNDS:-60} ;;
    pairs) ROUNDS=${ROUNDS:-120} ;;
    *) ROUNDS=${ROUNDS:-12} ;;
esac
SCRAPE=${SCRAPE:-10}
SEED=${SEED:-1}
BASE=${BASE:-}
QUIET=${QUIET:-$((2 * SCRAPE))}
# The Timeout of the generated configs must exceed a scrape's seconds.
DURATION=$((SCRAPE + 10))
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
bench_settings
bench_check
CONFIGS=${CONFIGS:-none none2 extstatus idle cpu100 cpu1000 trace perf}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
WRK_PREFIX="taskset -c $LOAD_CPU"
PERF=/usr/bin/perf
PY=/usr/bin/python3
for v in SLICE ROUNDS SCRAPE SEED; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "$v must be a positive integer"
done
[[ $QUIET =~ ^[0-9]+$ ]] || die "QUIET must be a number of seconds"
[[ $MODE == parallel || $MODE == pairs || $MODE == alternate ]] \
    || die "MODE must be parallel, pairs or alternate"
[[ " $CONFIGS " == *" none "* ]] || die "CONFIGS must include none (the baseline)"
for c in $CONFIGS; do
    case $c in none|none2|extstatus|idle|noheap|cpu100|cpu1000|trace|perf) ;;
        idle-base|cpu100-base|cpu1000-base|trace-base) [[ -n $BASE ]] \
            || die "$c needs BASE (the build directory of the tree to compare with)" ;;
        *) die "unknown configuration '$c' in CONFIGS" ;; esac
done
[[ " $CONFIGS " != *" perf "* || -x $PERF ]] || die "$PERF not found (apt-get install linux-perf)"
[[ -x /usr/bin/taskset && -x $PY ]] || die "taskset or $PY not found"

command="MODE=$MODE MPM=$MPM SLICE=$SLICE ROUNDS=$ROUNDS WARMUP=$WARMUP SCRAPE=$SCRAPE QUIET=$QUIET THREADS=$THREADS"
command+=" CONNS=$CONNS SEED=$SEED CONFIGS='$CONFIGS' SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU"
[[ -z $BASE ]] || command+=" BASE=$BASE"
command+=" bench/cost.sh"

bench_build all
bench_build check
bench_prepare
# BASE: another build tree (e.g. main's) whose module the *-base configurations load, so a
# change is measured against what it changes in the same run. Snapshot it as ours.
BASE_MOD=""
if [[ -n $BASE ]]; then
    [[ -f $BASE/mod_pprof/.libs/mod_pprof.so ]] || die "no module built in BASE=$BASE"
    mkdir -m 0755 "$tmp/modules-base"
    cp "$BASE/mod_pprof/.libs/mod_pprof.so" "$tmp/modules-base/"
    chmod 0644 "$tmp/modules-base/mod_pprof.so"
    BASE_MOD=$tmp/modules-base/mod_pprof.so
fi

# Our own cleanup: many servers, scrape loops, perf, cgroups.
cg=""
cgroot=/sys/fs/cgroup/cpuacct
if [[ -w $cgroot ]] && mkdir "$cgroot/mod_pprof-bench.$$" 2>/dev/null; then
    cg=$cgroot/mod_pprof-bench.$$
fi
declare -A port pidfile scrape_pid
perf_pid=""
stop_all() {
    local c pid deadline
    for c in "${!scrape_pid[@]}"; do
        kill "${scrape_pid[$c]}" 2>/dev/null || true
    done
    [[ -z $perf_pid ]] || kill -INT "$perf_pid" 2>/dev/null || true
    for c in "${!pidfile[@]}"; do
        timeout "$CMD_TIMEOUT" "$APACHE2" -f "$tmp/$c.conf" -k stop >/dev/null 2>&1 || true
    done
    deadline=$((SECONDS + STOP_TIMEOUT))
    for c in "${!pidfile[@]}"; do
        pid=$(cat "${pidfile[$c]}" 2>/dev/null || true)
        while [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            log "server $c ($pid) did not stop; killing it"
            # shellcheck disable=SC2046
            kill -KILL "$pid" $(children_of "$pid") 2>/dev/null || true
        fi
    done
    pidfile=()
    if [[ -n $cg ]]; then
        sleep 0.2
        rmdir "$cg"/* "$cg" 2>/dev/null || true
    fi
}
cost_cleanup() {
    local rc=$?
    trap - EXIT
    stop_all
    [[ -z ${wrk_pid:-} ]] || kill "$wrk_pid" 2>/dev/null || true
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
        echo "$BENCH: temporary files kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit $rc
}
trap cost_cleanup EXIT

# Runs a command in cgroup $1 (when we have cgroups): exec keeps its pid.
cat >"$tmp/incg" <<'EOF'
#!/bin/sh
[ -n "$1" ] && echo $$ >"$1/cgroup.procs"
shift
exec "$@"
EOF
chmod 0755 "$tmp/incg"
cgdir() { [[ -z $cg ]] || { mkdir -p "$cg/$1"; echo "$cg/$1"; }; }

# The lines a configuration adds to httpd.conf.
config_lines() {
    local hz=100 mod=$MOD_PPROF extra=""
    [[ $1 != *-base ]] || mod=$BASE_MOD
    case ${1%-base} in
        none|none2|perf) return 0 ;;
        extstatus) echo "ExtendedStatus On"; return 0 ;;
        cpu1000) hz=1000 ;;
        noheap) extra="PprofMemProfileRate 0" ;;
        # PP0401 (a trace's records lost) is at level debug: its note counts them. A
        # few lines per scrape.
        trace) extra="LogLevel warn pprof:debug" ;;
    esac
    cat <<EOF2
LoadModule pprof_module $mod
PprofCPURate $hz
$extra
<Location /debug/pprof>
    SetHandler pprof-handler
    Require local
</Location>
EOF2
}

# server_cpu_ns CONFIG: CPU the server has used so far, ns.
server_cpu_ns() {
    local c=$1 pid
    if [[ -n $cg ]]; then
        cat "$cg/$c/cpuacct.usage"
        return
    fi
    pid=$(cat "${pidfile[$c]}")
    # shellcheck disable=SC2046
    cat $(for p in $pid $(children_of "$pid"); do echo /proc/$p/task/*/schedstat; done) \
        2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}

# server_mem CONFIG: the children's mean private memory, Pss and VmRSS, KiB, as one word
# "PRIVATE,PSS,RSS". Private (Private_Dirty + Private_Clean of smaps_rollup) is what a
# child costs the machine on its own; RSS also counts every page it shares with the parent
# and its siblings (libraries, the parent's symbolizer: ~20 MiB with mod_pprof loaded),
# once per child; Pss shares those out.
server_mem() {
    local pid k sum_p=0 sum_s=0 sum_r=0 n=0 m
    pid=$(cat "${pidfile[$1]}")
    for k in $(children_of "$pid"); do
        m=$(awk '/^Rss:/ { r = $2 } /^Pss:/ { s = $2 } /^Private_(Clean|Dirty):/ { p += $2 }
                 END { if (r != "") print p + 0, s + 0, r }' "/proc/$k/smaps_rollup" \
            2>/dev/null || true)
        [[ -n $m ]] || continue
        read -r a b c <<<"$m"
        sum_p=$((sum_p + a)); sum_s=$((sum_s + b)); sum_r=$((sum_r + c)); n=$((n + 1))
    done
    ((n)) || n=1
    echo "$((sum_p / n)),$((sum_s / n)),$((sum_r / n))"
}

scrape_loop() {
    local c=$1 ep=profile
    [[ ${c%-base} == trace ]] && ep=trace
    while :; do
        taskset -c "$LOAD_CPU" curl -s -o "$tmp/$c.scrape" -w '%{http_code}\n' \
            -m $((SCRAPE + 60)) "http://127.0.0.1:${port[$c]}/debug/pprof/$ep?seconds=$SCRAPE" \
            >>"$tmp/$c.codes" 2>/dev/null || echo "curl-failed" >>"$tmp/$c.codes"
        [[ -s $tmp/$c.scrape ]] && stat -c %s "$tmp/$c.scrape" >>"$tmp/$c.sizes"
    done
}

perf_start() {
    # shellcheck disable=SC2046
    "$tmp/incg" "$(cgdir perf-process)" taskset -c "$LOAD_CPU" $PERF record -q -F 100 -g -a \
        -o "$tmp/perf.data" -- sleep 3600 >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5                   # its events are open before the slice begins
}
perf_stop() {
    local t=""
    [[ -n $cg ]] || t=$(sed 's/.*) //' "/proc/$perf_pid/stat" | awk '{ print ($12 + $13) * 1e9 / '"$CLK_TCK"' }')
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=""
    rm -f "$tmp/perf.data" "$tmp/perf.data.old"
    [[ -n $cg ]] && t=$(cat "$cg/perf-process/cpuacct.usage")
    echo "$t"
}

# slice ROUND CONFIG PAIR: one slice of load on CONFIG's server; appends
# "ROUND CONFIG PAIR CPU_NS REQUESTS PRIVATE,PSS,RSS_KIB PERF_NS" to results.
slice() {
    local r=$1 c=$2 pair=$3 out=$tmp/slice.wrk cpu0 cpu1 nreq mem perf_ns=- p0
    [[ $c == perf ]] && { p0=$(perf_cpu_so_far); perf_start; }
    cpu0=$(server_cpu_ns "$c")
    run_wrk "$SLICE" "http://127.0.0.1:${port[$c]}$TARGET" "$out"
    cpu1=$(server_cpu_ns "$c")
    mem=$(server_mem "$c")
    [[ $c == perf ]] && perf_ns=$(awk -v a="$(perf_stop)" -v b="$p0" 'BEGIN { printf "%.0f", a - b }')
    nreq=$(awk '/ requests in / { print $1 }' "$out")
    echo "$r $c $pair $((cpu1 - cpu0)) $nreq $mem $perf_ns" >>"$tmp/results"
}
perf_cpu_so_far() { if [[ -n $cg && -f $cg/perf-process/cpuacct.usage ]]; then cat "$cg/perf-process/cpuacct.usage"; else echo 0; fi; }

# --- start every server, warm it, start the scrapes -------------------------------------
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
for c in $CONFIGS; do
    port[$c]=$(free_port)
    write_conf "$c" "${port[$c]}" "$(config_lines "$c")"
    SERVER_PREFIX="$tmp/incg $(cgdir "$c") taskset -c $SERVER_CPU"
    start_server "$c" "${port[$c]}"
    running_conf=""             # ours to stop (stop_all), not lib.sh's
    pidfile[$c]=$tmp/$c.pid
done
for c in $CONFIGS; do
    run_wrk "$WARMUP" "http://127.0.0.1:${port[$c]}$TARGET" "$tmp/$c.warmup"
done
for c in $CONFIGS; do
    case ${c%-base} in cpu100|cpu1000|trace)
        scrape_loop "$c" &
        scrape_pid[$c]=$! ;;
    esac
done
sleep 1
log "temp dir $tmp; ${cg:+cgroup $cg; }$ROUNDS rounds of paired ${SLICE}s slices; server CPU $SERVER_CPU, load CPU $LOAD_CPU; load $load_at_start"

# --- the rounds ---------------------------------------------------------------------------
: >"$tmp/results"
declare -A cpu_start
for c in $CONFIGS; do cpu_start[$c]=$(server_cpu_ns "$c"); done
t_start=$(date +%s.%N)
RANDOM=$SEED
if [[ $MODE == alternate ]]; then
    others=()
    for c in $CONFIGS; do [[ $c == none ]] || others+=("$c"); done
    pair=0
    for ((r = 1; r <= ROUNDS; r++)); do
        # Fisher-Yates with bash's seeded RANDOM: a reproducible order per round.
        order=("${others[@]}")
        for ((i = ${#order[@]} - 1; i > 0; i--)); do
            j=$((RANDOM % (i + 1)))
            t=${order[i]}; order[i]=${order[j]}; order[j]=$t
        done
        for c in "${order[@]}"; do
            pair=$((pair + 1))
            if (((pair + r) % 2)); then
                slice "$r" none "$pair"; slice "$r" "$c" "$pair"
            else
                slice "$r" "$c" "$pair"; slice "$r" none "$pair"
            fi
        done
        log "round $r/$ROUNDS done (load $(cut -d' ' -f1-3 /proc/loadavg))"
    done
else
    # Every server loaded at once by a wrk of its own, window after window: whatever else
    # runs on the machine hits all of them in the same instant. perf samples its server's
    # processes (-p) for the whole run: -a would sample every server alike.
    if [[ " $CONFIGS " == *" perf "* ]]; then
        ppid=$(cat "${pidfile[perf]}")
        # shellcheck disable=SC2046
        "$tmp/incg" "$(cgdir perf-process)" taskset -c "$LOAD_CPU" $PERF record -q -F 100 -g \
            -p "$(echo "$ppid" $(children_of "$ppid") | tr ' ' ',')" -o "$tmp/perf.data" \
            >/dev/null 2>&1 &
        perf_pid=$!
        sleep 1
    fi
    others=()
    for c in $CONFIGS; do [[ $c == none ]] || others+=("$c"); done
    for ((r = 1; r <= ROUNDS; r++)); do
        declare -A c0 wpid
        # A new order every window: no server always gets its load first.
        if [[ $MODE == pairs ]]; then
            # Each configuration in turn; which of the two starts first is shuffled too.
            order=(none "${others[(r - 1) % ${#others[@]}]}")
        else
            order=($CONFIGS)
        fi
        for ((i = ${#order[@]} - 1; i > 0; i--)); do
            j=$((RANDOM % (i + 1)))
            t=${order[i]}; order[i]=${order[j]}; order[j]=$t
        done
        for c in "${order[@]}"; do c0[$c]=$(server_cpu_ns "$c"); done
        for c in "${order[@]}"; do
            timeout $((SLICE + 30)) $WRK_PREFIX wrk -t"$THREADS" -c"$CONNS" -d"${SLICE}s" \
                "http://127.0.0.1:${port[$c]}$TARGET" >"$tmp/$c.wrk" 2>&1 &
            wpid[$c]=$!
        done
        for c in "${order[@]}"; do
            wait "${wpid[$c]}" || { cat "$tmp/$c.wrk" >&2; die "wrk failed ($c)"; }
            ! grep -q 'Non-2xx' "$tmp/$c.wrk" || { cat "$tmp/$c.wrk" >&2; die "non-2xx ($c)"; }
        done
        for c in "${order[@]}"; do
            c1=$(server_cpu_ns "$c")
            nreq=$(awk '/ requests in / { print $1 }' "$tmp/$c.wrk")
            echo "$r $c $r $((c1 - c0[$c])) $nreq $(server_mem "$c") -" >>"$tmp/results"
        done
        ((r % 10)) || log "window $r/$ROUNDS done (load $(cut -d' ' -f1-3 /proc/loadavg))"
    done
    if [[ -n $perf_pid ]]; then
        perf_total=$(perf_stop)
        perf_reqs=$(awk '$2 == "perf" { s += $5 } END { print s }' "$tmp/results")
        echo "perf perf process $(awk -v a="$perf_total" -v n="$perf_reqs" \
            'BEGIN { printf "%.2f", a / 1e3 / n }') us/req (perf record -F 100 -g -p)" >"$tmp/perfnote"
    fi
fi
t_end=$(date +%s.%N)
declare -A cpu_total
for c in $CONFIGS; do cpu_total[$c]=$(( $(server_cpu_ns "$c") - cpu_start[$c] )); done
# With no load for QUIET seconds (scrapes go on): each server's CPU per second that does not
# come with requests (a scrape's merge, symbolization and encoding; the agents' ticks).
: >"$tmp/quiet"
if ((QUIET > 0)); then
    declare -A q0
    for c in $CONFIGS; do q0[$c]=$(server_cpu_ns "$c"); done
    sleep "$QUIET"
    for c in $CONFIGS; do
        echo "$c $(( ($(server_cpu_ns "$c") - q0[$c]) / QUIET ))" >>"$tmp/quiet"
    done
fi
load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)
for c in "${!scrape_pid[@]}"; do kill "${scrape_pid[$c]}" 2>/dev/null || true; done
scrape_pid=()
sleep 1
: >"$tmp/totals"
for c in $CONFIGS; do echo "$c ${cpu_total[$c]}" >>"$tmp/totals"; done

# Scrapes must have answered 200 (the last one was cut by the end of the run); the trace's
# lost records are in its error_log.
: >"$tmp/notes"
[[ ! -f $tmp/perfnote ]] || cat "$tmp/perfnote" >>"$tmp/notes"
for c in $CONFIGS; do
    check_log "$c"
    case ${c%-base} in cpu100|cpu1000|trace)
        ok=$(grep -c '^200$' "$tmp/$c.codes" || true)
        bad=$(grep -vc '^200$' "$tmp/$c.codes" || true)
        ((bad <= 1)) || die "$c: scrapes answered $(sort "$tmp/$c.codes" | uniq -c | tr '\n' ' ')"
        ((ok >= 1)) || die "$c: no scrape completed (SCRAPE=$SCRAPE too long for the run?)"
        note="$ok scrapes"
        if [[ ${c%-base} == trace ]]; then
            lost=$(sed -n 's/.*PP0401: trace done.* \([0-9][0-9]*\) records lost.*/\1/p' \
                   "$tmp/$c.error_log" | awk '{ s += $1; n++ } END { printf "%d in %d", s, n }')
            note+=", records lost: $lost"
            # What the workers wrote per request (a module that does not log it: nothing).
            per=$(sed -n 's/.*PP0401: trace done.* \([0-9][0-9]*\) tasks, \([0-9][0-9]*\) events.* \([0-9][0-9]*\) bytes of records.*/\1 \2 \3/p' \
                  "$tmp/$c.error_log" | awk '{ t += $1; e += $2; b += $3 }
                      END { if (t) printf "%.0f B of records, %.1f events per task", b / t, e / t }')
            [[ -z $per ]] || note+=", $per"
        fi
        echo "$c $note" >>"$tmp/notes" ;;
    esac
done
stop_all

case $MODE in
    parallel) mode_text="windows of ${SLICE}s, every server loaded by its own wrk in each" ;;
    pairs) mode_text="windows of ${SLICE}s, none and the next configuration loaded at once by a wrk each" ;;
    *) mode_text="rounds, each config once a round (shuffled), each ${SLICE}s slice paired with one of none beside it" ;;
esac
summary=$($PY - "$tmp/results" "$tmp/totals" "$tmp/notes" "$CONFIGS" "$SLICE" "$tmp/quiet" "$MODE" <<'EOF'
import random, statistics, sys
res, totals, notes, order = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
rows = [l.split() for l in open(res) if l.strip()]
tot = {c: int(v) for c, v in (l.split() for l in open(totals))}
note = {}
for l in open(notes):
    c, _, n = l.strip().partition(" ")
    note[c] = n
quiet = {c: int(v) for c, v in (l.split() for l in open(sys.argv[6]))}
parallel = sys.argv[7] in ("parallel", "pairs")
slice_ns = float(sys.argv[5]) * 1e9
by_pair = {}
for r, c, pair, cpu, n, mem, pns in rows:
    by_pair.setdefault(pair, {})[c] = (int(cpu), int(n), tuple(int(x) for x in mem.split(",")), pns)
def q(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)
# In parallel mode a server gets a share of the CPU, so what it spends per second whatever
# the load (quiet) weighs more per request than at full rate. "full rate" moves it there:
# each slice's CPU less quiet x slice, per request, plus quiet / R, R being the requests a
# whole CPU serves without mod_pprof (1 / none's median CPU per request).
none_us = [d["none"][0] / 1e3 / d["none"][1] for d in by_pair.values() if "none" in d]
R = 1e6 / statistics.median(none_us) if none_us else 0
def full_rate(c, cpu, n):
    q = quiet.get(c, 0) - quiet.get("none", 0)
    if not parallel or not R or q <= 0:
        return cpu / n
    return max(cpu - q * slice_ns / 1e9, 0) / n + q / R
rng = random.Random(1)
print("%-12s %8s %8s %17s %17s %8s %18s %6s %7s %7s %22s %9s %9s  %s" % (
    "config", "us/req", "vs none", "IQR", "95% CI (median)", "pooled", "at full rate (CI)",
    "req/s", "quiet", "outside", "private/child med/max", "Pss", "RSS", "notes"))
for c in order:
    us, ratios, rss, reqs, cpu_in, perf_ns, fr = [], [], [], 0, 0, [], []
    pn_cpu = pn_req = pc_cpu = pc_req = 0
    for pair, d in by_pair.items():
        if c not in d:
            continue
        cpu, n, kib, pns = d[c]
        if c == "none":
            us.append(cpu / 1e3 / n); rss.append(kib); reqs += n; cpu_in += cpu
            continue
        if "none" not in d:
            continue
        nc, nn = d["none"][0], d["none"][1]
        us.append(cpu / 1e3 / n)
        ratios.append(100.0 * ((cpu / n) / (nc / nn) - 1))
        fr.append(100.0 * (full_rate(c, cpu, n) / full_rate("none", nc, nn) - 1))
        rss.append(kib); reqs += n; cpu_in += cpu
        pc_cpu += cpu; pc_req += n; pn_cpu += nc; pn_req += nn
        if pns != "-":
            perf_ns.append(int(pns) / n)
    if not us:
        continue
    outside = (tot.get(c, cpu_in) - cpu_in) / 1e3 / reqs
    nslices = len(us)
    rps = reqs / nslices / float(sys.argv[5])
    if ratios:
        med = statistics.median(ratios)
        boots = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
        ci = "%+6.2f..%+6.2f%%" % (boots[50], boots[1949])
        iqr = "%+6.2f..%+6.2f%%" % (q(ratios, .25), q(ratios, .75))
        pooled = "%+7.2f%%" % (100.0 * ((pc_cpu / pc_req) / (pn_cpu / pn_req) - 1))
        vs = "%+7.2f%%" % med
        fb = sorted(statistics.median(rng.choices(fr, k=len(fr))) for _ in range(2000))
        full = "%+6.2f%% (%+.1f..%+.1f)" % (statistics.median(fr), fb[50], fb[1949])
    else:
        vs, iqr, ci, pooled, full = "base", "", "", "", ""
    n = note.get(c, "")
    if perf_ns:
        n = (n + ", " if n else "") + "perf process %.2f us/req" % (statistics.median(perf_ns) / 1e3)
    print("%-12s %8.2f %8s %17s %17s %8s %18s %6.0f %7s %7.2f %8d/%8d KiB %5d KiB %5d KiB  %s" % (
        c, statistics.median(us), vs, iqr, ci, pooled, full if parallel else "", rps,
        "%.1f" % (quiet[c] / 1e6) if c in quiet else "-", outside,
        statistics.median(m[0] for m in rss), max(m[0] for m in rss),
        statistics.median(m[1] for m in rss), statistics.median(m[2] for m in rss), n))
EOF
)

cat <<EOF

---------------------------------------------------------------------------------------
mod_pprof cost per request ($(date -u +%Y-%m-%d), $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, Linux $(uname -r), $($APACHE2 -v | sed -n 's/^Server version: //p'))
load: $WRK_PREFIX wrk -t$THREADS -c$CONNS over loopback, GET $TARGET, $MPM MPM; every server
at once on CPU $SERVER_CPU; mode $MODE: $ROUNDS $mode_text;
CPU per request = the server's CPU in the slice (${cg:+cpuacct cgroup}${cg:-schedstat of every thread}) / requests in it.
"vs none": median of the ratios to none's slice of the same window/pair; IQR of them; bootstrap 95% interval of the median;
"pooled": sum of CPU / sum of requests, against the paired none slices; "quiet": the
server's CPU with no load ($QUIET s after the windows, scrapes going on), ms per second;
"at full rate" (parallel): the ratio with that quiet CPU weighed as at one whole CPU's
request rate instead of the server's share of it; "outside": the server's CPU outside its
slices, per request it served (us); private: median and max over its slices of the
children's mean private memory (Private_Dirty + Private_Clean of smaps_rollup) at the end
of a slice, what a child costs on its own; Pss and RSS (medians, likewise): RSS counts the
pages a child shares with the parent and its siblings once in every child. Machine load average: $load_at_start at start, $load_at_end at end.
$summary
command: $command
---------------------------------------------------------------------------------------
EOF
