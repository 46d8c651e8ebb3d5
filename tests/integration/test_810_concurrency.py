"""Concurrency: every endpoint at once, repeatedly, under load, on every MPM (issue 10).

For ~12 s, one thread per endpoint form asks in a loop: CPU profiles (two threads, so
that one finds the other's window open: Go's 500 "already in use"), traces (two threads,
likewise), goroutine debug=0/1/2, heap and allocs plain and as seconds=1 deltas,
threadcreate, block and mutex (plain and delta), symbol GET and POST, the index; while
load threads hit the test module's handlers (CPU, allocations, a contended lock, waits).

Every answer must be complete: 200 with a body its reader accepts (protoc for profiles,
go_trace.check for traces, the debug=1/2 parsers of test_400, Go's symbol and heap text
layouts), or Go's documented 500 text of a busy CPU profile or trace. No child may crash
(error_log, checked at teardown) and none may deadlock: every request ends within its
window plus BOUND (a bound that only a stuck collector or agent would exceed on a loaded
machine; the answers' times are printed).
"""
import gzip
import re
import threading
import time

import pytest

import go_trace
from conftest import protoc_decode
from pprof_output import DecodedProfile
from test_400_threads import parse_count_text, parse_dump

RUN_SECONDS = 12
BOUND = 20.0
CPU_BUSY = b"Could not enable CPU profiling: cpu profiling already in use\n"
TRACE_BUSY = b"Could not enable tracing: tracing is already enabled\n"
HEAP_TEXT_RE = re.compile(r"^heap profile: \d+: \d+ \[\d+: \d+\] @ heap/\d+$", re.M)
CONTENTION_TEXT_RE = re.compile(r"^--- (contention|mutex):\n", re.M)

# Enough prefork children for every scraper and load thread at once (each holds one).
TUNING = {
    "prefork": """\
StartServers 32
MinSpareServers 32
MaxSpareServers 48
MaxRequestWorkers 48
ServerLimit 48
""",
}
CONF = """\
PprofBlockProfileRate 1000
PprofMutexProfileFraction 1
"""

LOAD = ["/pprof-test/burn?ms=20", "/pprof-test/churn?count=50&bytes=65536",
        "/pprof-test/lock?ms=5", "/pprof-test/waitcond?ms=20", "/pprof-test/fight?threads=3&ms=5"]


def _varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7f) << shift
        shift += 7
        if c < 0x80:
            return v, i
        assert shift < 64, "varint too long"


