"""mod_pprof beside Debian's mod_php (libapache2-mod-php8.2, prefork), the most common
Apache stack. PHP arms ITIMER_PROF for max_execution_time and takes every SIGPROF as "time
is up": our sampler must never use SIGPROF, and PHP's limit must keep working while we
profile. PHP's Zend MM takes memory in 2 MiB mmap chunks: the heap profile must see them
(and, with USE_ZEND_ALLOC=0, PHP's allocations through malloc).

With mod_pprof_php loaded too, the profiles name the script's own functions (file and
line) above the interpreter's loop: CPU profile, goroutine dumps, heap, trace.
"""
import os
import re
import subprocess
import threading
import time

import pytest

import go_trace
from conftest import BUILDDIR, SRCDIR, Httpd, _finish, go_pprof, make_tmpdir
from pprof_http import Requests, check_profile_response
from pprof_output import parse_top

PHP_MODULE = "/usr/lib/apache2/modules/libphp8.2.so"
PHP_HANDLER = "application/x-httpd-php"
MOD_PPROF_PHP = os.path.join(BUILDDIR, "mod_pprof_php", ".libs", "mod_pprof_php.so")

SCRIPTS = {
    # Known hot PHP functions: php_alpha does 3 times the work of php_beta.
    "hot.php": """<?php
function php_alpha($n) { $s = 0; for ($i = 0; $i < $n; $i++) { $s += $i % 7; } return $s; }
function php_beta($n) { $s = 0; for ($i = 0; $i < $n; $i++) { $s += $i % 7; } return $s; }
$n = isset($_GET['n']) ? (int)$_GET['n'] : 100000;
echo "ok ", php_alpha(3 * $n) + php_beta($n), "\\n";
""",
    # Burns CPU past its own limit: PHP must stop it (ITIMER_PROF, SIGPROF).
    "overrun.php": """<?php
set_time_limit(1);
$s = 0;
while (true) { $s += sqrt($s + 1); }
""",
    # Holds memory (Zend MM: mmap'd chunks; with USE_ZEND_ALLOC=0: malloc) for a while.
    "hold.php": """<?php
$mib = isset($_GET['mib']) ? (int)$_GET['mib'] : 64;
$keep = array();
for ($i = 0; $i < $mib; $i++) { $keep[] = str_repeat(chr(65 + $i % 26), 1048000); }
usleep(isset($_GET['ms']) ? 1000 * (int)$_GET['ms'] : 3000000);
echo "held ", count($keep), "\\n";
""",
    # A long script, waiting in a method's function: a thread dump's signal cuts a sleep
    # short, so it waits in a loop until its time is up.
    "slow.php": """<?php
function php_sleeper($ms) { $end = microtime(true) + $ms / 1000; while (microtime(true) < $end) { usleep(20000); } return $ms; }
class Waiter { function wait($ms) { return php_sleeper($ms); } }
$w = new Waiter();
echo "slept ", $w->wait(isset($_GET['ms']) ? (int)$_GET['ms'] : 3000), "\\n";
""",
}


def php_server(env=None, frames=False, extra_conf=""):
    """A prefork server with mod_php (and with frames, mod_pprof_php) serving SCRIPTS."""
    d = make_tmpdir("mod_pprof-it-php-")
    for name, text in SCRIPTS.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(d, name), 0o644)
    extra = """
LoadModule php_module %s
%s
<FilesMatch "\\.php$">
    SetHandler %s
</FilesMatch>
%s
""" % (PHP_MODULE, "LoadModule pprof_php_module %s" % MOD_PPROF_PHP if frames else "",
       PHP_HANDLER, extra_conf)
    return Httpd("prefork", d, extra_conf=extra, env=env), d


@pytest.fixture(scope="module")
def php():
    if not os.path.isfile(PHP_MODULE):
        pytest.fail("%s missing: scripts/setup.sh installs libapache2-mod-php8.2" % PHP_MODULE,
                    pytrace=False)
    s, d = php_server()
    try:
        s.start()
        yield s
    finally:
        _finish([s], [d])


class PhpLoad(Requests):
    """Threads requesting path until stopped; every answer that is not 200 with the
    expected body is a failed PHP request (in failed; the test judges them)."""

    def __init__(self, httpd, path, expect, threads=3, max_seconds=60):
        super().__init__(httpd, [()] * threads, max_seconds, strict=False)
        self.path, self.expect = path, expect
        self.ok = 0
        self.failed = self.errors

    def one(self, httpd):
        r = httpd.get(self.path)
        if r.status == 200 and r.body.startswith(self.expect):
            with self.lock:
                self.ok += 1
            return None
        return r


