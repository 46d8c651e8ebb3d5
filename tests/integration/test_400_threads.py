"""/debug/pprof/goroutine and /debug/pprof/threadcreate: every thread of every child.

goroutine: each child's agent sends a directed signal to each of its threads and gives up
on a thread after 250 ms (it then shows mod_pprof.threadDidNotAnswer). debug=0 is a
profile.proto of goroutine/count samples labelled pid, role and (for a worker serving a
request) handler and vhost; debug=1 is Go's printCountProfile text; debug=2 one block per
thread with its request (from the thread's own request record). threadcreate: the creation stack of each
live thread (pthread_create interposed).

Workloads from mod_pprof_test: sleep?ms=N sleeps in pprof_test_sleep, burn?ms=N burns
CPU, thread?ms=N starts a thread in pprof_test_spawn that lives N ms. Every loop and wait
is bounded in time.
"""
import collections
import ctypes
import errno
import http.client
import os
import platform
import re
import threading
import time

import pytest

from conftest import (MODULES_DIR, SANITIZE, SRCDIR, Httpd, _finish, _check_modules,
                      go_pprof, make_tmpdir, protoc_decode)
from pprof_output import DecodedProfile, parse_top as read_top, parse_tags as read_tags
from pprof_http import check_profile_response, check_text_response, wait_for

GOROUTINE = "/debug/pprof/goroutine"
THREADCREATE = "/debug/pprof/threadcreate"

SLEEPERS = 4
# The fetches made while they sleep must end 0.3 s before they wake: longer under ASan,
# where a dump of prefork's children beside the burners takes seconds on a loaded machine.
SLEEP_MS = 6000 if SANITIZE else 4000
SLEEP = "/pprof-test/sleep?ms=%d" % SLEEP_MS
SLEEP_LINE = "GET %s HTTP/1.1" % SLEEP
BURNERS = 2
BURN = "/pprof-test/burn?ms=300"
# Not a speed target (those are benchmarks): a bound that only a dump waiting on its
# threads beyond their 250 ms deadline, or hanging, would exceed, even on a loaded VM.
DUMP_DEADLINE = 5.0
ANSWER_MS = 250             # the agent's deadline for each thread's answer

# Prefork serves one request per child: enough idle children for the sleepers, the
# burners and the profile requests at once, so that no request waits for a fork.
# (MaxSpareServers = MaxRequestWorkers: no idle child is stopped under a test's feet.)
EXTRA_CONF = {"prefork": "StartServers 10\nMinSpareServers 10\nMaxSpareServers 16\n"}

ROLES = {"worker", "main", "agent", "other"}


def main_role(srv):
    """Prefork's main thread is the child's one worker, and is labelled so."""
    return "worker" if srv.mpm == "prefork" else "main"
# System calls a thread blocks in, by number (/proc/PID/task/TID/syscall): nanosleep and
# clock_nanosleep (pprof_test_sleep); select, pselect6, poll and ppoll (where a delta's
# handler waits out its window: a poll of the client's socket, or apr_sleep's select; the
# agents idle in poll too).
NANOSLEEP_SYSCALLS, WAIT_SYSCALLS = {
    "x86_64": ({35, 230}, {23, 270, 7, 271}),
    "aarch64": ({101, 115}, {72, 73}),
}.get(platform.machine(), (set(), set()))


INDEX_ROW_RE = re.compile(r"<tr><td>(\d+)</td><td><a href='([^']*)\?debug=1'>([^<]*)</a></td></tr>")

# debug=2 block header: "goroutine TID [STATE, pid P, ROLE, NAME[, STATUS][, client C,
# vhost V, handler H, request "R", S s in request]]:"
DUMP_HEAD_RE = re.compile(
    r'^goroutine (?P<tid>\d+) \[(?P<state>[a-z ]+), pid (?P<pid>\d+), (?P<role>[a-z]+), '
    r'(?P<name>[^,\]]*)(?:, (?P<status>[a-z-]+))?'
    r'(?:, client (?P<client>[^,]*), vhost (?P<vhost>[^,]*), handler (?P<handler>[^,]*), '
    r'request "(?P<request>.*)", (?P<secs>-?[0-9.]+) s in request)?\]:$')
DUMP_FUNC_RE = re.compile(r"^(?:(?P<func>\S+)\(\.\.\.\)|\?\(\))$")
DUMP_FILE_RE = re.compile(r"^\t(?P<file>\S.*?)(?::(?P<line>\d+))? \+0x[0-9a-f]+$")
NO_ANSWER_DUMP = "(did not answer within %d ms: signals blocked?)" % ANSWER_MS

# debug=1 (Go's printCountProfile).
COUNT_HEAD_RE = re.compile(r"^(?P<name>\w+) profile: total (?P<total>\d+)$")
GROUP_RE = re.compile(r"^(?P<count>\d+) @(?P<pcs>(?: 0x[0-9a-f]+)*)$")
LABELS_RE = re.compile(r"^# labels: \{(?P<body>.*)\}$")
LABEL_RE = re.compile(r'"([^"]*)":"([^"]*)"')
FRAME_RE = re.compile(r"^#\t0x(?P<pc>[0-9a-f]+)(?:\t(?P<func>\S+)\+0x[0-9a-f]+\t(?P<file>\S*):"
                      r"(?P<line>\d+))?$")
NO_ANSWER_TEXT = "#\tthread did not answer (signals blocked?)"


# --- source lines of the test module's frames ----------------------------------------------

def _source_line(func, needle):
    """Line number of the first line holding needle inside C function func."""
    path = os.path.join(SRCDIR, "tests", "module", "mod_pprof_test.c")
    with open(path) as f:
        lines = f.read().split("\n")
    inside = False
    for no, text in enumerate(lines, 1):
        if re.match(r"^\S.*\b%s\(" % re.escape(func), text) and not text.rstrip().endswith(";"):
            inside = True
        elif inside and text.startswith("}"):
            inside = False
        elif inside and needle in text:
            return no
    raise AssertionError("%r not found in %s of %s" % (needle, func, path))


SLEEP_CALL_LINE = _source_line("pprof_test_sleep", "nanosleep(")
HANDLER_SLEEP_LINE = _source_line("test_handler", "pprof_test_sleep(")
SPAWN_CALL_LINE = _source_line("pprof_test_spawn", "pthread_create(")
HANDLER_SPAWN_LINE = _source_line("test_handler", "pprof_test_spawn(")


# --- parsers ----------------------------------------------------------------------------------

