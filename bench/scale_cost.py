#!/usr/bin/python3
"""What answering costs on a big prefork server (CHILDREN children, default 150), with
the modules of PPROF_BUILDDIR (default this tree): run it once per build to compare.

  index:     the index page (/debug/pprof/), median of 7, once every child holds heap
             records (churn requests of many sizes, PprofMemProfileRate 4096)
  first:     the first heap profile served by each of FIRST fresh connections (most land
             on a child that never collected: its first answer), median and max; then
             the private memory (Private_Dirty + Private_Clean) of the children that
             served one, median and max
  together:  CONC heap profiles at once, 3 each: median and max of their times
  memory:    every child's Pss and private memory at start, median
  trace:     a TRACE-second trace (default 5) of the server with no load: what all its
             processes spend per second during it against QUIET seconds before it with
             none, how long after its window it answers, its size (the collector asks
             every child each round: this is what a round costs at this scale)

With BUILDS="DIR_A DIR_B ..." only the trace line, side by side: one server per build
(the modules of each DIR), all started at once and left idle, then ROUNDS (default 3)
rounds, each a QUIET window and a trace of every server in turn (the order rotates); the
median and range of each build's figures over the rounds. The others' load cancels.

Apache's integration harness (tests/integration/conftest.py) runs the server: as root.
Usage: bench/scale_cost.py   (CHILDREN=150 FIRST=20 CONC=10 TRACE=5 QUIET=5)
       BUILDS="/work/base /work/mine" ROUNDS=3 bench/scale_cost.py
"""
import ctypes
import http.client
import os
import re
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("PPROF_BUILDDIR", os.path.dirname(HERE))

import conftest                                     # noqa: E402
from conftest import Httpd, _finish, make_tmpdir     # noqa: E402

CHILDREN = int(os.environ.get("CHILDREN", "150"))
FIRST = int(os.environ.get("FIRST", "20"))
CONC = int(os.environ.get("CONC", "10"))
TRACE = int(os.environ.get("TRACE", "5"))
QUIET = int(os.environ.get("QUIET", "5"))
BUILDS = os.environ.get("BUILDS", "").split()
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TICK = os.sysconf("SC_CLK_TCK")
ROW_RE = re.compile(r"<tr><td>(\d+)</td><td><a href='([^']*)\?debug=1'>([^<]*)</a>")


def memory(pid):
    m = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                m[parts[0].rstrip(":")] = int(parts[1])
    return m.get("Pss", 0), m.get("Private_Dirty", 0) + m.get("Private_Clean", 0)


_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


def cpu_seconds(pids):
    """The CPU time of every process in pids (each with all its threads) still alive:
    its CPU-time clock (clock_getcpuclockid, nanoseconds), else utime + stime from
    /proc/PID/stat (clock ticks: 2 ms per second of resolution over 5 s)."""
    total = 0
    for p in pids:
        clk, ts = ctypes.c_int(), _Timespec()
        if (_libc.clock_getcpuclockid(p, ctypes.byref(clk)) == 0 and
                _libc.clock_gettime(clk, ctypes.byref(ts)) == 0):
            total += ts.sec + ts.nsec / 1e9
            continue
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def timed(h, path):
    t0 = time.monotonic()
    r = h.get(path, timeout=120)
    assert r.status == 200, r
    return time.monotonic() - t0, r


def trace_cost(h):
    """(ms of CPU per second with no trace, during a trace, seconds it answered late,
    bytes) of h's processes."""
    pids = [h.read_pid()] + h.child_pids()
    c0, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(QUIET)
    quiet = (cpu_seconds(pids) - c0) / (time.monotonic() - t0)
    c0, t0 = cpu_seconds(pids), time.monotonic()
    took, r = timed(h, "/debug/pprof/trace?seconds=%d" % TRACE)
    during = (cpu_seconds(pids) - c0) / (time.monotonic() - t0)
    return 1000 * quiet, 1000 * during, took - TRACE, len(r.body)