def save(httpd, name, body):
    path = os.path.join(httpd.dir, name)
    with open(path, "wb") as f:
        f.write(body)
    return path


def test_cpu_profile_of_php_load(php):
    """A 6 s CPU profile under PHP load: 200, at least 80% of the PHP handler's time under
    php_execute_script, and no PHP request fails."""
    with PhpLoad(php, "/hot.php?n=100000", b"ok ") as load:
        time.sleep(0.5)
        r = php.get("/debug/pprof/profile?seconds=6", timeout=60)
    assert not load.failed, load.failed[:3]
    assert load.ok >= 10, load.ok
    check_profile_response(r, "profile")
    f = save(php, "php-cpu.pb.gz", r.body)
    top = parse_top(top_tagged(f), quantity=seconds_of)
    total = sum(flat for flat, _ in top.values())
    assert total > 1.0, top
    under = top.get("php_execute_script", (0, 0))[1]
    print("PHP handler CPU %.2f s, under php_execute_script %.2f s (%.0f%%)" % (
        total, under, 100 * under / total))
    assert under >= 0.8 * total, top
    # No child was left out: no absent-pid comment, no refusal in error_log.
    assert "PP0301" not in php.error_log()
    assert "PP0103" not in php.error_log()


def top_tagged(f):
    """-top of the PHP handler's samples only."""
    p = go_pprof("-top", "-nodecount=10000", "-tagfocus=handler=%s" % PHP_HANDLER, f)
    assert p.returncode == 0, p.stderr
    return p.stdout


def seconds_of(v):
    """A -top duration (e.g. 1.20s, 350ms) in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "mins": 60.0,
             "hrs": 3600.0}
    for u in sorted(units, key=len, reverse=True):
        if v.endswith(u):
            return float(v[:-len(u)]) * units[u]
    return float(v)


def overrun(php):
    """Run overrun.php: (status, seconds taken); PHP must stop it at its 1 s limit."""
    t0 = time.monotonic()
    r = php.get("/overrun.php", timeout=60)
    return r, time.monotonic() - t0


@pytest.mark.parametrize("profiling", [False, True], ids=["alone", "while-profiling"])
def test_max_execution_time_still_stops_a_script(php, profiling):
    before = php.error_log().count("Maximum execution time of 1 second exceeded")
    result = {}
    if profiling:
        t = threading.Thread(target=lambda: result.setdefault(
            "r", php.get("/debug/pprof/profile?seconds=4", timeout=60)))
        t.start()
        time.sleep(0.5)
    try:
        r, took = overrun(php)
    finally:
        if profiling:
            t.join(60)
    print("overrun.php stopped after %.2f s (limit 1 s of CPU)" % took)
    assert r.status == 500, r
    # 1 s of CPU; a script PHP failed to stop would run until Apache's Timeout (60 s).
    assert took < 10, took
    assert php.error_log().count("Maximum execution time of 1 second exceeded") == before + 1
    if profiling:
        check_profile_response(result["r"], "profile")


def held_heap(server, mib=32, requests=2):
    """inuse_space -top rows (MiB) of a heap profile taken while `requests` scripts each
    hold `mib` MiB of PHP strings."""
    threads = [threading.Thread(target=lambda: server.get("/hold.php?mib=%d&ms=4000" % mib))
               for _ in range(requests)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        r = server.get("/debug/pprof/heap", timeout=60)
    finally:
        for t in threads:
            t.join(60)
    check_profile_response(r, "heap")
    f = save(server, "php-heap.pb.gz", r.body)
    p = go_pprof("-sample_index=inuse_space", "-unit=MB", "-top", "-nodecount=10000", f)
    assert p.returncode == 0, p.stderr
    # pprof's "MB" is 2^20 bytes.
    return parse_top(p.stdout, quantity=lambda v: float(v.rstrip("MB") or 0))


def test_heap_sees_zend_mm_chunks(php):
    """Zend MM maps its memory in 2 MiB chunks that never reach malloc: the heap profile
    samples those anonymous mappings, so what PHP scripts hold is there, under
    php_execute_script (at chunk level: each ~1 MiB string takes a chunk of its own)."""
    top = held_heap(php)
    under = top.get("php_execute_script", (0, 0))[1]
    print("held by 2 scripts of 32 MiB (Zend MM): %.0f MiB under php_execute_script" % under)
    assert under >= 0.8 * 64, top


def test_heap_with_use_zend_alloc_0_names_php_allocations():
    """USE_ZEND_ALLOC=0 in Apache's environment: PHP allocates through malloc, and the
    heap shows its allocations one by one (__zend_malloc) with the script's share."""
    s, d = php_server(env={"USE_ZEND_ALLOC": "0"})
    try:
        s.start()
        top = held_heap(s)
    finally:
        _finish([s], [d])
    under = top.get("php_execute_script", (0, 0))[1]
    flat = top.get("__zend_malloc", (0, 0))[0]
    print("held by 2 scripts of 32 MiB (malloc): %.0f MiB under php_execute_script, "
          "%.0f MiB in __zend_malloc" % (under, flat))
    assert under >= 0.8 * 64, top
    assert flat >= 0.8 * 64, top