def parse_dump(text):
    """debug=2 blocks: [{"head": match groupdict, "frames": [(func, file, line)],
    "answered": bool}]. Fails on any line outside Go's dump shape."""
    blocks = []
    assert text.endswith("\n\n"), text[-300:]
    for raw in text[:-2].split("\n\n"):
        lines = raw.split("\n")
        m = DUMP_HEAD_RE.match(lines[0])
        assert m, "bad block header %r in:\n%s" % (lines[0], raw)
        b = {"head": m.groupdict(), "frames": [], "answered": True, "text": raw}
        body = lines[1:]
        if body == [NO_ANSWER_DUMP]:
            b["answered"] = False
            blocks.append(b)
            continue
        assert body and len(body) % 2 == 0, "bad frames in block:\n%s" % raw
        for i in range(0, len(body), 2):
            fm, lm = DUMP_FUNC_RE.match(body[i]), DUMP_FILE_RE.match(body[i + 1])
            assert fm and lm, "bad frame %r / %r in:\n%s" % (body[i], body[i + 1], raw)
            b["frames"].append((fm.group("func"), lm.group("file"),
                                int(lm.group("line")) if lm.group("line") else None))
        blocks.append(b)
    return blocks


def block_funcs(b):
    return [f for f, _, _ in b["frames"]]


def frame_after(b, func):
    """(file, line) of func's frame and the frame after it (its caller), or None."""
    fr = b["frames"]
    for i, (f, _, _) in enumerate(fr):
        if f == func:
            return fr[i], (fr[i + 1] if i + 1 < len(fr) else None)
    return None


def parse_count_text(text, name, goroutine):
    """Go's debug=1 count text: (total, [{"count", "pcs", "labels", "frames", "no_answer"}]).
    Checks the layout, and that each frame's PC is its stack PC (minus 1 for return
    addresses: all but a goroutine's leaf)."""
    lines = text.split("\n")
    m = COUNT_HEAD_RE.match(lines[0])
    assert m and m.group("name") == name, lines[0]
    total = int(m.group("total"))
    assert text.endswith("\n"), text[-200:]
    groups = []
    i = 1
    while i < len(lines) - 1:
        g = GROUP_RE.match(lines[i])
        assert g, "bad group line %r (line %d) in:\n%s" % (lines[i], i + 1, text)
        grp = {"count": int(g.group("count")),
               "pcs": [int(x, 16) for x in g.group("pcs").split()],
               "labels": None, "frames": [], "no_answer": False}
        i += 1
        lm = LABELS_RE.match(lines[i])
        if lm:
            grp["labels"] = dict(LABEL_RE.findall(lm.group("body")))
            assert ", ".join('"%s":"%s"' % kv for kv in sorted(grp["labels"].items())) == \
                lm.group("body"), "labels not in Go's sorted form: %r" % lines[i]
            i += 1
        while lines[i] != "":
            if lines[i] == NO_ANSWER_TEXT:
                grp["no_answer"] = True
            else:
                fm = FRAME_RE.match(lines[i])
                assert fm, "bad frame line %r in:\n%s" % (lines[i], text)
                grp["frames"].append((int(fm.group("pc"), 16), fm.group("func"),
                                      fm.group("file"),
                                      int(fm.group("line")) if fm.group("line") else None))
            i += 1
        i += 1
        # Inlined frames repeat a PC; the distinct PCs are the stack's, adjusted. A
        # recursive call repeats a PC in the stack too: runs collapse on both sides.
        shown = []
        for pc, _, _, _ in grp["frames"]:
            if not shown or shown[-1] != pc:
                shown.append(pc)
        want = []
        for k, pc in enumerate(grp["pcs"]):
            pc -= 0 if (k == 0 and goroutine) else 1
            if not want or want[-1] != pc:
                want.append(pc)
        if not grp["no_answer"]:
            assert shown == want, "frame PCs %s do not follow the stack %s" % (
                [hex(p) for p in shown], [hex(p) for p in grp["pcs"]])
        groups.append(grp)
    return total, groups


def group_funcs(g):
    return [f for _, f, _, _ in g["frames"]]


def parse_top(out):
    return read_top(out, float)


def parse_tags(out):
    return read_tags(out, float)


def parse_traces(out):
    """[(count, {label: value}, [functions])] from `go tool pprof -traces`."""
    traces = []
    for chunk in re.split(r"^-+\+-+$", out, flags=re.M)[1:]:
        labels, funcs, count = {}, [], None
        for line in chunk.split("\n"):
            if not line.strip():
                continue
            if count is None:
                m = re.match(r"^\s*(\S+):\s+(.*?)\s*$", line)
                if m and not re.match(r"^\s*\d+\s", line):
                    labels[m.group(1)] = m.group(2)
                    continue
                m = re.match(r"^\s*(\d+)\s+(\S.*?)\s*$", line)
                assert m, "unexpected -traces line %r in:\n%s" % (line, chunk)
                count = int(m.group(1))
                funcs.append(m.group(2))
            else:
                funcs.append(line.strip())
        if count is not None:
            traces.append((count, labels, funcs))
    return traces


class Profile(DecodedProfile):
    """A decoded profile.proto (from protoc --decode)."""

    def __init__(self, gz):
        super().__init__(gz, protoc_decode)

    def samples(self):
        """[(value, {key: str or num}, [function names, leaf first])]"""
        funcs = {self.one(f, "id"): self.s(self.one(f, "name"))
                 for f in self.m.get("function", [])}
        locs = {self.one(loc, "id"): [funcs.get(self.one(ln, "function_id"))
                                      for ln in loc.get("line", [])]
                for loc in self.m.get("location", [])}
        out = []
        for smp in self.m.get("sample", []):
            labels = {}
            for l in smp.get("label", []):
                key = self.s(self.one(l, "key"))
                assert key not in labels, "label %s twice: %r" % (key, smp)
                labels[key] = self.s(l["str"][0]) if "str" in l else ("num", l["num"][0])
            values = smp.get("value", [])
            assert len(values) == 1, values
            names = [n for lid in smp.get("location_id", []) for n in locs[lid]]
            out.append((values[0], labels, names))
        return out


# --- HTTP and /proc helpers -------------------------------------------------------------------

def timed_get(httpd, path, timeout=60):
    t0 = time.monotonic()
    r = httpd.get(path, timeout=timeout)
    return r, time.monotonic() - t0


def tasks(pid):
    try:
        return sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return []


def thread_total(httpd):
    return sum(len(tasks(p)) for p in httpd.child_pids())


def syscall_of(pid, tid):
    """The system call number a thread is blocked in (None: running or unreadable)."""
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            first = f.read().split()
    except OSError:
        return None
    return int(first[0]) if first and first[0].lstrip("-").isdigit() else None


def sleeping_threads(httpd, syscalls=NANOSLEEP_SYSCALLS):
    """{(pid, tid)} of the children's threads blocked in (clock_)nanosleep."""
    return {(p, t) for p in httpd.child_pids() for t in tasks(p)
            if syscall_of(p, t) in syscalls}


def quiet(httpd, seconds=8):
    """Wait until no thread of the children sleeps (test workloads from earlier tests)."""
    left = set() if wait_for(lambda: not sleeping_threads(httpd), seconds) \
        else sleeping_threads(httpd)
    assert not left, "threads still sleeping after %d s: %s" % (seconds, left)


def save(httpd, name, body):
    path = os.path.join(httpd.dir, "%s-%d-%d.pb.gz" % (name, os.getpid(), time.monotonic_ns()))
    with open(path, "wb") as f:
        f.write(body)
    return path


