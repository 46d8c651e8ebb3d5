"""bench/php_frames_cost.py: what PHP frames cost a CPU sample in a real mod_php server.

bench/interp_cost measures the splice in a fake interpreter loop, with its caches warm or
its data swept. This measures it where it runs: Debian's apache2 (prefork) with mod_php,
mod_pprof and mod_pprof_php, a script whose work runs DEPTH distinct PHP functions deep
(f1 calls f2 ... calls fDEPTH, which loops), loaded on CONNS connections while a CPU
profile of SECONDS runs. Every child times one sample in four around the splice with the
TSC (pp_interp_stats.hist) and the collector logs the median and p90 of the window
(PP0107); this prints them, per depth, with opcache on and off (a server each).

The time is wall time inside the signal handler: what the splice reads after PHP ran
for a sampling period (its code, mod_pprof's tables, PHP's functions and names) is
mostly out of the core's caches then, and the other children and whatever else runs on
the machine take the core between samples. So it moves with the machine's load: compare
figures from one run.

Usage: /usr/bin/python3 bench/php_frames_cost.py   (root; BUILDDIR: the build tree, default
this one; DEPTHS "1 10 40", SECONDS 6, CONNS 2, HZ 100, OPCACHE both|on|off)
"""
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
os.environ.setdefault("PPROF_BUILDDIR", os.environ.get("BUILDDIR", TOP))

import conftest  # noqa: E402
import php_soak  # noqa: E402  (bench/, this file's directory)

DEPTHS = [int(d) for d in os.environ.get("DEPTHS", "1 10 40").split()]
SECONDS = int(os.environ.get("SECONDS", "6"))
CONNS = int(os.environ.get("CONNS", "2"))
HZ = int(os.environ.get("HZ", "100"))
OPCACHE = os.environ.get("OPCACHE", "both")
PP0107 = re.compile(r"PP0107: interpreter frames: (\d+) of (\d+) samples had some; the splice "
                    r"took ((?:over )?\d+ ns) \(median\), ((?:over )?\d+ ns) \(p90\)")
MAX_DEPTH = max(DEPTHS)


def script():
    """deep.php?d=D: {main} calls f(MAX_DEPTH - D + 1), each calls the next, the last loops."""
    lines = ["<?php"]
    for i in range(1, MAX_DEPTH + 1):
        if i < MAX_DEPTH:
            lines.append("function f%d($n) { return f%d($n) + 1; }" % (i, i + 1))
        else:
            lines.append("function f%d($n) { $s = 0; for ($i = 0; $i < $n; $i++) "
                         "{ $s += $i %% 7; } return $s; }" % i)
    lines.append("$d = max(1, min(%d, (int)($_GET['d'] ?? 1)));" % MAX_DEPTH)
    lines.append("echo 'ok ', call_user_func('f' . (%d - $d + 1), 100000), \"\\n\";"
                 % MAX_DEPTH)
    return "\n".join(lines) + "\n"


def run(opcache):
    d = conftest.make_tmpdir("mod_pprof-bench-phpcost-")
    path = os.path.join(d, "deep.php")
    with open(path, "w") as f:
        f.write(script())
    os.chmod(path, 0o644)
    h = conftest.Httpd("prefork", d, extra_conf=php_soak.php_conf(opcache, "PprofCPURate %d\n"
                                                                  % HZ), timeout=60)
    h.start()
    try:
        for depth in DEPTHS:
            stop = threading.Event()
            bad = []

            def load():
                while not stop.is_set():
                    r = h.get("/deep.php?d=%d" % depth, timeout=60)
                    if r.status != 200 or not r.body.startswith(b"ok "):
                        bad.append(r)
            ts = [threading.Thread(target=load) for _ in range(CONNS)]
            [t.start() for t in ts]
            time.sleep(1)
            before = len(PP0107.findall(h.error_log()))
            r = h.get("/debug/pprof/profile?seconds=%d" % SECONDS, timeout=SECONDS + 60)
            stop.set()
            [t.join() for t in ts]
            found = PP0107.findall(h.error_log())[before:]
            if r.status != 200 or bad or not found:
                print("opcache %s, depth %d: no figure (profile %d, %d bad answers, %d PP0107)"
                      % ("on" if opcache else "off", depth, r.status, len(bad), len(found)))
                continue
            stacks, samples, q50, q90 = found[-1]
            print("opcache %-3s  depth %2d: the splice %s (median), %s (p90); %s of %s samples "
                  "had PHP frames" % ("on" if opcache else "off", depth, q50, q90, stacks,
                                      samples))
            sys.stdout.flush()
    finally:
        conftest._finish([h], [d])


def main():
    load = os.getloadavg()[0]
    print("build %s, prefork, PprofCPURate %d, %d connections, %d s profiles, load average "
          "%.1f" % (conftest.BUILDDIR, HZ, CONNS, SECONDS, load))
    for opcache in {"both": (True, False), "on": (True,), "off": (False,)}[OPCACHE]:
        run(opcache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