# --- PHP functions in the profiles (mod_pprof_php) -------------------------------------------

def require_mod_pprof_php():
    if not os.path.isfile(MOD_PPROF_PHP):
        pytest.fail("%s missing: configure found no PHP headers (scripts/setup.sh installs "
                    "php8.2-dev)" % MOD_PPROF_PHP, pytrace=False)


def start_frames_server(env=None):
    require_mod_pprof_php()
    s, d = php_server(env=env, frames=True, extra_conf="PprofCPURate 250\n")
    s.start()
    # The provider is registered, and nothing in it warned.
    log = s.error_log()
    assert "PP0800: PHP 8.2" in log, log[-2000:]
    assert not re.search(r"\[pprof_php:(warn|error)", log), log[-2000:]
    return s, d


@pytest.fixture(scope="module")
def php_frames():
    s, d = start_frames_server()
    try:
        yield s
    finally:
        s.check_error_log()
        assert not re.search(r"\[pprof_php:(warn|error)", s.error_log())
        _finish([s], [d])


def traces(out):
    """go tool pprof -traces: [(value, [frames leaf first])]."""
    result = []
    for block in out.split("-----------+-------------------------------------------------------")[1:]:
        value, frames = None, []
        for line in block.splitlines():
            if not line.strip():
                continue
            if value is None:
                if line.split()[0].endswith(":"):
                    continue            # a label: "   handler:  application/x-httpd-php"
                value, first = line.split(None, 1)
                frames = [first.strip()]
            else:
                frames.append(line.strip())
        if value is not None:
            result.append((value, frames))
    return result


# The ratio's noise is binomial (see test_200's RATIO_*): with n samples in php_alpha and
# php_beta, the band 2.55..3.45 is -2.26/+2.84 sd of php_beta's share at n = 1500 (a
# 10 s window on a loaded machine gave 1660: about 1.4% of runs would fail), -3.7/+4.6
# sd at n = 4000. So windows are added until n reaches PHP_RATIO_TARGET.
PHP_RATIO_HZ = 250              # start_frames_server's PprofCPURate
PHP_RATIO_TARGET = 4000
PHP_RATIO_FETCHES = 4