def pprof_ok(*args):
    p = go_pprof(*args)
    assert p.returncode == 0, "go tool pprof %s failed (%d):\n%s%s" % (
        " ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    return p


class Requests:
    """`clients` threads GETting path: once each (loop=False) or in a loop until stop.
    Failures are kept in errors, responses in responses."""

    def __init__(self, httpd, path, clients, loop, max_seconds=60):
        self.httpd, self.path, self.clients, self.loop = httpd, path, clients, loop
        self.deadline = time.monotonic() + max_seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.responses, self.errors, self.threads = [], [], []

    def _client(self):
        while time.monotonic() < self.deadline and not self.stop.is_set():
            try:
                r = self.httpd.get(self.path, timeout=60)
            except (OSError, http.client.HTTPException) as e:
                r = e
            with self.lock:
                if isinstance(r, Exception) or r.status != 200 or not r.body.startswith(b"ok "):
                    self.errors.append(repr(r))
                else:
                    self.responses.append(r)
            if not self.loop:
                return

    def start(self):
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(self.clients)]
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(max(1, self.deadline - time.monotonic() + 30))
        assert not any(t.is_alive() for t in self.threads), "client threads still running"
        assert not self.errors, "%s failed: %s" % (self.path, self.errors[:5])
        assert self.responses, "no %s answered" % self.path


# --- ptrace: threads held where they cannot run ----------------------------------------------

PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_O_TRACECLONE = 0x8
PTRACE_EVENT_CLONE = 3
WALL = 0x40000000               # waitpid's __WALL: threads too

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(req, tid, data=0):
    if _libc.ptrace(req, tid, None, ctypes.c_void_p(data)) != 0:
        e = ctypes.get_errno()
        if req == PTRACE_SEIZE and e == errno.EPERM:
            pytest.skip("ptrace is not permitted here (needs CAP_SYS_PTRACE)")
        raise OSError(e, "ptrace(%#x, %d): %s" % (req, tid, os.strerror(e)))


class StoppedThread:
    """One thread (only that one) in ptrace-stop: signals queue up for it unanswered."""

    def __init__(self, tid):
        self.tid = tid
        self.attached = False

    def __enter__(self):
        ptrace(PTRACE_SEIZE, self.tid)
        self.attached = True
        ptrace(PTRACE_INTERRUPT, self.tid)
        until = time.monotonic() + 10
        while time.monotonic() < until:
            pid, _ = os.waitpid(self.tid, os.WNOHANG | WALL)
            if pid == self.tid:
                return self
            time.sleep(0.005)
        raise AssertionError("thread %d did not stop" % self.tid)

    def __exit__(self, *exc):
        if self.attached:
            ptrace(PTRACE_DETACH, self.tid)
            self.attached = False
        return False


def thread_state(pid, tid):
    try:
        with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()[0]


class CloneHold:
    """Every thread of one child traced with PTRACE_O_TRACECLONE: a thread they create
    starts in ptrace-stop, before its first instruction, and stays there until release().
    The tracer (this thread) must serve() the tracees' stops meanwhile."""

    def __init__(self, pid):
        self.pid = pid
        self.tids = []
        self.new = None
        self.new_held = False

    def __enter__(self):
        try:
            for t in tasks(self.pid):
                ptrace(PTRACE_SEIZE, t, PTRACE_O_TRACECLONE)
                self.tids.append(t)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _stopped(self, tid, status):
        """Handle one stop of tid: (stop kept?, signal to deliver on detach)."""
        if not os.WIFSTOPPED(status):
            return False, 0                         # exited
        sig, event = os.WSTOPSIG(status), status >> 16
        if event == PTRACE_EVENT_CLONE:
            msg = ctypes.c_ulong()
            if _libc.ptrace(PTRACE_GETEVENTMSG, tid, None,
                            ctypes.cast(ctypes.pointer(msg), ctypes.c_void_p)) == 0:
                self.new = self.new or msg.value
            return True, 0
        return True, sig if event == 0 else 0       # 0: a signal-delivery-stop

    def serve(self, done, seconds):
        """Let the traced threads run (keeping the new one held) until done() or seconds."""
        until = time.monotonic() + seconds
        while not done() and time.monotonic() < until:
            if self.new and not self.new_held:
                pid, status = os.waitpid(self.new, os.WNOHANG | WALL)
                self.new_held = pid == self.new and os.WIFSTOPPED(status)
            for t in list(self.tids):
                try:
                    pid, status = os.waitpid(t, os.WNOHANG | WALL)
                except ChildProcessError:
                    self.tids.remove(t)
                    continue
                if pid != t:
                    continue
                kept, sig = self._stopped(t, status)
                if kept:
                    ptrace(PTRACE_CONT, t, sig)
                else:
                    self.tids.remove(t)
            time.sleep(0.001)
        return done()

    def release(self):
        if self.new:
            if not self.new_held:
                os.waitpid(self.new, WALL)      # its first stop, before any code
            ptrace(PTRACE_DETACH, self.new)
            self.new, self.new_held = None, False

    def __exit__(self, *exc):
        for t in list(self.tids):
            try:
                ptrace(PTRACE_INTERRUPT, t)
            except OSError:
                self.tids.remove(t)
        for t in self.tids:
            try:
                pid, status = os.waitpid(t, WALL)
                kept, sig = self._stopped(t, status)
                if kept:
                    ptrace(PTRACE_DETACH, t, sig)
            except OSError:
                pass
        self.tids = []
        self.release()
        return False


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def srv(mpm):
    """One server per MPM for this file (prefork with enough idle children)."""
    _check_modules()
    d = make_tmpdir("mod_pprof-it-%s-" % mpm)
    server = Httpd(mpm, d, extra_conf=EXTRA_CONF.get(mpm, ""))
    try:
        server.start()
        yield server
    finally:
        _finish([server], [d])


class Busy:
    pass


@pytest.fixture(scope="module")
def busy(srv):
    """SLEEPERS requests held in pprof_test_sleep while BURNERS clients burn CPU, and what
    the goroutine endpoint said meanwhile: the debug=2 dump (and its wall time), debug=1,
    the debug=0 profile, and go tool pprof -top fetching the URL itself."""
    out = Busy()
    burners = Requests(srv, BURN, BURNERS, loop=True, max_seconds=90).start()
    sleepers = None
    failed = True
    try:
        assert wait_for(lambda: len(burners.responses) >= BURNERS or burners.errors, 15), \
            "the burn load did not start"
        before = sleeping_threads(srv)
        assert not before, "threads already sleeping: %s" % before
        out.t_sleep = time.monotonic()
        sleepers = Requests(srv, SLEEP, SLEEPERS, loop=False, max_seconds=60).start()
        wait_for(lambda: len(sleeping_threads(srv)) >= SLEEPERS, 5)
        out.sleeping = sleeping_threads(srv)
        assert len(out.sleeping) == SLEEPERS, \
            "expected %d threads in nanosleep, found %s" % (SLEEPERS, out.sleeping)
        out.children = set(srv.child_pids())

        out.dump, out.dump_wall = timed_get(srv, GOROUTINE + "?debug=2")
        out.text, _ = timed_get(srv, GOROUTINE + "?debug=1")
        out.raw, _ = timed_get(srv, GOROUTINE)
        out.top_url = go_pprof("-top", "-nodecount=1000", srv.url(GOROUTINE))
        out.t_done = time.monotonic()
        out.children |= set(srv.child_pids())
        # Everything above must have seen the sleepers still asleep.
        assert out.t_done - out.t_sleep < SLEEP_MS / 1000.0 - 0.3, (
            "fetches took %.2f s of the %d ms sleep window: too slow to judge" % (
                out.t_done - out.t_sleep, SLEEP_MS))
        still = sleeping_threads(srv)
        assert out.sleeping <= still, (out.sleeping, still)
        failed = False
    finally:
        # The clients' own failures are reported unless another one already is.
        for clients in (sleepers, burners):
            try:
                if clients:
                    clients.finish()
            except AssertionError:
                if not failed:
                    raise
    assert len(sleepers.responses) == SLEEPERS
    out.raw_file = save(srv, "goroutine", out.raw.body) if out.raw.status == 200 else None
    return out


