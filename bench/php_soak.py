"""bench/php_soak.py: mod_pprof and mod_pprof_php under a long PHP load (run through
bench/php_soak.sh).

Debian's apache2 (prefork) with mod_php, mod_pprof and mod_pprof_php serves PHP scripts
that exercise what the PHP frame walk meets: functions, methods and closures, files
included on every request (one included 30 times a request, its top-level code doing the
work), functions and classes declared at run time and in eval'd code, generators,
exceptions, recursion, callbacks through built-ins (a nested interpreter loop), held
memory and long waits. Meanwhile every endpoint that captures stacks is requested over and
over (CPU profiles, goroutine dumps in three forms, heap, allocs, traces). Half of the time
runs with opcache on, half with it off (a server each); children are recycled every
RECYCLE connections.

At the end it prints requests served, failed PHP requests (any answer but 200 with the
script's own body), children that crashed (error_log), mod_pprof errors, and how many CPU
profiles named the scripts' functions. Exit status 1 when a PHP request failed, a child
crashed, mod_pprof logged an error, or no profile of a phase named a PHP function.

Environment: SOAK_SECONDS (600), RECYCLE (MaxConnectionsPerChild, 300), OPCACHE (both, on,
off), BUILDDIR (the build tree), KEEP_TMP (1: keep the servers' directories), CORE_DIR (if
set: crashed children leave their core dumps there: CoreDumpDirectory, which also makes
httpd's children dumpable, and no core size limit).
"""
import collections
import gzip
import os
import re
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
os.environ.setdefault("PPROF_BUILDDIR", os.environ.get("BUILDDIR", TOP))

import conftest  # noqa: E402
import soak  # noqa: E402  (bench/, this file's directory)

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
RECYCLE = int(os.environ.get("RECYCLE", "300"))
OPCACHE = os.environ.get("OPCACHE", "both")
CORE_DIR = os.environ.get("CORE_DIR", "")
PHP_MODULE = "/usr/lib/apache2/modules/libphp8.2.so"
MOD_PPROF_PHP = os.path.join(conftest.BUILDDIR, "mod_pprof_php", ".libs", "mod_pprof_php.so")

SCRIPTS = {
    "hot.php": """<?php
function php_alpha($n) { $s = 0; for ($i = 0; $i < $n; $i++) { $s += $i % 7; } return $s; }
function php_beta($n) { $s = 0; for ($i = 0; $i < $n; $i++) { $s += $i % 7; } return $s; }
echo "ok hot ", php_alpha(150000) + php_beta(50000), "\\n";
""",
    "lib/util.php": """<?php
// Included on every request: its top-level code runs each time; its functions are
// declared at run time, once.
if (!function_exists('fib')) {
    function fib($n) { return $n < 2 ? $n : fib($n - 1) + fib($n - 2); }
}
$util_loaded = strlen(__FILE__);
""",
    "lib/model.php": """<?php
class Model {
    private $base;
    function __construct($base) { $this->base = $base; }
    function score($i) { return ($i * $this->base) % 97; }
    static function make($n) { return new static($n); }
    function fail() { throw new RuntimeException("expected"); }
    function __call($name, $args) { return count($args); }
}
""",
    "app.php": """<?php
include __DIR__ . '/lib/util.php';
require_once __DIR__ . '/lib/model.php';
if (!function_exists('runtime_fn')) {
    function runtime_fn($x) { return $x * 2; }
}
$inc = eval('return function ($v) { return $v + 1; };');
$m = Model::make(50);
$sum = array_sum(array_map(function ($i) use ($m) { return $m->score($i); }, range(1, 300)));
$gen = (function () { for ($i = 0; $i < 200; $i++) { yield $i; } })();
foreach ($gen as $v) { $sum += runtime_fn($v); }
try { $m->fail(); } catch (RuntimeException $e) { $sum += 1; }
$sum += $m->undefined_method(1, 2, 3);
$arr = range(300, 1, -1);
usort($arr, function ($a, $b) { return $a <=> $b; });
$sum += fib(18) + $util_loaded;
echo "ok app ", $inc($sum), "\\n";
""",
    "dyn.php": """<?php
// A function declared in eval'd code, one of a few names: each request compiles its own.
$k = mt_rand(0, 19);
eval("function dyn_$k(\\$n) { \\$s = 0; for (\\$i = 0; \\$i < \\$n; \\$i++) { \\$s += \\$i; } return \\$s; }");
echo "ok dyn ", call_user_func("dyn_$k", 20000), "\\n";
""",
    "mem.php": """<?php
function hold_strings($n) { $keep = array(); for ($i = 0; $i < $n; $i++) { $keep[] = str_repeat('x', 300000); } return $keep; }
$k = hold_strings(20);
usleep(50000);
echo "ok mem ", count($k), "\\n";
""",
    "slow.php": """<?php
function php_sleeper($ms) { $end = microtime(true) + $ms / 1000; while (microtime(true) < $end) { usleep(20000); } return $ms; }
echo "ok slow ", php_sleeper(1500), "\\n";
""",
    "lib/work.php": """<?php
// Included many times per request: its own top-level code does the work (samples in an
// {include} frame), and PHP destroys its op_array as each include returns (opcache off),
// before the frame is unlinked; a class and a function are declared here at run time.
if (!class_exists('RuntimeDeclared', false)) {
    class RuntimeDeclared { function run($n) { $s = 0; for ($i = 0; $i < $n; $i++) { $s ^= $i; } return $s; } }
}
if (!function_exists('declared_in_include')) {
    function declared_in_include($n) { return $n + 1; }
}
$acc = 0;
for ($i = 0; $i < 2000; $i++) { $acc += $i & 3; }
return declared_in_include($acc) + (new RuntimeDeclared())->run(200);
""",
    "inc.php": """<?php
// Files included and code eval'd over and over, whose top-level code runs the work.
$t = 0;
for ($k = 0; $k < 30; $k++) {
    $t += include __DIR__ . '/lib/work.php';
    $t += eval('$e = 0; for ($j = 0; $j < 500; $j++) { $e += $j; } return $e;');
}
echo "ok inc ", $t, "\n";
""",
    "opcache.php": """<?php
$s = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo "ok opcache ", ($s && $s['opcache_enabled']) ? "on" : "off", "\\n";
""",
}

