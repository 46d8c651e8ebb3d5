"""Graceful restarts and graceful-stop while profiles run (issue 10).

A graceful restart leaves the old generation's children serving what they serve (a
collector in a 30 s CPU profile or trace among them) beside the new generation's, and
every endpoint keeps working for both (README, "Graceful restarts and graceful-stop"):
  - a CPU profile and a trace taken across two graceful restarts answer 200 with a body
    the real tools read, and children of the new generations join the window;
  - one CPU profile and one trace at a time holds across generations (Go's 500 texts for
    a second one asked of a new child);
  - a goroutine dump asked of a new child shows an old child still serving, and a dump
    and a heap delta across a restart answer in full;
  - a restart that stops the children while a profile runs leaves no window behind for
    the new generation to join or find busy;
  - once the old children are gone nothing of theirs stays: no socket or hand-over file,
    no shared memory, no descriptor of the parent, no armed timer, no extra thread;
  - graceful-stop lets a profile and a trace in flight finish, and the server then leaves
    no socket directory behind.
No child may crash: every server's error_log is checked at teardown (conftest).
"""
import os
import re
import signal
import threading
import time

import pytest

import go_trace
from conftest import go_trace_d, pid_alive, pprof_top, protoc_decode, STOP_TIMEOUT
from pprof_http import Requests, check_error, check_profile_response, wait_for
from pprof_output import DecodedProfile

PROFILE = "/debug/pprof/profile"
TRACE = "/debug/pprof/trace"
HEAP = "/debug/pprof/heap"
GOROUTINE = "/debug/pprof/goroutine"
CPU_IN_USE = b"Could not enable CPU profiling: cpu profiling already in use\n"
TRACE_IN_USE = b"Could not enable tracing: tracing is already enabled\n"
BURN = "/pprof-test/burn?ms=30"
WINDOW = 6                  # seconds of the profile and trace the restarts fall into
RESTARTS_AT = (1.0, 2.5)    # seconds into the window
SLEEP_MS = 7000
SLEEP = "/pprof-test/sleep?ms=%d" % SLEEP_MS
SAMPLER_SIGNAL = signal.SIGRTMIN + 6
# One row in the scoreboard: after a graceful restart, worker gives the row of a child
# that is going away (some of its threads ended) to a new child while the old one still
# serves; the scoreboard then no longer names the old child. (Event waits for the row
# instead: its new generation would start only once the old child is gone.)
TIGHT = {"worker": "ServerLimit 1\nStartServers 1\nMaxRequestWorkers 8\n"}


class Load(Requests):
    """Clients asking for BURN in a loop: CPU for every generation's children. A graceful
    restart drops no request."""

    def __init__(self, httpd, clients=3, max_seconds=90):
        super().__init__(httpd, [()] * clients, max_seconds)

    def one(self, httpd):
        r = httpd.get(BURN)
        return None if r.status == 200 else r.status


class Fetch(threading.Thread):
    """One GET in the background: .resp (or .error), .end (monotonic)."""

    def __init__(self, httpd, path, timeout=60):
        super().__init__()
        self.httpd, self.path, self.timeout = httpd, path, timeout
        self.resp = self.error = None
        self.end = None

    def run(self):
        try:
            self.resp = self.httpd.get(self.path, timeout=self.timeout)
        except Exception as e:          # noqa: BLE001 -- reported by result()
            self.error = e
        self.end = time.monotonic()

    def result(self):
        self.join(timeout=self.timeout + 30)
        assert not self.is_alive(), "%s did not end" % self.path
        assert self.error is None, (self.path, self.error)
        return self.resp


def sleep_until(t):
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def save(tmp_path, name, body):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(body)
    return path


def readable_profile(r, tmp_path, filename, name):
    """A 200 profile attached as filename that `go tool pprof` reads; decoded."""
    check_profile_response(r, filename)
    pprof_top(save(tmp_path, name, r.body))
    return DecodedProfile(r.body, protoc_decode)


def readable_trace(r, tmp_path, name):
    """A 200 trace that passes every rule of go_trace.py and `go tool trace -d`."""
    assert r.status == 200, r
    assert r.headers.get("content-disposition") == 'attachment; filename="trace"', r
    assert go_trace.check(r.body, strict_ts=True, strict_start=True) == []
    p = go_trace_d(save(tmp_path, name, r.body))
    assert p.returncode == 0, p.stderr[-2000:]