def sleep_blocks(blocks):
    return [b for b in blocks if "pprof_test_sleep" in block_funcs(b)]


# --- goroutine under load ---------------------------------------------------------------------

def test_dump_shows_sleeping_requests(srv, busy):
    """debug=2: each sleeping request is a worker block with its request line, handler,
    vhost, and the pprof_test_sleep frame at its source line."""
    check_text_response(busy.dump)
    blocks = parse_dump(busy.dump.text)
    heads = [b["head"] for b in blocks]
    assert {int(h["pid"]) for h in heads} <= busy.children, (heads, busy.children)
    sleeping = sleep_blocks(blocks)
    # The same threads as /proc shows in nanosleep.
    assert {(int(b["head"]["pid"]), int(b["head"]["tid"])) for b in sleeping} == \
        busy.sleeping, ([b["head"] for b in sleeping], busy.sleeping)
    serving = [b for b in blocks if b["head"]["request"] == SLEEP_LINE]
    assert len(serving) == SLEEPERS, "%d blocks serve %r (want %d); sleeping blocks:\n%s" % (
        len(serving), SLEEP_LINE, SLEEPERS, "\n\n".join(b["text"] for b in sleeping))
    assert len(sleeping) == SLEEPERS
    window = time.monotonic() - busy.t_sleep
    for b in serving:
        h = b["head"]
        assert h["role"] == "worker", b["text"]
        assert h["state"] == "sleeping", b["text"]
        assert h["status"] == "writing", b["text"]
        assert h["handler"] == "pprof-test", b["text"]
        assert h["client"] == "127.0.0.1", b["text"]
        assert h["vhost"] == "127.0.0.1", b["text"]
        assert 0 <= float(h["secs"]) <= window, (h["secs"], window, b["text"])
        assert b["answered"], b["text"]
        here = frame_after(b, "pprof_test_sleep")
        assert here, b["text"]
        (_, f, line), caller = here
        assert f.endswith("mod_pprof_test.c") and line == SLEEP_CALL_LINE, b["text"]
        assert caller and caller[0] == "test_handler", b["text"]
        assert caller[1].endswith("mod_pprof_test.c") and caller[2] == HANDLER_SLEEP_LINE, \
            b["text"]
    # Every thread answered, every child has one main thread and one agent.
    assert all(b["answered"] for b in blocks), [b["text"] for b in blocks
                                                if not b["answered"]]
    per_pid = collections.defaultdict(list)
    for h in heads:
        assert h["role"] in ROLES, h
        per_pid[int(h["pid"])].append(h)
    for pid, hs in per_pid.items():
        assert [int(h["tid"]) for h in hs if h["role"] == main_role(srv)] == [pid], hs
        assert len([h for h in hs if h["role"] == "agent"]) == 1, hs


def test_dump_answers_promptly(busy):
    """The full dump of every thread of every child, under CPU load, does not wait on its
    threads (the time is printed: typically 0.2 s here)."""
    assert busy.dump.status == 200, busy.dump
    print("debug=2 dump under load: %.3f s" % busy.dump_wall)
    assert busy.dump_wall <= DUMP_DEADLINE, "dump took %.3f s" % busy.dump_wall


def test_profile_top_tags_tagfocus(srv, busy):
    """debug=0 as go tool pprof reads it: 4 stacks in pprof_test_sleep, role and handler
    labels, and -tagfocus on the handler."""
    p = busy.top_url
    assert p.returncode == 0, "go tool pprof -top failed:\n%s%s" % (p.stdout, p.stderr)
    assert "Fetching profile over HTTP from %s" % srv.url(GOROUTINE) in p.stderr, p.stderr
    assert "Type: goroutine" in p.stdout, p.stdout
    rows = parse_top(p.stdout)
    assert rows.get("pprof_test_sleep", (0, 0))[1] == SLEEPERS, p.stdout

    check_profile_response(busy.raw, "goroutine")
    out = pprof_ok("-top", "-nodecount=1000", busy.raw_file).stdout
    rows = parse_top(out)
    assert rows.get("pprof_test_sleep", (0, 0))[1] == SLEEPERS, out
    burning = rows.get("pprof_test_burn", (0, 0))[1]

    tags_out = pprof_ok("-tags", busy.raw_file).stdout
    tags = parse_tags(tags_out)
    assert set(tags.get("role", {})) <= ROLES, tags_out
    assert tags["role"].get("worker", 0) >= SLEEPERS, tags_out
    assert tags["role"].get(main_role(srv), 0) >= len(tags.get("pid", {})), tags_out
    assert tags["role"].get("agent", 0) == len(tags.get("pid", {})), tags_out
    # The sleepers, any burner caught in its handler, and nothing else runs pprof-test. A
    # busy worker keeps its request's labels until it is idle again, so a burner's previous
    # request may still be logging or closing in another child while its next one runs:
    # each burner counts at most twice. Idle and keep-alive workers carry no handler.
    assert SLEEPERS + burning <= tags.get("handler", {}).get("pprof-test", 0) <= \
        SLEEPERS + 2 * BURNERS, tags_out
    assert set(tags.get("vhost", {})) == {"127.0.0.1"}, tags_out
    assert {int(v) for v in tags.get("pid", {})} <= busy.children, tags_out

    focus = pprof_ok("-tagfocus=handler=pprof-test", "-top", "-nodecount=1000",
                     busy.raw_file).stdout
    frows = parse_top(focus)
    assert frows.get("pprof_test_sleep", (0, 0))[1] == SLEEPERS, focus
    for idle in ("agent_main", "pp_threads_capture", "ap_mpm_podx_check"):
        assert idle not in frows, focus


