"""bench/soak.py: mod_pprof under a long mixed load (run through bench/soak.sh).

Debian's apache2 with the freshly built module serves a mixed load (static files, CPU
burns, sleeps, lock and backend waits, allocations) while every endpoint is requested
over and over by scrapers of its own, children are recycled (MaxConnectionsPerChild) and
the server restarts gracefully every RESTART seconds. At the end it prints: requests
served, answers that were not what Go would give (unexpected), children that crashed
(error_log), and the growth of open fds and RSS per child and of the parent's fds.
Exit status 1 when anything unexpected happened.

Environment: MPM (event), SOAK_SECONDS (600), RESTART (60), RECYCLE (MaxConnectionsPerChild,
500), BUILDDIR (the source tree), KEEP_TMP (1: keep the server's directory).
"""
import collections
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
os.environ.setdefault("PPROF_BUILDDIR", os.environ.get("BUILDDIR", TOP))

import conftest  # noqa: E402

MPM = os.environ.get("MPM", "event")
SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
RESTART = float(os.environ.get("RESTART", "60"))
RECYCLE = int(os.environ.get("RECYCLE", "500"))
WINDOW = 5             # readings (one a second) at each end of a child's life

LOAD = ["/bench.html", "/pprof-test/burn?ms=5", "/pprof-test/sleep?ms=20",
        "/pprof-test/lock?ms=5", "/pprof-test/backend?ms=10", "/pprof-test/churn?count=20&bytes=65536"]
IN_USE = {b"Could not enable CPU profiling: cpu profiling already in use\n",
          b"Could not enable tracing: tracing is already enabled\n"}
# (path, answers that are as Go's): a window kind may be busy (500 with Go's text).
SCRAPERS = [
    ("/debug/pprof/profile?seconds=2", {200, 500}),
    ("/debug/pprof/trace?seconds=1", {200, 500}),
    ("/debug/pprof/goroutine?debug=1", {200}),
    ("/debug/pprof/goroutine?debug=2", {200}),
    ("/debug/pprof/goroutine", {200}),
    ("/debug/pprof/heap", {200}),
    ("/debug/pprof/heap?seconds=1", {200}),
    ("/debug/pprof/allocs?debug=1", {200}),
    ("/debug/pprof/threadcreate", {200}),
    ("/debug/pprof/", {200}),
    ("/debug/pprof/cmdline", {200}),
    ("/debug/pprof/symbol", {200}),
]