# (path, the start of the body a good answer has)
LOAD = [("/hot.php", b"ok hot "), ("/app.php", b"ok app "), ("/dyn.php", b"ok dyn "),
        ("/mem.php", b"ok mem 20"), ("/slow.php", b"ok slow 1500"), ("/app.php", b"ok app "),
        ("/inc.php", b"ok inc ")]
# What the generic soak scrapes (bench/soak.py), less what PHP's scripts add nothing to.
PHP_SCRAPED = ("/debug/pprof/profile?", "/debug/pprof/trace?", "/debug/pprof/goroutine",
               "/debug/pprof/heap", "/debug/pprof/allocs")
SCRAPERS = [(p, s) for p, s in soak.SCRAPERS
            if p.startswith(PHP_SCRAPED) and p != "/debug/pprof/heap?seconds=1"]
IN_USE = soak.IN_USE


def php_conf(opcache, more=""):
    """httpd.conf lines for mod_php and mod_pprof_php, opcache on or off, then more."""
    return """
LoadModule php_module %s
LoadModule pprof_php_module %s
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
%s
%s""" % (PHP_MODULE, MOD_PPROF_PHP,
         # On is Debian's default; turning it on per directory only makes PHP warn at every
         # request ("can't be temporary enabled").
         "" if opcache else "php_admin_flag opcache.enable Off", more)