def test_profile_raw(srv, busy):
    """protoc's view: goroutine/count, one count per thread, and the labels."""
    prof = Profile(busy.raw.body)
    m = prof.m
    assert prof.value_types("sample_type") == [("goroutine", "count")]
    assert prof.value_types("period_type") == [("goroutine", "count")]
    assert m.get("period") == [1]
    samples = prof.samples()
    assert samples
    mains, agents, sleep_by_pid = collections.Counter(), collections.Counter(), \
        collections.Counter()
    for value, labels, names in samples:
        assert value >= 1, (value, labels)
        keys = sorted(labels)
        assert keys in (["pid", "role"], ["handler", "pid", "role", "vhost"]), labels
        kind, pid = labels["pid"]
        assert kind == "num" and pid in busy.children, labels
        assert labels["role"] in ROLES, labels
        if "handler" in labels:
            assert labels["role"] == "worker", labels
            assert labels["vhost"] == "127.0.0.1", labels
        mains[pid] += value if labels["role"] == main_role(srv) else 0
        agents[pid] += value if labels["role"] == "agent" else 0
        if "pprof_test_sleep" in names:
            assert labels.get("role") == "worker" and labels.get("handler") == "pprof-test", \
                (labels, names)
            sleep_by_pid[pid] += value
    pids = {labels["pid"][1] for _, labels, _ in samples}
    assert all(mains[p] == 1 and agents[p] == 1 for p in pids), (mains, agents)
    assert sum(sleep_by_pid.values()) == SLEEPERS, sleep_by_pid
    assert sleep_by_pid == collections.Counter(p for p, _ in busy.sleeping), \
        (sleep_by_pid, busy.sleeping)


def test_count_text(srv, busy):
    """debug=1: Go's printCountProfile. Groups are keyed by stack and labels, and pid is a
    label, so the sleepers group by child: their counts add up to 4, each child's to its
    own sleepers."""
    check_text_response(busy.text)
    total, groups = parse_count_text(busy.text.text, "goroutine", goroutine=True)
    assert total == sum(g["count"] for g in groups), busy.text.text
    assert [g["count"] for g in groups] == sorted((g["count"] for g in groups), reverse=True)
    keys = [(tuple(g["pcs"]), tuple(sorted((g["labels"] or {}).items()))) for g in groups]
    assert len(set(keys)) == len(keys), "identical stacks not grouped"
    by_pid = collections.Counter()
    for g in groups:
        assert g["labels"] is not None, g
        assert g["labels"].get("role") in ROLES, g
        assert int(g["labels"]["pid"]) in busy.children, g
        assert not g["no_answer"], g
        if "pprof_test_sleep" not in group_funcs(g):
            continue
        assert g["labels"].get("handler") == "pprof-test", g["labels"]
        assert g["labels"].get("role") == "worker", g["labels"]
        assert g["labels"].get("vhost") == "127.0.0.1", g["labels"]
        fr = [f for f in g["frames"] if f[1] == "pprof_test_sleep"]
        assert fr and fr[0][2].endswith("mod_pprof_test.c") and fr[0][3] == SLEEP_CALL_LINE, g
        by_pid[int(g["labels"]["pid"])] += g["count"]
    assert sum(by_pid.values()) == SLEEPERS, (by_pid, busy.text.text)
    assert by_pid == collections.Counter(p for p, _ in busy.sleeping), \
        (by_pid, busy.sleeping)


# --- the request records: with and without mod_status, ExtendedStatus left alone -----------------

STATUS_CONF = "LoadModule status_module %s/mod_status.so\n" % MODULES_DIR


@pytest.mark.parametrize("status", [False, True], ids=["plain", "mod_status"])
def test_dump_request_lines(make_httpd, mpm, status):
    """debug=2 names the request of every sleeping worker, whether or not mod_status is
    loaded (it turns ExtendedStatus on by default; without it ExtendedStatus is off): the
    dump reads each thread's own request record, never the scoreboard's request fields."""
    h = make_httpd(extra_conf=EXTRA_CONF.get(mpm, "") + (STATUS_CONF if status else ""))
    # The flag as httpd's own modules see it: mod_status switched it on, nothing else did.
    flag = h.get("/pprof-test/extended")
    assert flag.status == 200 and flag.text == "extended %d\n" % status, flag
    assert not sleeping_threads(h), "threads already sleeping"
    t0 = time.monotonic()
    sleepers = Requests(h, SLEEP, SLEEPERS, loop=False, max_seconds=60).start()
    try:
        wait_for(lambda: len(sleeping_threads(h)) >= SLEEPERS, 5)
        asleep = sleeping_threads(h)
        dump, _ = timed_get(h, GOROUTINE + "?debug=2")
        judged = time.monotonic() - t0 < SLEEP_MS / 1000.0 - 0.3
    finally:
        sleepers.finish()
    assert len(asleep) == SLEEPERS, asleep
    assert judged, "the dump came too late to judge (sleepers may have woken)"
    check_text_response(dump)
    blocks = parse_dump(dump.text)
    serving = [b for b in blocks if b["head"]["request"] == SLEEP_LINE]
    assert {(int(b["head"]["pid"]), int(b["head"]["tid"])) for b in serving} == asleep, \
        "%d of %d sleeping workers shown with their request:\n%s" % (
            len(serving), SLEEPERS, "\n\n".join(b["text"] for b in sleep_blocks(blocks)))
    for b in serving:
        hd = b["head"]
        assert (hd["role"], hd["status"], hd["handler"], hd["client"], hd["vhost"]) == \
            ("worker", "writing", "pprof-test", "127.0.0.1", "127.0.0.1"), b["text"]
        assert "pprof_test_sleep" in block_funcs(b), b["text"]


def test_extended_status_left_off(srv):
    """Without mod_status ExtendedStatus is off, and mod_pprof does not switch it on (each
    request would pay for times() and the scoreboard's copies)."""
    for _ in range(4):          # answered by any child
        r = srv.get("/pprof-test/extended")
        assert r.status == 200 and r.text == "extended 0\n", r


# --- index ----------------------------------------------------------------------------------------

def test_index_counts(srv):
    """The index counts the threads of all children for goroutine and threadcreate."""
    tries = []
    for _ in range(5):
        before = thread_total(srv)
        r = srv.get("/debug/pprof/")
        after = thread_total(srv)
        assert r.status == 200, r
        rows = {name: (int(count), href) for count, href, name in INDEX_ROW_RE.findall(r.text)}
        assert "goroutine" in rows and "threadcreate" in rows, r.text
        g, t = rows["goroutine"][0], rows["threadcreate"][0]
        tries.append((before, g, t, after))
        if before == after:
            break
    assert before == after, "thread count kept changing: %s" % tries
    assert g > 0 and t > 0, tries
    assert abs(g - before) <= 2 and abs(t - before) <= 2, tries


# --- errors, headers, pid, delta -------------------------------------------------------------

@pytest.mark.parametrize("path,name", [(GOROUTINE, "goroutine"),
                                       (THREADCREATE, "threadcreate")])
