"""mod_pprof beside Debian's mod_php (libapache2-mod-php8.2, prefork), the most common
Apache stack. PHP arms ITIMER_PROF for max_execution_time and takes every SIGPROF as "time
is up": our sampler must never use SIGPROF, and PHP's limit must keep working while we
profile. PHP's Zend MM takes memory in 2 MiB mmap chunks: the heap profile must see them
(and, with USE_ZEND_ALLOC=0, PHP's allocations through malloc).
"""
import os
import threading
import time

import pytest

from conftest import Httpd, _finish, go_pprof, make_tmpdir
from pprof_http import check_profile_response
from pprof_output import parse_top

PHP_MODULE = "/usr/lib/apache2/modules/libphp8.2.so"
PHP_HANDLER = "application/x-httpd-php"

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
}


def php_server(env=None):
    d = make_tmpdir("mod_pprof-it-php-")
    for name, text in SCRIPTS.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(d, name), 0o644)
    extra = """
LoadModule php_module %s
<FilesMatch "\\.php$">
    SetHandler %s
</FilesMatch>
""" % (PHP_MODULE, PHP_HANDLER)
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


class PhpLoad:
    """Threads requesting path until stopped; every answer that is not 200 with the
    expected body is a failed PHP request."""

    def __init__(self, httpd, path, expect, threads=3, max_seconds=60):
        self.httpd, self.path, self.expect = httpd, path, expect
        self.stop = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.ok = 0
        self.failed = []
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self):
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                r = self.httpd.get(self.path)
                if r.status == 200 and r.body.startswith(self.expect):
                    self.ok += 1
                else:
                    self.failed.append(r)
            except Exception as e:     # noqa: BLE001 -- every failure is reported
                self.failed.append(e)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)
        return False


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