def test_php_functions_named_in_cpu_profile(php_frames):
    """hot.php's php_alpha does 3 times the work of php_beta: the CPU profile names both,
    in that ratio (within 15%), each right above the interpreter's loop under
    php_execute_script, with the script's file and lines."""
    alpha = beta = 0.0
    fetches = []
    with PhpLoad(php_frames, "/hot.php?n=400000", b"ok ",
                 max_seconds=90 * PHP_RATIO_FETCHES) as load:
        time.sleep(0.5)
        for k in range(PHP_RATIO_FETCHES):
            r = php_frames.get("/debug/pprof/profile?seconds=10", timeout=90)
            check_profile_response(r, "profile")
            fk = save(php_frames, "php-frames-cpu-%d.pb.gz" % k, r.body)
            top = parse_top(top_tagged(fk), quantity=seconds_of)
            alpha += top["php_alpha"][1]
            beta += top["php_beta"][1]
            fetches.append((top["php_alpha"][1], top["php_beta"][1]))
            if k == 0:
                f, first_top = fk, top          # the profile the checks below read
            if (alpha + beta) * PHP_RATIO_HZ >= PHP_RATIO_TARGET:
                break
    assert not load.failed, load.failed[:3]
    n = (alpha + beta) * PHP_RATIO_HZ
    ratio = alpha / beta
    print("php_alpha %.2f s, php_beta %.2f s (%d samples; per window %s): ratio %.2f "
          "(3 expected)" % (alpha, beta, n, fetches, ratio))
    assert 3 * 0.85 <= ratio <= 3 * 1.15, (ratio, fetches, first_top)
    # What the splice cost is measured and logged (PP0107): the samples taken with the
    # provider registered, most of them in PHP here, and a time spent for them.
    m = re.findall(r"PP0107: interpreter frames: (\d+) of (\d+) samples had some; the "
                   r"splice took (?:over )?(\d+) ns \(median\), (?:over )?(\d+) ns \(p90\)",
                   php_frames.error_log())
    assert m, php_frames.error_log()[-2000:]
    stacks, samples, q50, q90 = (int(x) for x in m[-1])
    print("PP0107: %d of %d samples with PHP frames, the splice %d ns (median), %d ns (p90)"
          % (stacks, samples, q50, q90))
    assert samples >= stacks > samples // 2 and 0 < q50 <= q90, m[-1]
    # Every stack with a PHP function has it above {main}, execute_ex and
    # php_execute_script, in that order towards the root. (A thread's samples before its
    # first request in the window are of the interrupted PC alone: when that was in
    # execute_ex, the PHP frames are known all the same, and the stack ends there.)
    p = go_pprof("-traces", f)
    assert p.returncode == 0, p.stderr
    seen = 0
    for _, frames in traces(p.stdout):
        for fn in ("php_alpha", "php_beta"):
            if fn in frames:
                i = frames.index(fn)
                assert frames[i + 1:i + 3] == ["{main}", "execute_ex"], frames
                assert frames[i + 3:] == [] or "php_execute_script" in frames[i + 3:], frames
                seen += frames[i + 3:] != []
    assert seen >= 2, p.stdout[:3000]
    # The script's file and lines: both functions are one-liners (lines 2 and 3), and
    # {main} calls them from line 5.
    hot = os.path.join(php_frames.dir, "hot.php")
    p = go_pprof("-lines", "-top", "-nodecount=10000", f)
    assert p.returncode == 0, p.stderr
    assert re.search(r"php_alpha %s:2$" % re.escape(hot), p.stdout, re.M), p.stdout
    assert re.search(r"php_beta %s:3$" % re.escape(hot), p.stdout, re.M), p.stdout
    assert re.search(r"\{main\} %s:5$" % re.escape(hot), p.stdout, re.M), p.stdout
    # -list reads the script itself.
    p = go_pprof("-list=^php_alpha$", f)
    assert p.returncode == 0, p.stderr
    assert "function php_alpha($n)" in p.stdout, p.stdout
    assert re.search(r"ROUTINE ======================== php_alpha in %s" % re.escape(hot),
                     p.stdout), p.stdout


def slow_request(server, ms=6000):
    """A thread requesting slow.php; returns (thread, result dict)."""
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", server.get("/slow.php?ms=%d" % ms, timeout=60)))
    t.start()
    return t, result


def test_goroutine_dumps_show_the_php_stack_of_a_worker(php_frames):
    """A worker running a long script: goroutine?debug=2 shows its PHP frames with the
    script's file:line between the native frames that run them; debug=1 and the proto
    name them too."""
    t, result = slow_request(php_frames)
    try:
        time.sleep(1.0)
        d2 = php_frames.get("/debug/pprof/goroutine?debug=2", timeout=60)
        d1 = php_frames.get("/debug/pprof/goroutine?debug=1", timeout=60)
        d0 = php_frames.get("/debug/pprof/goroutine", timeout=60)
    finally:
        t.join(60)
    assert result["r"].status == 200 and result["r"].body.startswith(b"slept 6000"), result
    slow = os.path.join(php_frames.dir, "slow.php")
    text = d2.body.decode()
    blocks = [b for b in text.split("\n\n") if "php_sleeper(" in b]
    assert len(blocks) == 1, text[:4000]
    frames = re.findall(r"^(\S+)\(\.\.\.\)\n\t(.+?)(?::(\d+))? \+0x", blocks[0], re.M)
    names = [fn for fn, _, _ in frames]
    i = names.index("php_sleeper")
    # The built-in usleep or microtime, called from php_sleeper's loop (line 2).
    assert names[i - 1] in ("usleep", "microtime"), names
    assert frames[i - 1][1] == "[internal function]", frames
    assert frames[i] == ("php_sleeper", slow, "2"), frames
    assert frames[i + 1] == ("Waiter::wait", slow, "3"), frames
    assert frames[i + 2] == ("{main}", slow, "5"), frames
    assert names[i + 3] == "execute_ex", names
    assert "php_execute_script" in names[i + 3:], names
    assert "handler application/x-httpd-php" in blocks[0].splitlines()[0], blocks[0][:300]
    # debug=1: one frame line per PC, with its file:line.
    text = d1.body.decode()
    assert re.search(r"^#\t0x[0-9a-f]+\tphp_sleeper\+0x0\t%s:2$" % re.escape(slow), text,
                     re.M), text[:4000]
    assert re.search(r"^#\t0x[0-9a-f]+\tWaiter::wait\+0x0\t%s:3$" % re.escape(slow), text,
                     re.M), text[:4000]
    f = save(php_frames, "php-goroutine.pb.gz", d0.body)
    p = go_pprof("-traces", f)
    assert p.returncode == 0, p.stderr
    assert any(fr[fr.index("php_sleeper") + 1:fr.index("php_sleeper") + 3]
               == ["Waiter::wait", "{main}"] for _, fr in traces(p.stdout)
               if "php_sleeper" in fr), p.stdout[:3000]