def test_success_headers(srv, path, name):
    check_profile_response(srv.get(path), name)
    check_profile_response(srv.get(path + "?debug=0"), name)
    for q in ("debug=1", "debug=2", "debug=3"):
        r = srv.get(path + "?" + q)
        check_text_response(r)
        if name == "threadcreate" or q == "debug=1":
            assert r.text.startswith("%s profile: total " % name), r.text[:200]
        else:
            assert r.text.startswith("goroutine "), r.text[:200]
            parse_dump(r.text)
    # strconv.Atoi(r.FormValue("debug")) with the error ignored: not an integer is 0.
    for q in ("debug=abc", "debug=2x", "debug=", "debug=1.0"):
        check_profile_response(srv.get(path + "?" + q), name)
    # A '+' in a query is a space (net/url): " 01" is no integer, %2B01 is 1.
    check_profile_response(srv.get(path + "?debug=+01"), name)
    r = srv.get(path + "?debug=%2B01")
    check_text_response(r)
    assert r.text.startswith("%s profile: total " % name), r.text[:200]
    r = srv.head(path)
    assert r.status == 200 and r.body == b"", r
    assert r.headers.get("content-disposition") == 'attachment; filename="%s"' % name, r


@pytest.mark.parametrize("path,name", [(GOROUTINE, "goroutine"),
                                       (THREADCREATE, "threadcreate")])
def test_empty_seconds_is_a_snapshot(srv, path, name):
    """Go serves a delta only `if sec := r.FormValue("seconds"); sec != ""`: an empty
    seconds is the plain profile (or text)."""
    check_profile_response(srv.get(path + "?seconds="), name)
    r = srv.get(path + "?seconds=&debug=1")
    check_text_response(r)
    assert r.text.startswith("%s profile: total " % name), r.text[:200]


def test_pid_restriction(srv):
    """pid=N: that child's threads only, in every form."""
    quiet(srv)
    pid = srv.child_pids()[0]
    n = len(tasks(pid))
    assert n >= 2
    r = srv.get(GOROUTINE + "?pid=%d" % pid)
    check_profile_response(r, "goroutine")
    samples = Profile(r.body).samples()
    assert {labels["pid"] for _, labels, _ in samples} == {("num", pid)}, samples
    assert sum(v for v, _, _ in samples) == n
    f = save(srv, "goroutine-pid", r.body)
    tags = parse_tags(pprof_ok("-tags", f).stdout)
    assert set(tags.get("pid", {})) == {str(pid)}, tags

    r = srv.get(GOROUTINE + "?pid=%d&debug=2" % pid)
    check_text_response(r)
    blocks = parse_dump(r.text)
    assert {int(b["head"]["pid"]) for b in blocks} == {pid}
    assert sorted(int(b["head"]["tid"]) for b in blocks) == tasks(pid)

    r = srv.get(GOROUTINE + "?pid=%d&debug=1" % pid)
    check_text_response(r)
    total, groups = parse_count_text(r.text, "goroutine", goroutine=True)
    assert total == n and {g["labels"]["pid"] for g in groups} == {str(pid)}, r.text

    r = srv.get(THREADCREATE + "?pid=%d" % pid)
    check_profile_response(r, "threadcreate")
    samples = Profile(r.body).samples()
    assert {labels["pid"] for _, labels, _ in samples} == {("num", pid)}, samples
    assert sum(v for v, _, _ in samples) == n
    r = srv.get(THREADCREATE + "?pid=%d&debug=1" % pid)
    total, _ = parse_count_text(r.text, "threadcreate", goroutine=False)
    assert total == n, r.text


# --- a thread that cannot answer ------------------------------------------------------------

def test_unanswering_thread_is_reported(srv, mpm):
    """A thread that runs with the capture signal blocked cannot answer its timer's signal:
    it is reported as not answering after the 250 ms deadline, not waited on (nor asked
    again while that request is pending); its late answer is harmless. A thread held in ptrace-stop is no such thread any more: it does
    not run, so its stack is taken from /proc's registers, without a signal."""
    quiet(srv)
    pid = srv.child_pids()[-1]
    # prefork: the main thread is the child's only worker and the child is idle (with one
    # listener, prefork children accept unserialized, so the others take the connections).
    # Threaded MPMs: the main thread only waits for the child's end.
    tid = pid
    with StoppedThread(tid):
        dump, wall = timed_get(srv, GOROUTINE + "?debug=2&pid=%d" % pid)
    assert wall <= DUMP_DEADLINE, wall
    check_text_response(dump)
    blocks = parse_dump(dump.text)
    stopped = [b for b in blocks if int(b["head"]["tid"]) == tid]
    assert len(stopped) == 1 and stopped[0]["answered"] and stopped[0]["frames"], dump.text
    assert stopped[0]["head"]["state"] == "stopped", stopped[0]["text"]
    # Every other thread answered, but one that ran all along with the signal blocked (a
    # newer child's thread-starting thread blocks them all).
    assert all(b["answered"] or b["head"]["state"] == "running" for b in blocks), dump.text

    burn = "/pprof-test/burn?ms=4000&block_rtmin_plus=7"
    burner = Requests(srv, burn, 1, loop=False, max_seconds=30).start()
    try:
        line = "GET %s HTTP/1.1" % burn
        found = {}

        def burning():
            # Until a dump finds it not answering: one taken before the handler blocked
            # the signal may still have found it answering.
            r, wall = timed_get(srv, GOROUTINE + "?debug=2")
            mine = [b for b in parse_dump(r.text)
                    if b["head"]["request"] == line and not b["answered"]]
            if mine:
                found["pid"], found["tid"] = int(mine[0]["head"]["pid"]), \
                    int(mine[0]["head"]["tid"])
                found["wall"] = wall
            return bool(mine)
        assert wait_for(burning, 2), "the burner never showed as not answering"
        # The first dump that found it silent had asked it, and waited out the deadline...
        assert ANSWER_MS / 1000.0 <= found["wall"] <= DUMP_DEADLINE, found
        pid, tid = found["pid"], found["tid"]
        dump, wall2 = timed_get(srv, GOROUTINE + "?debug=2&pid=%d" % pid)
        text, wall1 = timed_get(srv, GOROUTINE + "?debug=1&pid=%d" % pid)
        raw, wall0 = timed_get(srv, GOROUTINE + "?pid=%d" % pid)
        still = thread_state(pid, tid) == "R"
    finally:
        burner.finish()
    assert still, "the burner ended before the dumps"
    # ... and the next ones did not ask again (its request is still pending): no waiting.
    for wall in (wall2, wall1, wall0):
        assert wall <= DUMP_DEADLINE, (wall2, wall1, wall0)

    check_text_response(dump)
    blocks = parse_dump(dump.text)
    silent = [b for b in blocks if not b["answered"]]
    assert [int(b["head"]["tid"]) for b in silent] == [tid], dump.text
    assert silent[0]["head"]["state"] == "running", silent[0]["text"]
    assert all(b["frames"] for b in blocks if b["answered"]), dump.text

    check_text_response(text)
    total, groups = parse_count_text(text.text, "goroutine", goroutine=True)
    mute = [g for g in groups if g["no_answer"]]
    assert len(mute) == 1 and mute[0]["count"] == 1 and mute[0]["pcs"] == [], text.text
    assert mute[0]["labels"]["pid"] == str(pid), mute[0]

    check_profile_response(raw, "goroutine")
    samples = Profile(raw.body).samples()
    silent = [(v, labels) for v, labels, names in samples
              if names == ["mod_pprof.threadDidNotAnswer"]]
    assert len(silent) == 1 and silent[0][0] == 1 and silent[0][1]["pid"] == ("num", pid), \
        samples
    rows = parse_top(pprof_ok("-top", "-nodecount=1000", save(srv, "silent", raw.body)).stdout)
    assert rows.get("mod_pprof.threadDidNotAnswer") == (1, 1), rows

    # Done burning, the thread takes the stale signal (ignored) and answers the next capture.
    r, wall = timed_get(srv, GOROUTINE + "?debug=2&pid=%d" % pid)
    blocks = parse_dump(r.text)
    assert all(b["answered"] for b in blocks), r.text
    assert tid in [int(b["head"]["tid"]) for b in blocks], r.text
    assert wall <= DUMP_DEADLINE, wall
    assert pid in srv.child_pids()