def side_by_side(tuning):
    servers, dirs = [], []
    try:
        for b in BUILDS:
            conftest.MOD_PPROF = os.path.join(b, "mod_pprof", ".libs", "mod_pprof.so")
            conftest.MOD_PPROF_TEST = os.path.join(b, "tests", "module", ".libs",
                                                   "mod_pprof_test.so")
            d = make_tmpdir("mod_pprof-bench-scale-")
            dirs.append(d)
            h = Httpd("prefork", d, tuning=tuning)
            servers.append(h)
            h.start()
        until = time.monotonic() + 180
        while (any(len(h.child_pids()) < CHILDREN for h in servers) and
               time.monotonic() < until):
            time.sleep(0.2)
        time.sleep(2)
        print("prefork, %s children; %d s traces of idle servers, %d rounds" % (
            "/".join(str(len(h.child_pids())) for h in servers), TRACE, ROUNDS))
        got = {b: [] for b in BUILDS}
        for k in range(ROUNDS):
            for j in range(len(BUILDS)):
                i = (j + k) % len(BUILDS)
                got[BUILDS[i]].append(trace_cost(servers[i]))
        for b in BUILDS:
            q = [x[0] for x in got[b]]
            d = [x[1] for x in got[b]]
            late = [x[2] for x in got[b]]
            print("%-28s trace %.1f ms of CPU per second (%.1f-%.1f), %.1f (%.1f-%.1f) with "
                  "no trace; answered %.2f s after its window (median)" % (
                      b, statistics.median(d), min(d), max(d), statistics.median(q), min(q),
                      max(q), statistics.median(late)))
    finally:
        _finish(servers, dirs)


def main():
    tuning = ("ServerLimit {n}\nStartServers {n}\nMinSpareServers {n}\nMaxSpareServers {m}\n"
              "MaxRequestWorkers {n}\n").format(n=CHILDREN, m=CHILDREN + 1)
    if BUILDS:
        side_by_side(tuning)
        return
    d = make_tmpdir("mod_pprof-bench-scale-")
    h = Httpd("prefork", d, tuning=tuning, extra_conf="PprofMemProfileRate 4096\n")
    h.start()
    try:
        until = time.monotonic() + 120
        while len(h.child_pids()) < CHILDREN and time.monotonic() < until:
            time.sleep(0.1)
        time.sleep(1)
        kids = h.child_pids()
        mem = [memory(p) for p in kids]
        print("build %s, prefork, %d children" % (os.environ["PPROF_BUILDDIR"], len(kids)))
        print("memory:   per child at start: Pss median %d KiB, private median %d KiB" % (
            statistics.median(m[0] for m in mem), statistics.median(m[1] for m in mem)))

        def fill():
            for i in range(30):
                h.get("/pprof-test/churn?count=20&bytes=%d" % (1000 + 37 * i))
        ts = [threading.Thread(target=fill) for _ in range(CHILDREN // 3)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        times = [timed(h, "/debug/pprof/")[0] for _ in range(7)]
        rows = {n: int(c) for c, _, n in ROW_RE.findall(timed(h, "/debug/pprof/")[1].text)}
        print("index:    median %.3f s (min %.3f, max %.3f) of 7; %d heap records" % (
            statistics.median(times), min(times), max(times), rows["heap"]))

        first, served = [], set()
        for _ in range(FIRST):
            # One connection: the same prefork child answers both.
            c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=120)
            t0 = time.monotonic()
            c.request("GET", "/debug/pprof/heap")
            assert c.getresponse().read()[:2] == b"\x1f\x8b"
            first.append(time.monotonic() - t0)
            c.request("GET", "/pprof-test/pid")
            served.add(int(c.getresponse().read()))
            c.close()
        m = [memory(p)[1] for p in served if os.path.exists("/proc/%d" % p)]
        print("first:    heap profile on fresh connections: median %.3f s, max %.3f s (%d); "
              "private memory of the %d children that served them: median %d KiB, max %d "
              "KiB" % (statistics.median(first), max(first), FIRST, len(m),
                       statistics.median(m), max(m)))

        together = []

        def three():
            for _ in range(3):
                together.append(timed(h, "/debug/pprof/heap")[0])
        ts = [threading.Thread(target=three) for _ in range(CONC)]
        t0 = time.monotonic()
        [t.start() for t in ts]
        [t.join() for t in ts]
        print("together: %d heap profiles at once, 3 each: median %.3f s, max %.3f s, all "
              "in %.2f s" % (CONC, statistics.median(together), max(together),
                             time.monotonic() - t0))

        quiet, during, late, size = trace_cost(h)
        print("trace:    %d s with no load: the server's processes %.1f ms of CPU per second "
              "(%.1f with no trace), answered %.2f s after its window, %d bytes" % (
                  TRACE, during, quiet, late, size))
    finally:
        _finish([h], [d])


if __name__ == "__main__":
    main()