def sample_pids(prof):
    """The values of the samples' numeric label pid."""
    return {prof.one(label, "num") for smp in prof.m.get("sample", [])
            for label in smp.get("label", []) if prof.s(prof.one(label, "key")) == "pid"}


def sampling_children(httpd):
    """Children with a POSIX timer of the CPU sampler's signal armed right now."""
    out = set()
    for pid in httpd.child_pids():
        try:
            with open("/proc/%d/timers" % pid) as f:
                if re.search(r"^signal: %d/" % SAMPLER_SIGNAL, f.read(), re.M):
                    out.add(pid)
        except OSError:
            pass
    return out


# debug=2: "goroutine TID [STATE, pid P, ROLE, NAME, STATUS, client C, vhost V, handler H,
# request "R", S s in request]:"
DUMP_REQUEST_RE = re.compile(r'^goroutine \d+ \[[^,]*, pid (?P<pid>\d+), .*, request '
                             r'"(?P<request>.*)", -?[0-9.]+ s in request\]:$', re.M)


def access_log_pid(httpd, request_line):
    """The pid (%P) that served the one access_log entry for request_line."""
    def entries():
        return [int(m.group(1)) for m in re.finditer(
            r'"%s" .* pid=(\d+)$' % re.escape(request_line), httpd.access_log(), re.M)]
    pids = wait_for(entries, 10)
    assert len(pids) == 1, (request_line, pids)
    return pids[0]


# --- what a process holds ------------------------------------------------------------------

def fds(pid):
    """What pid's descriptors are open on, pipes and sockets by kind (a restart may
    make new ones of the same kind: the pipe of death)."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(re.sub(r":\[\d+\]$", "", os.readlink("/proc/%d/fd/%s" % (pid, fd))))
        except OSError:
            pass
    return sorted(out)


def shared_anon_mappings(pid):
    """Anonymous shared mappings (apr_shm's anonymous segments, the scoreboard's) and
    any /dev/shm or SysV one."""
    out = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            if "/dev/zero" in line or "/dev/shm/" in line or "/SYSV" in line:
                out.append(line.split(None, 5)[-1].strip())
    return sorted(out)


def sysv_segments(pids):
    """SysV shared memory segments made or last attached by any of pids."""
    out = []
    with open("/proc/sysvipc/shm") as f:
        next(f)
        for line in f:
            cols = line.split()
            if int(cols[4]) in pids or int(cols[5]) in pids:
                out.append(cols[1])
    return out


def armed_timers(pid):
    try:
        with open("/proc/%d/timers" % pid) as f:
            return f.read().count("signal:")
    except OSError:
        return 0


def thread_count(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return None


def thread_counts(httpd):
    """The set of thread counts of the live children, once two looks 0.2 s apart agree
    (a child that just started may still be starting its threads)."""
    def look():
        return {p: thread_count(p) for p in httpd.child_pids()}
    prev = look()
    for _ in range(50):
        time.sleep(0.2)
        cur = look()
        if cur == prev:
            break
        prev = cur
    return set(cur.values()) - {None}


def sysfd_helpers(httpd):
    """The helpers (pp_sysfd, named pprof-sysfd) of this server: one per generation that
    still has a child or the parent holding its socket."""
    out = set()
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/comm" % d) as f:
                if f.read().strip() != "pprof-sysfd":
                    continue
            with open("/proc/%s/cmdline" % d) as f:
                if httpd.conf in f.read().split("\0"):
                    out.add(int(d))
        except (OSError, ValueError):
            continue
    return out


def socket_dir(httpd):
    return os.path.join(httpd.rundir, "mod_pprof")


@pytest.fixture(scope="module")
def baseline(httpd):
    """What the first generation holds, before any restart of this file's tests."""
    parent = httpd.read_pid()
    children = httpd.child_pids()
    return {
        "parent": parent,
        "fds": fds(parent),
        "shm": shared_anon_mappings(parent),
        "sysv": sysv_segments({parent, *children}),
        "threads": thread_counts(httpd),
    }