# --- observing changes nothing -------------------------------------------------------------

WAIT_MS = 1500
WAITS = {"waitsleep": ("slept", "pprof_test_wait_sleep"),
         "waitpoll": ("polled", "pprof_test_wait_poll"),
         "waitcond": ("waited", "pprof_test_wait_cond")}
WAIT_BODY_RE = re.compile(rb"^(slept|polled|waited) ([0-9.]+) ms pid=\d+\n$")


def test_waits_keep_their_length_under_dumps_and_cpu_profile(srv):
    """A handler's usleep, poll and condition wait of 1500 ms, each one call that an
    interruption would cut short, keep their length within 10 ms (measured in the handler)
    while goroutine dumps (debug=2 and debug=1) are taken every 100 ms and a CPU profile
    runs; every dump taken while they wait shows each in its waiting function."""
    quiet(srv)
    res, cpu = {}, {}

    def wait(kind):
        try:
            res[kind] = srv.get("/pprof-test/%s?ms=%d" % (kind, WAIT_MS), timeout=60)
        except (OSError, http.client.HTTPException) as e:
            res[kind] = e

    def profile():
        cpu["r"] = srv.get("/debug/pprof/profile?seconds=2", timeout=60)

    def control():
        # The same wait here, where no signal of ours goes: how late this machine wakes a
        # sleeper now (a shared 2-core VM under someone else's load: tens of ms).
        c0 = time.monotonic()
        time.sleep(WAIT_MS / 1000.0)
        res["control"] = (time.monotonic() - c0) * 1000.0

    prof = threading.Thread(target=profile, daemon=True)
    prof.start()
    waiters = [threading.Thread(target=wait, args=(k,), daemon=True) for k in WAITS] + \
        [threading.Thread(target=control, daemon=True)]
    t0 = time.monotonic()
    for t in waiters:
        t.start()
    dumps, k = [], 0
    # One dump every 100 ms until the waits are nearly over.
    while time.monotonic() - t0 < (WAIT_MS - 250) / 1000.0:
        tick = time.monotonic()
        debug = 2 - k % 2
        r = srv.get(GOROUTINE + "?debug=%d" % debug)
        dumps.append((tick - t0, debug, r))
        k += 1
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    for t in waiters:
        t.join(30)
    prof.join(30)
    assert cpu.get("r") is not None and cpu["r"].status == 200, cpu
    lengths = {}
    for kind, (verb, _) in WAITS.items():
        r = res.get(kind)
        assert not isinstance(r, Exception) and r is not None and r.status == 200, (kind, r)
        m = WAIT_BODY_RE.match(r.body)
        assert m and m.group(1).decode() == verb, r.body
        lengths[kind] = float(m.group(2))
    late = max(0.0, res["control"] - WAIT_MS)
    # Fewer dumps from a loaded machine, and under ASan (a dump of prefork's children takes
    # ~200 ms there).
    slow = late >= 5 or SANITIZE
    print("wait lengths (ms) under %d dumps and a CPU profile: %s; an unobserved sleep here: "
          "%.1f" % (len(dumps), lengths, res["control"]))
    for kind, ms in lengths.items():
        # Never shorter; not longer by more than 10 ms beyond what the machine's load
        # makes of any sleep (0 on an idle machine: then within 10 ms).
        assert WAIT_MS <= ms < WAIT_MS + 10 + 2 * late, \
            "%s took %.1f ms, not %d (+10, +%.1f: the machine's lateness)" % (
                kind, ms, WAIT_MS, 2 * late)
    # Every 100 ms (a loaded machine slows the dumps of prefork's many children down).
    assert len(dumps) >= (4 if slow else 8), [d[0] for d in dumps]
    # The dumps from 300 ms on (the requests are in their handlers by then) show each wait.
    seen = 0
    for at, debug, r in dumps:
        assert r.status == 200, r
        if at < 0.3:
            continue
        seen += 1
        if debug == 2:
            blocks = parse_dump(r.text)
            for _, fn in WAITS.values():
                mine = [b for b in blocks if fn in block_funcs(b)]
                assert len(mine) == 1 and mine[0]["head"]["state"] == "sleeping", (fn, r.text)
                assert mine[0]["head"]["handler"] == "pprof-test", mine[0]["text"]
        else:
            check_text_response(r)
            for _, fn in WAITS.values():
                assert "\t%s+0x" % fn in r.text, (fn, r.text)
    assert seen >= (2 if slow else 6), [d[0] for d in dumps]


def test_delta(srv):
    """seconds=2: what changed over the window. Two requests that start sleeping and one
    thread started within it are +2 (+1) stacks in pprof_test_sleep; the spawned thread is
    the one new creation stack from pprof_test_spawn."""
    quiet(srv)
    # The agents idle in poll too: the handlers are the waiters beyond them.
    waiting = len(sleeping_threads(srv, WAIT_SYSCALLS))
    res = {}

    def get(path):
        res[path] = timed_get(srv, path + "?seconds=2")

    deltas = [threading.Thread(target=get, args=(p,), daemon=True)
              for p in (GOROUTINE, THREADCREATE)]
    for t in deltas:
        t.start()
    sleepers = None
    try:
        # Both handlers wait out their window: the first capture is taken.
        assert wait_for(lambda: len(sleeping_threads(srv, WAIT_SYSCALLS)) >= waiting + 2, 3), \
            "deltas did not start"
        sleepers = Requests(srv, "/pprof-test/sleep?ms=3000", 2, loop=False).start()
        spawn(srv, 3000)
        assert wait_for(lambda: len(sleeping_threads(srv)) >= 3, 1.5), \
            "sleepers did not start in the window"
    finally:
        for t in deltas:
            t.join(60)
        if sleepers:
            sleepers.finish()
    g, g_wall = res[GOROUTINE]
    check_profile_response(g, "goroutine-delta")
    prof = Profile(g.body)
    dur = prof.one(prof.m, "duration_nanos")
    assert 2e9 <= dur <= g_wall * 1e9 + 1e8, (dur, g_wall)
    rows = parse_top(pprof_ok("-top", "-nodecount=1000", save(srv, "gd", g.body)).stdout)
    assert rows.get("pprof_test_sleep", (0, 0))[1] == 3, rows
    assert rows.get("pprof_test_thread_main", (0, 0))[1] == 1, rows
    assert rows.get("test_handler", (0, 0))[1] == 2, rows

    t, _ = res[THREADCREATE]
    check_profile_response(t, "threadcreate-delta")
    prof = Profile(t.body)
    assert prof.value_types("sample_type") == [("threadcreate", "count")]
    rows = parse_top(pprof_ok("-top", "-nodecount=1000", save(srv, "td", t.body)).stdout)
    assert rows.get("pprof_test_spawn", (0, 0))[1] == 1, rows