def profile_fields(raw):
    """{field number: [values]} of a profile.proto's top level, every byte accounted for
    (wire types 0 and 2 only, as a Profile has): a truncated or garbled answer fails."""
    out, i = {}, 0
    while i < len(raw):
        key, i = _varint(raw, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(raw, i)
        elif wire == 2:
            n, i = _varint(raw, i)
            v, i = raw[i:i + n], i + n
            assert i <= len(raw), "field %d runs past the end" % field
        else:
            raise AssertionError("wire type %d in a Profile" % wire)
        out.setdefault(field, []).append(v)
    return out


def profile_ok(body, seen={}):
    """A gzipped profile.proto read to its end: a string table starting with "", a sample
    type. The first of each size class goes through protoc too (the reader Go trusts)."""
    f = profile_fields(gzip.decompress(body))
    assert f.get(6, [None])[0] == b"" and f.get(1), sorted(f)
    if not seen.get(len(body) // 4096):
        seen[len(body) // 4096] = True
        DecodedProfile(body, protoc_decode)
    return True


def text_ok(check):
    def ok(body):
        return check(body.decode("utf-8"))
    return ok


def index_ok(text):
    return "<a href='goroutine?debug=1'>goroutine</a>" in text and text.endswith("</html>")


def symbol_ok(text):
    lines = text.split("\n")
    return lines[0] == "num_symbols: 1" and any(" pprof_test_hot_a" in l for l in lines)


def trace_ok(body):
    problems = go_trace.check(body)
    assert problems == [], problems[:5]
    return True


def dump_ok(text):
    return len(parse_dump(text)) > 0


def count_ok(name):
    def ok(text):
        total, groups = parse_count_text(text, name, name == "goroutine")
        return total > 0 and total == sum(g["count"] for g in groups)
    return ok


# The second loop of a window kind races the first for the one window of its kind.
RACING = {"profile2": "profile", "trace2": "trace"}

# (name, method, path, window seconds, check of a 200 body, accepted busy 500 body)
SCRAPES = [
    ("profile", "GET", "/debug/pprof/profile?seconds=2", 2, profile_ok, CPU_BUSY),
    ("profile2", "GET", "/debug/pprof/profile?seconds=1", 1, profile_ok, CPU_BUSY),
    ("trace", "GET", "/debug/pprof/trace?seconds=2", 2, trace_ok, TRACE_BUSY),
    ("trace2", "GET", "/debug/pprof/trace?seconds=1", 1, trace_ok, TRACE_BUSY),
    ("goroutine0", "GET", "/debug/pprof/goroutine", 0, profile_ok, None),
    ("goroutine1", "GET", "/debug/pprof/goroutine?debug=1", 0,
     text_ok(count_ok("goroutine")), None),
    ("goroutine2", "GET", "/debug/pprof/goroutine?debug=2", 0, text_ok(dump_ok), None),
    ("heap", "GET", "/debug/pprof/heap", 0, profile_ok, None),
    ("heap1", "GET", "/debug/pprof/heap?debug=1", 0,
     text_ok(lambda t: HEAP_TEXT_RE.match(t) is not None), None),
    ("heapdelta", "GET", "/debug/pprof/heap?seconds=1", 1, profile_ok, None),
    ("allocs", "GET", "/debug/pprof/allocs", 0, profile_ok, None),
    ("allocsdelta", "GET", "/debug/pprof/allocs?seconds=1", 1, profile_ok, None),
    ("threadcreate", "GET", "/debug/pprof/threadcreate", 0, profile_ok, None),
    ("threadcreate1", "GET", "/debug/pprof/threadcreate?debug=1", 0,
     text_ok(count_ok("threadcreate")), None),
    ("block", "GET", "/debug/pprof/block", 0, profile_ok, None),
    ("blockdelta", "GET", "/debug/pprof/block?seconds=1", 1, profile_ok, None),
    ("mutex", "GET", "/debug/pprof/mutex", 0, profile_ok, None),
    ("mutex1", "GET", "/debug/pprof/mutex?debug=1", 0,
     text_ok(lambda t: CONTENTION_TEXT_RE.match(t) is not None), None),
    ("symbol-get", "GET", None, 0, text_ok(symbol_ok), None),
    ("symbol-post", "POST", None, 0, text_ok(symbol_ok), None),
    ("index", "GET", "/debug/pprof/", 0, text_ok(index_ok), None),
]


@pytest.fixture(scope="module")
def srv(mpm, request):
    from conftest import Httpd, _check_modules, _finish, make_tmpdir
    _check_modules()
    d = make_tmpdir("mod_pprof-it-conc-%s-" % mpm)
    h = Httpd(mpm, d, extra_conf=CONF, tuning=TUNING.get(mpm))
    try:
        h.start()
        yield h
    finally:
        _finish([h], [d])


class Loop(threading.Thread):
    """Asks one endpoint form again and again until stop: every answer kept (status,
    seconds, bytes, problem or None)."""

    def __init__(self, h, scrape, stop, addrs):
        super().__init__()
        self.h, self.scrape, self.stop, self.addrs = h, scrape, stop, addrs
        self.results = []

    def ask(self):
        name, method, path, window, _, _ = self.scrape
        if name == "symbol-get":
            return self.h.get("/debug/pprof/symbol?" + "+".join(self.addrs),
                              timeout=window + BOUND + 10)
        if name == "symbol-post":
            return self.h.post("/debug/pprof/symbol", "+".join(self.addrs),
                               timeout=window + BOUND + 10)
        return self.h.get(path, timeout=window + BOUND + 10)

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                r = self.ask()
                self.results.append((r.status, time.monotonic() - t0, r.body, None))
            except Exception as e:      # noqa: BLE001 -- every failure is reported
                self.results.append((None, time.monotonic() - t0, b"", repr(e)))
            # Again soon, but not in a busy loop on a 500 that answers at once.
            self.stop.wait(0.05)


class LoadThread(threading.Thread):
    def __init__(self, h, paths, stop):
        super().__init__()
        self.h, self.paths, self.stop = h, paths, stop
        self.n, self.errors = 0, []

    def run(self):
        i = 0
        while not self.stop.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            try:
                r = self.h.get(path, timeout=60)
                if r.status != 200:
                    self.errors.append((path, r.status))
            except Exception as e:      # noqa: BLE001
                self.errors.append((path, repr(e)))
            self.n += 1


def test_every_endpoint_at_once_under_load(srv, mpm):
    addrs = [l.split()[0] for l in srv.get("/pprof-test/addr").text.split("\n") if l]
    stop = threading.Event()
    loads = [LoadThread(srv, LOAD[k:] + LOAD[:k], stop) for k in range(3)]
    loops = [Loop(srv, s, stop, addrs) for s in SCRAPES]
    for t in loads + loops:
        t.start()
    time.sleep(RUN_SECONDS)
    stop.set()
    for t in loops + loads:
        t.join(max(s[3] for s in SCRAPES) + BOUND + 30)
    assert not any(t.is_alive() for t in loops + loads), "a request never ended"

    problems, lines, complete = [], [], {}
    for t in loops:
        name, _, _, window, check, busy = t.scrape
        ok = busy500 = 0
        for status, took, body, err in t.results:
            if err is not None:
                problems.append("%s: %s after %.1f s" % (name, err, took))
                continue
            if took > window + BOUND:
                problems.append("%s took %.1f s" % (name, took))
            if status == 500 and busy is not None and body == busy:
                busy500 += 1
                continue
            if status != 200:
                problems.append("%s: %s %r" % (name, status, body[:200]))
                continue
            try:
                assert check(body)
                ok += 1
            except Exception as e:      # noqa: BLE001
                problems.append("%s: unreadable answer (%r): %r" % (name, e, body[:200]))
        slowest = max((took for _, took, _, _ in t.results), default=0)
        lines.append("%-14s %3d answers: %3d complete, %2d busy (Go's 500), slowest %.2f s"
                     % (name, len(t.results), ok, busy500, slowest))
        # The two CPU profile loops race for one window, as do the two trace loops:
        # either may have all of it.
        group = RACING.get(name, name)
        complete[group] = complete.get(group, 0) + ok
    for group, ok in sorted(complete.items()):
        if not ok:
            problems.append("%s: no complete answer in %d s" % (group, RUN_SECONDS))
    load_errors = [e for t in loads for e in t.errors]
    print("\n%s: %d load requests\n%s" % (mpm, sum(t.n for t in loads), "\n".join(lines)))
    assert not problems, "\n".join(problems[:20])
    assert not load_errors, load_errors[:10]