# --- the tests -----------------------------------------------------------------------------

def test_profile_and_trace_across_two_graceful_restarts(httpd, baseline, tmp_path):
    """A CPU profile and a trace of WINDOW seconds, two graceful restarts inside: both
    answer 200 with a readable body, children of the new generations were profiled, and
    each new generation finds the windows of the old one's collector busy."""
    with Load(httpd):
        time.sleep(0.3)
        gens = [set(httpd.child_pids())]
        t0 = time.monotonic()
        prof = Fetch(httpd, PROFILE + "?seconds=%d" % WINDOW)
        trace = Fetch(httpd, TRACE + "?seconds=%d" % WINDOW)
        prof.start()
        trace.start()
        refused = []
        for i, at in enumerate(RESTARTS_AT):
            sleep_until(t0 + at)
            seen = set().union(*gens)
            httpd.graceful()
            gens.append(set(httpd.child_pids()) - seen)
            # Asked of a child of the new generation while the old one's collector runs.
            # The restart fell inside the windows (else this cannot judge: a machine too
            # slow for WINDOW).
            assert prof.is_alive() and trace.is_alive(), "window over at restart %d" % i
            refused.append((httpd.get(PROFILE + "?seconds=1&gen=%d" % i),
                            httpd.get(TRACE + "?seconds=1&gen=%d" % i)))
        p, t = prof.result(), trace.result()
    readable_trace(t, tmp_path, "across.trace")
    profile = readable_profile(p, tmp_path, "profile", "across.pb.gz")
    pids = sample_pids(profile)
    assert pids & gens[0], (pids, gens)
    # Children born after the restarts joined the window they found open.
    assert pids & (gens[1] | gens[2]), (pids, gens)
    for i, (rp, rt) in enumerate(refused):
        check_error(rp, 500, CPU_IN_USE)
        check_error(rt, 500, TRACE_IN_USE)
        line = "GET %s?seconds=1&gen=%d HTTP/1.1" % (PROFILE, i)
        assert access_log_pid(httpd, line) in gens[i + 1], (line, gens)
    # The windows are free again, for any generation.
    readable_profile(httpd.get(PROFILE + "?seconds=1"), tmp_path, "profile", "next.pb.gz")
    readable_trace(httpd.get(TRACE + "?seconds=1"), tmp_path, "next.trace")


def test_dumps_across_a_graceful_restart(make_httpd, mpm, tmp_path):
    """A goroutine delta and a heap delta across a graceful restart answer in full, and a
    goroutine dump asked of a new child shows the old child still serving a request, even
    once the scoreboard no longer names it (TIGHT); a profile and a trace taken then
    answer in full."""
    httpd = make_httpd(extra_conf=TIGHT.get(mpm, ""))
    sleeper = Fetch(httpd, SLEEP)
    sleeper.start()
    time.sleep(0.5)
    old = set(httpd.child_pids())
    heap = Fetch(httpd, HEAP + "?seconds=2")
    gor = Fetch(httpd, GOROUTINE + "?seconds=2")
    heap.start()
    gor.start()
    time.sleep(0.5)
    httpd.graceful()
    dump = httpd.get(GOROUTINE + "?debug=2")
    # The old child still served it (else this cannot judge).
    assert sleeper.is_alive(), "the sleeper ended before the dump"
    new = set(httpd.child_pids()) - old
    assert access_log_pid(httpd, "GET %s?debug=2 HTTP/1.1" % GOROUTINE) in new
    assert dump.status == 200, dump
    assert dump.text.endswith("\n\n"), dump.text[-300:]
    serving = [int(m.group("pid")) for m in DUMP_REQUEST_RE.finditer(dump.text)
               if m.group("request") == "GET %s HTTP/1.1" % SLEEP]
    assert len(serving) == 1, (old, new, dump.text[:3000])
    assert serving[0] in old, (serving, old)
    readable_profile(heap.result(), tmp_path, "heap-delta", "heap-delta.pb.gz")
    readable_profile(gor.result(), tmp_path, "goroutine-delta", "goroutine.pb.gz")
    # A profile and a trace while the old child still serves (in a row of a new one).
    prof = Fetch(httpd, PROFILE + "?seconds=1")
    prof.start()
    readable_trace(httpd.get(TRACE + "?seconds=1"), tmp_path, "both.trace")
    readable_profile(prof.result(), tmp_path, "profile", "both.pb.gz")
    assert sleeper.is_alive(), "the sleeper ended before the profile and trace"
    assert sleeper.result().status == 200