@pytest.mark.parametrize("alloc", ["zend_mm", "malloc"])
def test_heap_samples_taken_in_php_carry_its_frames(php_frames, alloc):
    """What hold.php holds was allocated by its str_repeat calls from its top-level code:
    the heap profile says so, through Zend MM's chunks or, with USE_ZEND_ALLOC=0, malloc."""
    if alloc == "malloc":
        s, d = start_frames_server(env={"USE_ZEND_ALLOC": "0"})
    else:
        s, d = php_frames, None
    try:
        top = held_heap(s)
    finally:
        if d:
            s.check_error_log()
            _finish([s], [d])
    under_repeat = top.get("str_repeat", (0, 0))[1]
    under_main = top.get("{main}", (0, 0))[1]
    print("held by 2 scripts of 32 MiB (%s): %.0f MiB under str_repeat, %.0f MiB under "
          "{main}" % (alloc, under_repeat, under_main))
    assert under_repeat >= 0.8 * 64, top
    assert under_main >= under_repeat, top


def test_trace_cpu_samples_carry_php_frames(php_frames):
    """The trace's CPU samples (taken while a CPU profile runs) name PHP functions too,
    with the script's file and line."""
    out = {}
    with PhpLoad(php_frames, "/hot.php?n=400000", b"ok ", max_seconds=60) as load:
        time.sleep(0.5)
        prof = threading.Thread(target=lambda: out.setdefault(
            "p", php_frames.get("/debug/pprof/profile?seconds=5", timeout=60)))
        prof.start()
        time.sleep(0.5)
        tr = php_frames.get("/debug/pprof/trace?seconds=3", timeout=60)
        prof.join(60)
    assert not load.failed, load.failed[:3]
    assert tr.status == 200, tr
    check_profile_response(out["p"], "profile")
    parsed = go_trace.parse(tr.body)
    hot = os.path.join(php_frames.dir, "hot.php")
    php = [f for ev in parsed.events if ev.name == "CPUSample" and ev.stk in parsed.stacks
           for f in parsed.stacks[ev.stk].frames if f.fn in ("php_alpha", "php_beta")]
    assert php, "no PHP function in the trace's CPU samples"
    assert {(f.fn, f.file, f.line) for f in php} <= {("php_alpha", hot, 2),
                                                    ("php_beta", hot, 3)}, php[:5]


def test_php_soak_short():
    """bench/php_soak.sh for 30 s: PHP load (opcache on, then off; includes, functions
    declared at run time, closures, generators, eval) while every endpoint is scraped:
    no crash, no failed PHP request, PHP frames in the profiles."""
    require_mod_pprof_php()
    env = dict(os.environ, SOAK_SECONDS="30", NOBUILD="1", BUILDDIR=BUILDDIR)
    p = subprocess.run(["bash", os.path.join(SRCDIR, "bench", "php_soak.sh")], env=env,
                       capture_output=True, text=True, timeout=300)
    print(p.stdout[-3000:])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert re.search(r"^failed PHP requests: 0$", p.stdout, re.M), p.stdout


def test_mod_pprof_php_without_php_says_so_and_stays_out():
    """mod_pprof_php loaded without php_module: one warning, and mod_pprof works as ever."""
    require_mod_pprof_php()
    d = make_tmpdir("mod_pprof-it-php-")
    s = Httpd("prefork", d, extra_conf="LoadModule pprof_php_module %s\n" % MOD_PPROF_PHP)
    try:
        s.start()
        r = s.get("/debug/pprof/goroutine?debug=1", timeout=60)
        assert r.status == 200, r
        log = s.error_log()
        assert "PP0802: no PHP loaded (LoadModule php_module): PHP frames are left out of " \
               "profiles" in log, log[-2000:]
        assert "PP0800" not in log, log[-2000:]
    finally:
        _finish([s], [d])