# --- threadcreate ------------------------------------------------------------------------------

def spawn(srv, ms):
    r = srv.get("/pprof-test/thread?ms=%d" % ms)
    m = re.match(rb"^ok thread pid=(\d+)\n$", r.body)
    assert r.status == 200 and m, r
    return int(m.group(1))


def spawn_groups(groups):
    """debug=1 threadcreate groups whose creation stack starts in pprof_test_spawn."""
    return [g for g in groups if g["frames"] and g["frames"][0][1] == "pprof_test_spawn"]


def spawned_sleeping(srv, ms):
    """Start a pprof_test_spawn thread living ms, and wait until it sleeps (so it has run
    its first instructions): (pid, tid)."""
    quiet(srv)
    pid = spawn(srv, ms)
    wait_for(lambda: sleeping_threads(srv), 2)
    sleeping = sleeping_threads(srv)
    assert len(sleeping) == 1 and next(iter(sleeping))[0] == pid, (pid, sleeping)
    return next(iter(sleeping))


def test_threadcreate_live_threads_only(srv):
    """A thread's creation stack is listed while it lives, and gone once it has ended."""
    pid, tid = spawned_sleeping(srv, 1500)
    r = srv.get(THREADCREATE + "?debug=1")
    alive = tid in tasks(pid)
    check_text_response(r)
    _, groups = parse_count_text(r.text, "threadcreate", goroutine=False)
    assert alive, "the thread ended before it could be seen"
    assert sum(g["count"] for g in spawn_groups(groups)) == 1, r.text
    assert wait_for(lambda: tid not in tasks(pid), 5), "thread %d did not end" % tid
    r = srv.get(THREADCREATE + "?debug=1")
    _, groups = parse_count_text(r.text, "threadcreate", goroutine=False)
    assert spawn_groups(groups) == [], r.text


def test_threadcreate_stack_once_pthread_create_returned(srv):
    """Once pthread_create has returned (the request that called it has answered), the
    new thread is listed with its creation stack, even if it has not run yet (Go records
    the stack in the creator). The new thread is held in ptrace-stop before its first
    instruction (PTRACE_O_TRACECLONE on every thread of the child)."""
    quiet(srv)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("GET", "/pprof-test/pid")
        pid = int(conn.getresponse().read())
        res = {}

        def call(key, fn):
            try:
                res[key] = fn()
            except Exception as e:          # reported below
                res[key] = e

        def spawn_on_conn():
            conn.request("GET", "/pprof-test/thread?ms=300")
            return conn.getresponse().read()

        with CloneHold(pid) as hold:
            threading.Thread(target=call, args=("spawn", spawn_on_conn), daemon=True).start()
            # A creator may also wait for its thread to start: then release it first.
            hold.serve(lambda: hold.new_held and "spawn" in res, 3)
            assert hold.new and hold.new_held, "no new thread held: %r" % res
            new, held = hold.new, "spawn" in res
            if held:
                assert new in tasks(pid) and thread_state(pid, new) == "t"
                threading.Thread(target=call, args=("tc", lambda: srv.get(
                    THREADCREATE + "?debug=1&pid=%d" % pid)), daemon=True).start()
                hold.serve(lambda: "tc" in res, 30)
            else:
                hold.release()
                hold.serve(lambda: "spawn" in res, 10)
                assert "spawn" in res, "the thread request never answered"
        assert isinstance(res["spawn"], bytes) and res["spawn"].startswith(b"ok thread"), res
        if not held:
            res["tc"] = srv.get(THREADCREATE + "?debug=1&pid=%d" % pid)
        r = res["tc"]
        assert not isinstance(r, Exception), r
        check_text_response(r)
        total, groups = parse_count_text(r.text, "threadcreate", goroutine=False)
        assert sum(g["count"] for g in spawn_groups(groups)) == 1, (
            "thread %d (pid %d), created by pprof_test_spawn whose pthread_create has "
            "returned, is listed without its creation stack while it has not run yet:\n%s"
            % (new, pid, r.text))
    finally:
        conn.close()


def test_threadcreate_creation_stack(srv):
    """The thread pprof_test_spawn starts shows its creation stack, pprof_test_spawn at
    its pthread_create line called from test_handler, in debug=1 and debug=0."""
    pid, tid = spawned_sleeping(srv, 3000)
    before = thread_total(srv)
    r = srv.get(THREADCREATE + "?debug=1")
    after = thread_total(srv)
    check_text_response(r)
    total, groups = parse_count_text(r.text, "threadcreate", goroutine=False)
    assert total == sum(g["count"] for g in groups), r.text
    assert min(before, after) - 2 <= total <= max(before, after) + 2, (before, total, after)
    assert all(g["labels"] is None for g in groups), "threadcreate text has no labels"
    sg = spawn_groups(groups)
    assert len(sg) == 1 and sg[0]["count"] == 1, r.text
    (_, f0, file0, line0), (_, f1, file1, line1) = sg[0]["frames"][:2]
    assert file0.endswith("mod_pprof_test.c") and line0 == SPAWN_CALL_LINE, sg[0]
    assert f1 == "test_handler" and file1.endswith("mod_pprof_test.c") and \
        line1 == HANDLER_SPAWN_LINE, sg[0]
    # Threads not made by pthread_create (each child's main thread) have no stack.
    assert sum(g["count"] for g in groups if not g["pcs"]) == len(srv.child_pids()), r.text

    raw = srv.get(THREADCREATE)
    check_profile_response(raw, "threadcreate")
    prof = Profile(raw.body)
    assert prof.value_types("sample_type") == [("threadcreate", "count")]
    for _, labels, _ in prof.samples():
        assert sorted(labels) == ["pid"] and labels["pid"][0] == "num", labels
    p = pprof_ok("-traces", srv.url(THREADCREATE))
    assert "Type: threadcreate" in p.stdout, p.stdout
    traces = [t for t in parse_traces(p.stdout) if t[2] and t[2][0] == "pprof_test_spawn"]
    assert len(traces) == 1, p.stdout
    count, labels, funcs = traces[0]
    assert count == 1 and labels == {"pid": str(pid)}, traces[0]
    assert funcs[1] == "test_handler", traces[0]
    assert tid in tasks(pid), "the spawned thread ended meanwhile"