class Phase:
    """One server (opcache on or off) and its load."""

    def __init__(self, opcache, seconds):
        self.opcache, self.seconds = opcache, seconds
        self.dir = conftest.make_tmpdir("mod_pprof-php-soak-")
        for name, text in SCRIPTS.items():
            path = os.path.join(self.dir, name)
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
        os.chmod(os.path.join(self.dir, "lib"), 0o755)
        extra = php_conf(opcache, "MaxConnectionsPerChild %d\n%s\n" % (
            RECYCLE, "CoreDumpDirectory %s" % CORE_DIR if CORE_DIR else ""))
        self.httpd = conftest.Httpd("prefork", self.dir, extra_conf=extra, timeout=60)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.served = collections.Counter()
        self.failed = []
        self.unexpected = []
        self.profiles = 0
        self.profiles_php = 0
        self.profiles_inc = 0
        self.dumps_php = 0

    def note(self, path, failure=None, unexpected=None):
        with self.lock:
            self.served[path.split("?")[0]] += 1
            if failure:
                self.failed.append((time.monotonic(), path, failure))
            if unexpected:
                self.unexpected.append((time.monotonic(), path, unexpected))

    def php_client(self, path, expect):
        while not self.stop.is_set():
            try:
                r = self.httpd.get(path, timeout=60)
                ok = r.status == 200 and r.body.startswith(expect)
                self.note(path, None if ok else "%d %r" % (r.status, r.body[:200]))
            except Exception as e:  # noqa: BLE001 -- every failure is counted
                self.note(path, repr(e))

    def scraper(self, path, statuses):
        while not self.stop.is_set():
            try:
                r = self.httpd.get(path, timeout=60)
            except Exception as e:  # noqa: BLE001
                self.note(path, unexpected=repr(e))
                continue
            ok = r.status in statuses and (r.status != 500 or r.body in IN_USE)
            self.note(path, unexpected=None if ok else "%d %r" % (r.status, r.body[:120]))
            if r.status != 200:
                continue
            if path.startswith("/debug/pprof/profile"):
                # A name in the profile's string table: some sample had that frame.
                body = gzip.decompress(r.body)
                with self.lock:
                    self.profiles += 1
                    self.profiles_php += b"php_alpha" in body
                    self.profiles_inc += b"lib/work.php" in body
            elif path.endswith("debug=2"):
                with self.lock:
                    self.dumps_php += b"php_sleeper(...)" in r.body

    def run(self):
        self.httpd.start()
        r = self.httpd.get("/opcache.php")
        want = b"ok opcache " + (b"on" if self.opcache else b"off")
        if not r.body.startswith(want):
            raise RuntimeError("opcache is not %s: %r" % (want, r.body))
        threads = [threading.Thread(target=self.php_client, args=pe) for pe in LOAD]
        threads += [threading.Thread(target=self.scraper, args=(p, frozenset(s)))
                    for p, s in SCRAPERS]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < self.seconds:
                time.sleep(0.5)
        finally:
            self.stop.set()
            for t in threads:
                t.join(120)
            self.took = time.monotonic() - t0
            self.log = self.httpd.error_log()
            self.httpd.stop()

    def report(self):
        crashed = [l for l in self.log.splitlines()
                   if any(p in l for p in conftest.FATAL_LOG_PATTERNS)]
        errors = [l for l in self.log.splitlines()
                  if re.search(r"\[pprof(_php)?:(error|crit|alert|emerg)\]", l)]
        php = sum(n for p, n in self.served.items() if p.endswith(".php"))
        print("opcache %s: %.0f s, %d PHP requests, %d scrapes (%s)" % (
            "on" if self.opcache else "off", self.took, php,
            sum(self.served.values()) - php,
            ", ".join("%s %d" % kv for kv in sorted(self.served.items()))))
        print("  failed PHP requests: %d" % len(self.failed))
        for f in self.failed[:10]:
            print("     %s: %s" % (f[1], f[2]))
        print("  unexpected scrape answers: %d" % len(self.unexpected))
        for u in self.unexpected[:10]:
            print("     %s: %s" % (u[1], u[2]))
        print("  crashed children (error_log): %d" % len(crashed))
        for l in crashed[:10]:
            print("     " + l)
        print("  mod_pprof errors in error_log: %d" % len(errors))
        for l in errors[:10]:
            print("     " + l)
        print("  CPU profiles naming php_alpha: %d of %d, the included lib/work.php: %d; "
              "debug=2 dumps showing php_sleeper: %d" % (
                  self.profiles_php, self.profiles, self.profiles_inc, self.dumps_php))
        return len(self.failed), bool(crashed or errors or self.unexpected or
                                      not self.profiles_php)


def main():
    if not os.path.isfile(MOD_PPROF_PHP):
        print("php_soak: %s not built (configure found no PHP headers)" % MOD_PPROF_PHP)
        return 1
    if CORE_DIR:
        # Written by www-data; inherited by apache2 from this process.
        os.makedirs(CORE_DIR, exist_ok=True)
        os.chmod(CORE_DIR, 0o1777)
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    modes = {"both": [True, False], "on": [True], "off": [False]}[OPCACHE]
    phases = [Phase(m, SECONDS / len(modes)) for m in modes]
    failed, bad = 0, False
    print("-" * 87)
    print("mod_pprof PHP soak: prefork, %.0f s, MaxConnectionsPerChild %d" % (SECONDS, RECYCLE))
    for ph in phases:
        ph.run()
        f, b = ph.report()
        failed += f
        bad = bad or b
    print("failed PHP requests: %d" % failed)
    print("-" * 87)
    rc = 1 if failed or bad else 0
    for ph in phases:
        if os.environ.get("KEEP_TMP") != "1" and rc == 0:
            subprocess.run(["rm", "-rf", ph.dir])
        else:
            print("server directory kept: %s" % ph.dir)
    return rc


if __name__ == "__main__":
    sys.exit(main())