class Soak:
    def __init__(self):
        self.dir = conftest.make_tmpdir("mod_pprof-soak-")
        with open(os.path.join(self.dir, "bench.html"), "w") as f:
            f.write("x" * 1024)
        os.chmod(os.path.join(self.dir, "bench.html"), 0o644)
        self.httpd = conftest.Httpd(MPM, self.dir, extra_conf="MaxConnectionsPerChild %d\n"
                                    % RECYCLE, timeout=60)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.served = collections.Counter()
        self.unexpected = []
        # pid -> the first and the last WINDOW readings of (descriptors, rss KiB), the
        # descriptors as a multiset of what they are (a path, pipe:[inode], ...): a
        # collecting child holds a socket to every child it asks for a moment, so what
        # is compared is what every reading at each end holds (a leaked descriptor stays
        # in all of them, a collection's sockets do not).
        self.first = {}
        self.last = {}
        self.parent_fds = []
        self.restarts = 0

    def note(self, path, ok, what):
        with self.lock:
            self.served[path.split("?")[0]] += 1
            if not ok:
                self.unexpected.append((time.monotonic(), path, what))

    def client(self, path, statuses=frozenset({200})):
        while not self.stop.is_set():
            try:
                r = self.httpd.get(path, timeout=60)
                ok = r.status in statuses and (r.status != 500 or r.body in IN_USE)
                self.note(path, ok, "%d %r" % (r.status, r.body[:120]))
            except Exception as e:  # noqa: BLE001 -- every failure is counted
                # A graceful restart closes idle keep-alive connections; a request is made
                # on a fresh connection each time, so a reset is unexpected.
                self.note(path, False, repr(e))

    def watch(self):
        # A child's client connections come and go with the load: only its other
        # descriptors (files, pipes, Unix sockets: ours among them) can show a leak.
        def own_fds(pid):
            tcp = set()
            for name in ("tcp", "tcp6"):
                try:
                    with open("/proc/%d/net/%s" % (pid, name)) as f:
                        next(f)
                        tcp.update(line.split()[9] for line in f)
                except (OSError, StopIteration, IndexError):
                    pass
            held = collections.Counter()
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if not (link.startswith("socket:[") and link[8:-1] in tcp):
                    held[link] += 1
            return held

        while not self.stop.wait(1.0):
            parent = self.httpd.read_pid()
            if parent:
                try:
                    self.parent_fds.append(len(os.listdir("/proc/%d/fd" % parent)))
                except OSError:
                    pass
            for pid in self.httpd.child_pids(parent):
                try:
                    fds = own_fds(pid)
                    with open("/proc/%d/status" % pid) as f:
                        rss = int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
                except (OSError, StopIteration, ValueError):
                    continue
                first = self.first.setdefault(pid, [])
                if len(first) < WINDOW:
                    first.append((fds, rss))
                self.last.setdefault(pid, collections.deque(maxlen=WINDOW)).append((fds, rss))

    def run(self):
        self.httpd.start()
        threads = [threading.Thread(target=self.client, args=(p,)) for p in LOAD]
        threads += [threading.Thread(target=self.client, args=(p, frozenset(s)))
                    for p, s in SCRAPERS]
        threads.append(threading.Thread(target=self.watch))
        for t in threads:
            t.start()
        t0 = time.monotonic()
        next_restart = t0 + RESTART
        try:
            while time.monotonic() - t0 < SECONDS:
                time.sleep(0.5)
                if time.monotonic() >= next_restart:
                    self.httpd.graceful()
                    self.restarts += 1
                    next_restart += RESTART
        finally:
            self.stop.set()
            for t in threads:
                t.join(120)
            log = self.httpd.error_log()
            self.httpd.stop()
        return time.monotonic() - t0, log

    def report(self, took, log):
        crashed = [l for l in log.splitlines()
                   if any(p in l for p in conftest.FATAL_LOG_PATTERNS)]
        errors = [l for l in log.splitlines() if conftest.PPROF_ERROR_RE.search(l)]
        def steady(readings):
            held = readings[0][0]
            for fds, _ in readings:
                held = held & fds
            return sum(held.values())

        growth_fd = [steady(self.last[p]) - steady(self.first[p]) for p in self.last]
        growth_rss = [self.last[p][-1][1] - self.first[p][0][1] for p in self.last]
        total = sum(self.served.values())
        print("-" * 87)
        print("mod_pprof soak: %s MPM, %.0f s, graceful restart every %.0f s (%d), "
              "MaxConnectionsPerChild %d" % (MPM, took, RESTART, self.restarts, RECYCLE))
        print("requests: %d (%s)" % (total, ", ".join("%s %d" % kv for kv in
                                                      sorted(self.served.items()))))
        print("unexpected answers: %d" % len(self.unexpected))
        for u in self.unexpected[:10]:
            print("   %.1f s %s: %s" % (u[0], u[1], u[2]))
        print("crashed children (error_log): %d" % len(crashed))
        for l in crashed[:10]:
            print("   " + l)
        print("mod_pprof errors in error_log: %d" % len(errors))
        for l in errors[:10]:
            print("   " + l)
        print("children seen: %d; growth of the descriptors a child keeps (client connections aside): max %+d, "
              "median %+d; RSS growth per child: max %+d KiB, median %+d KiB" % (
                  len(self.last), max(growth_fd or [0]), sorted(growth_fd or [0])[len(growth_fd) // 2],
                  max(growth_rss or [0]), sorted(growth_rss or [0])[len(growth_rss) // 2]))
        if self.parent_fds:
            print("parent fds: first %d, last %d, max %d" % (
                self.parent_fds[0], self.parent_fds[-1], max(self.parent_fds)))
        print("-" * 87)
        return 0 if not (self.unexpected or crashed or errors) else 1


def main():
    s = Soak()
    took, log = s.run()
    rc = s.report(took, log)
    if os.environ.get("KEEP_TMP") != "1" and rc == 0:
        subprocess.run(["rm", "-rf", s.dir])
    else:
        print("server directory kept: %s" % s.dir)
    return rc


if __name__ == "__main__":
    sys.exit(main())