def hard_restart(h):
    """apache2 -k restart: the children are stopped (SIGTERM), a new generation starts."""
    before = h.error_log().count("resuming normal operations")
    p = h._apachectl("restart")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert wait_for(lambda: h.error_log().count("resuming normal operations") > before and
                    h._answers(), 30), "no new generation after restart"


def test_hard_restart_frees_the_window_of_a_killed_collector(httpd, baseline):
    """A restart that stops the children while a CPU profile runs: the new generation
    neither joins that window (no child samples) nor finds it busy."""
    prof = Fetch(httpd, PROFILE + "?seconds=20")
    prof.start()
    assert wait_for(lambda: sampling_children(httpd), 10), "the profile did not start"
    hard_restart(httpd)
    # (prefork's collector is killed: error_log says PP0007 as its window is freed;
    # worker's and event's see their connection closed and stop by themselves.)
    assert not sampling_children(httpd)
    r = httpd.get(PROFILE + "?seconds=1")
    assert r.status == 200, r
    prof.join(timeout=30)


def test_nothing_of_old_generations_stays(httpd, baseline):
    """Once the old generations' children are gone: the socket directory holds the
    sockets of the live children only, the parent holds what it held before the restarts
    (descriptors, shared memory), one helper runs, and the children have the first
    generation's threads and no timer armed."""
    old = set(httpd.child_pids())
    httpd.graceful()
    assert wait_for(lambda: not old & set(httpd.child_pids()), 30), (old, httpd.child_pids())
    children = set(httpd.child_pids())
    parent = httpd.read_pid()
    assert parent == baseline["parent"]

    # Children are started and reaped as the MPM sees fit: compare a settled view.
    def listing():
        files = sorted(os.listdir(socket_dir(httpd)))
        return files, sorted("%d.sock" % p for p in httpd.child_pids())

    def same():
        files, want = listing()
        return (files, want) if files == want else None

    files, want = wait_for(same, 10) or listing()
    assert files == want, (files, want)
    # (Settled: once, an event parent showed two more pipes for a moment.)
    assert wait_for(lambda: fds(parent) == baseline["fds"], 5), (fds(parent), baseline["fds"])
    # The old generations' helpers ended with their last child (one when run as root).
    assert wait_for(lambda: len(sysfd_helpers(httpd)) <= 1, 10), sysfd_helpers(httpd)
    assert shared_anon_mappings(parent) == baseline["shm"], baseline["shm"]
    assert sysv_segments({parent, *children}) == baseline["sysv"]
    for pid in children:
        assert armed_timers(pid) == 0, pid
    assert thread_counts(httpd) == baseline["threads"], (
        {p: thread_count(p) for p in httpd.child_pids()}, baseline["threads"])


def graceful_stop(h):
    """apache2 -k graceful-stop: the parent lets its children finish, then exits. Returns
    the parent's pid."""
    pid = h.read_pid()
    p = h._apachectl("graceful-stop")
    assert p.returncode == 0, (p.stdout, p.stderr)
    return pid


def test_graceful_stop_during_profile_and_trace(make_httpd, tmp_path):
    """graceful-stop while a CPU profile and a trace run: both finish with a readable
    200, the server then exits and leaves no socket directory behind."""
    h = make_httpd()
    with Load(h, clients=2, max_seconds=2):
        prof = Fetch(h, PROFILE + "?seconds=3")
        trace = Fetch(h, TRACE + "?seconds=3")
        prof.start()
        trace.start()
        time.sleep(1)
    parent = graceful_stop(h)
    p, t = prof.result(), trace.result()
    readable_profile(p, tmp_path, "profile", "stop.pb.gz")
    readable_trace(t, tmp_path, "stop.trace")
    assert wait_for(lambda: not pid_alive(parent), STOP_TIMEOUT), "parent still runs"
    h.running = False
    assert not os.path.exists(socket_dir(h)), os.listdir(socket_dir(h))
