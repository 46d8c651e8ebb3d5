"""/debug/pprof/trace: the server-wide execution trace, fetched while the test module
burns CPU, sleeps and contends for a lock, read back by the real `go tool trace` (parser
and web viewer) and by the independent format checker (go_trace.py), and Go's HTTP
behaviour (net/http/pprof.Trace): seconds, WriteTimeout, one trace at a time, hang-up.
Every trace served here is checked in full (served()): the checker's every rule, then Go
1.19's and Go 1.23's viewer, every page of every kind.
"""
import http.client
import os
import re
import socket
import subprocess
import threading
import time

import pytest

import go_trace
from conftest import GO, GO123, Viewer, _go_env, go_trace_d, pprof_top, text_of, view_in_both
from pprof_http import TOO_LONG, Requests, check_error

TRACE = "/debug/pprof/trace"
SECONDS = 3
LOAD = ["/pprof-test/burn?ms=30", "/pprof-test/sleep?ms=40", "/pprof-test/lock?ms=30",
        "/pprof-test/lock?ms=30", "/pprof-test/backend?ms=25"]
MARKS = 5                   # sequential requests made inside the window, each a task
MARK = "/pprof-test/sleep?ms=60&mark=%d"
REGIONS = {"read_request", "access_auth", "handler", "output", "log"}
THREADS_PER_CHILD = 8       # conftest's worker and event tuning
ALREADY = b"Could not enable tracing: tracing is already enabled\n"


class Load(Requests):
    """Threads looping on LOAD paths until stopped (bounded by max_seconds)."""

    def __init__(self, httpd, max_seconds=60):
        super().__init__(httpd, [(p,) for p in LOAD], max_seconds)

    def one(self, httpd, path):
        r = httpd.get(path)
        return None if r.status == 200 else (path, r.status)


def stream(httpd, path, timeout=60):
    """GET path, reading the body as it arrives: (response, [(seconds since the request,
    bytes so far)], body, seconds to the end)."""
    conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=timeout)
    t0 = time.monotonic()
    conn.request("GET", path)
    resp = conn.getresponse()
    arrivals, chunks = [], []
    while True:
        piece = resp.read1(65536)
        if not piece:
            break
        chunks.append(piece)
        arrivals.append((time.monotonic() - t0, sum(len(c) for c in chunks)))
    took = time.monotonic() - t0
    conn.close()
    return resp, arrivals, b"".join(chunks), took


def served(body, directory, name="trace.out"):
    """Check a served trace in full: every rule of the format (go_trace.py, with strictly
    increasing timestamps and the dump's GoCreates alone first), then Go 1.19's and Go
    1.23's viewer, every page of every kind, the threads named httpd.worker_thread in
    both. Returns the file's path."""
    assert go_trace.check(body, strict_ts=True, strict_start=True) == []
    # A request for a trace seen in a trace (one refused while another runs) has ended
    # there: the collecting request's own never shows.
    s = go_trace.summary(body)
    uris = {t: v for t, k, v in s["logs"] if k == "uri"}
    for task, t in s["tasks"].items():
        assert not (uris.get(task, "").startswith(TRACE) and t["end"] is None), (task, t)
    path = os.path.join(str(directory), name)
    with open(path, "wb") as f:
        f.write(body)
    view_in_both(path)
    return path


def trace_threads(data):
    """The kernel thread ids the trace's Ps were started on (EvProcStart)."""
    return {ev.args[0] for ev in go_trace.parse(data).events if ev.name == "ProcStart"}


def cpu_functions(data):
    """Every function named in a CPU sample's stack."""
    tr = go_trace.parse(data)
    names = set()
    for ev in tr.events:
        if ev.name == "CPUSample" and ev.stk in tr.stacks:
            names.update(f.fn for f in tr.stacks[ev.stk].frames)
    return names


# --- one trace under load ------------------------------------------------------------------

class Traced:
    pass


@pytest.fixture(scope="module")
def traced(httpd, tmp_path_factory):
    out = Traced()
    marks = []

    def mark_requests():
        time.sleep(0.8)
        for i in range(MARKS):
            r = httpd.get(MARK % i)
            marks.append(r.status)

    def cpu_profile():
        # As with Go, CPU samples are in a trace while a CPU profile runs alongside.
        out.profile = httpd.get("/debug/pprof/profile?seconds=%d" % (SECONDS + 1), timeout=60)

    with Load(httpd):
        time.sleep(0.5)
        before = set(httpd.child_pids())
        marker = threading.Thread(target=mark_requests)
        marker.start()
        profiler = threading.Thread(target=cpu_profile)
        profiler.start()
        time.sleep(0.2)
        out.t_start = time.time()
        out.resp, out.arrivals, out.body, out.took = stream(
            httpd, TRACE + "?seconds=%d" % SECONDS)
        marker.join()
        profiler.join()
        out.children = before & set(httpd.child_pids())
    assert marks == [200] * MARKS, marks
    assert out.profile.status == 200, out.profile
    out.path = str(tmp_path_factory.mktemp("trace") / "trace.out")
    with open(out.path, "wb") as f:
        f.write(out.body)
    out.summary = go_trace.summary(out.body)
    return out


def test_answer_is_an_attached_go_119_trace(traced):
    r = traced.resp
    assert r.status == 200
    assert r.getheader("Content-Type") == "application/octet-stream"
    assert r.getheader("Content-Disposition") == 'attachment; filename="trace"'
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert r.getheader("X-Go-Pprof") is None
    assert traced.body[:16] == b"go 1.19 trace\0\0\0"


def test_streams_while_tracing(traced):
    """The response starts within a second and grows while the trace runs."""
    first_t, first_n = traced.arrivals[0]
    print("first bytes after %.3f s" % first_t)
    # The header goes out as soon as the children trace (typically 10 ms here); the bound
    # only tells "at once" from "at the end" on a loaded machine.
    assert first_t < SECONDS / 2, traced.arrivals[:3]
    assert first_n >= 16
    mid = [n for t, n in traced.arrivals if t < SECONDS - 0.5]
    assert len(set(mid)) >= 3 and max(mid) > 1000, traced.arrivals
    assert SECONDS <= traced.took < SECONDS + 5, traced.took


def test_go_tool_trace_parses(traced):
    p = go_trace_d(traced.path)
    assert p.returncode == 0, p.stderr[-3000:]
    for ev in ("ProcStart", "GoCreate", "Gomaxprocs", "GoStart", "UserTaskCreate",
               "UserRegion", "UserLog", "UserTaskEnd", "CPUSample", "ProcStop"):
        assert re.search(r"^\d+ %s " % ev, p.stdout, re.M), ev


def test_avoids_every_trap_of_the_format(traced):
    """The independent checker: every rule of FORMAT.md sections 2-9, 11 and 12.3."""
    assert go_trace.check(traced.body, strict_ts=True) == []
    assert go_trace.check(traced.body, strict_ts=True, strict_start=True) == []


def test_each_request_in_the_window_is_one_task(traced):
    """The marked requests: one complete task each, typed by the handler, with method,
    URI, status and bytes logged, lasting at least the handler's sleep."""
    s = traced.summary
    logs = {}
    for task, key, value in s["logs"]:
        logs.setdefault(task, {})[key] = value
    for i in range(MARKS):
        uri = MARK % i
        tasks = [t for t, kv in logs.items() if kv.get("uri") == uri]
        assert len(tasks) == 1, (uri, tasks)
        kv = logs[tasks[0]]
        assert kv.get("method") == "GET" and kv.get("status") == "200", kv
        assert int(kv.get("bytes", "0")) > 0, kv
        task = s["tasks"][tasks[0]]
        assert task["name"] == "pprof-test", task
        assert task["end"] is not None, task
        assert task["end"] - task["start"] >= 60e6 * 0.9, task
    # Every task of the load has the handler as its type; none is left unnamed.
    names = {t["name"] for t in s["tasks"].values()}
    assert "pprof-test" in names and "(none)" not in names, names


def test_phases_are_nested_regions(traced):
    regions = traced.summary["regions"]
    assert REGIONS <= set(regions), regions
    assert regions["handler"] >= MARKS, regions


def test_every_child_and_its_cpu_samples(traced, httpd, mpm):
    """Threads of every child that served requests are goroutines (ProcStart carries
    their kernel thread id), and CPU samples of the burn handler are in the trace.
    Every worker thread of every child has its own kernel id, also those that had not
    served a request yet when the trace started (never thread 0)."""
    s = traced.summary
    tids = trace_threads(traced.body)
    assert 0 not in tids, sorted(tids)
    served = {int(m) for m in re.findall(r"pid=(\d+)", httpd.access_log())}
    workers = 1 if mpm == "prefork" else THREADS_PER_CHILD
    checked = 0
    for pid in traced.children:
        try:
            mine = {int(t) for t in os.listdir("/proc/%d/task" % pid)}
        except FileNotFoundError:
            continue
        assert len(mine & tids) == workers, (pid, sorted(mine), sorted(tids))
        checked += pid in served
    assert checked >= 1, (traced.children, served)
    assert s["cpu_samples"] > 0, s["cpu_samples"]
    starts = set(s["goroutine_start_functions"].values())
    assert starts == {"httpd.worker_thread"}, starts
    funcs = cpu_functions(traced.body)
    assert any(f.startswith("pprof_test_hot") for f in funcs), sorted(funcs)


def test_lock_waits_are_blocks(traced, mpm):
    """Requests waiting for the test module's mutex block (GoBlockSync) and wake."""
    if mpm == "prefork":
        pytest.skip("prefork: one request per process; a process-local mutex never waits")
    p = go_trace_d(traced.path)
    assert len(re.findall(r"^\d+ GoBlockSync ", p.stdout, re.M)) >= 2, p.stdout[-2000:]
    # go tool trace's synchronization-blocking profile names where the wait was.
    top = blocking_profile(traced.path, "sync")
    assert "pthread_mutex_lock" in top and "pprof_test_lock_hold" in top, top


def blocking_profile(path, kind, go=GO):
    """go tool trace -pprof=KIND, read by go tool pprof -top (of the same toolchain)."""
    out = "%s.%s.%s.pb" % (path, kind, "go123" if go == GO123 else "go119")
    with open(out, "wb") as f:
        q = subprocess.run([go, "tool", "trace", "-pprof=" + kind, path], stdout=f,
                           stderr=subprocess.PIPE, env=_go_env(), timeout=120)
    assert q.returncode == 0, q.stderr
    return pprof_top(out, go=go)


def test_blocking_profiles_in_go123(traced, mpm):
    """Go 1.23's go tool trace -pprof and go tool pprof name the same waits."""
    top = blocking_profile(traced.path, "net", GO123)
    assert "pprof_test_backend_wait" in top, top
    if mpm != "prefork":    # a process-local mutex never waits there
        top = blocking_profile(traced.path, "sync", GO123)
        assert "pthread_mutex_lock" in top and "pprof_test_lock_hold" in top, top


def test_backend_waits_are_network_blocks(traced):
    """A request waiting in poll() (the test module's slow backend) blocks on the network,
    and go tool trace's network-blocking profile names where."""
    p = go_trace_d(traced.path)
    assert re.search(r"^\d+ GoBlockNet ", p.stdout, re.M), p.stdout[-2000:]
    top = blocking_profile(traced.path, "net")
    assert "pprof_test_backend_wait" in top, top


def test_every_page_in_both_viewers(traced, tmp_path):
    served(traced.body, tmp_path)


@pytest.mark.parametrize("go", [GO, GO123], ids=["go1.19", "go1.23"])
def test_viewer_serves_the_pages(traced, go):
    with Viewer(traced.path, go=go) as v:
        status, html = v.get("/usertasks")
        assert status == 200 and "pprof-test" in text_of(html), text_of(html)[:2000]
        status, html = v.get("/userregions")
        assert status == 200
        for name in REGIONS:
            assert name in text_of(html), (name, text_of(html)[:3000])
        status, html = v.get("/goroutines")
        assert status == 200 and "httpd.worker_thread" in html, html[:2000]
        # a group: by the start PC in 1.19, by name in 1.23
        group = re.search(r'href="(/goroutine\?(?:id=\d+|name=httpd.worker_thread))"', html)
        assert group, html[:2000]
        assert v.get(group.group(1))[0] == 200
        status, html = v.get("/usertask?id=1")
        assert status == 200
        status, html = v.get("/userregion?type=handler")
        assert status == 200
        status, body = v.get("/jsontrace")
        assert status == 200 and '"traceEvents"' in body
        assert v.get("/jsontrace?taskid=1")[0] == 200
        assert v.get("/mmu")[0] == 200
        status, html = v.get("/")
        assert status == 200


# --- Go's HTTP behaviour ---------------------------------------------------------------------

# A '+' in a query is a space (net/url): " Inf" is no float, the default 1 s.
@pytest.mark.parametrize("query,expect", [("", 1.0), ("?seconds=abc", 1.0),
                                          ("?seconds=-2", 1.0), ("?seconds=0", 1.0),
                                          ("?seconds=+Inf", 1.0), ("?seconds=0.5", 0.5)])
def test_seconds_is_a_float_defaulting_to_1(httpd, query, expect, tmp_path):
    t0 = time.monotonic()
    r = httpd.get(TRACE + query, timeout=30)
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert expect <= took < expect + 2.5, took
    served(r.body, tmp_path)


@pytest.mark.parametrize("seconds", ["60", "1e9", "%2BInf"])
def test_not_shorter_than_timeout_is_400(httpd, seconds):
    """The test server's Timeout is 60: Go refuses a duration not below WriteTimeout."""
    check_error(httpd.get(TRACE + "?seconds=" + seconds), 400, TOO_LONG)


def test_one_trace_at_a_time(httpd, tmp_path):
    # The first trace's headers come once every child traces: then it surely runs.
    conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=30)
    conn.request("GET", TRACE + "?seconds=2")
    first = conn.getresponse()
    assert first.status == 200
    check_error(httpd.get(TRACE + "?seconds=1"), 500, ALREADY)
    body = first.read()
    conn.close()
    served(body, tmp_path, "first.out")
    # Free again afterwards.
    again = httpd.get(TRACE + "?seconds=0.2")
    assert again.status == 200
    served(again.body, tmp_path, "again.out")


def test_cpu_samples_only_beside_a_cpu_profile(httpd, tmp_path):
    """As in Go, tracing alone takes no CPU samples (it costs less)."""
    with Load(httpd, max_seconds=20):
        tr = httpd.get(TRACE + "?seconds=1", timeout=30)
    assert tr.status == 200
    assert go_trace.summary(tr.body)["cpu_samples"] == 0
    served(tr.body, tmp_path)


def trace_beside_profile(httpd, load):
    """A 1 s trace taken inside a 2 s CPU profile, under load: (trace, profile)."""
    got = {}

    def prof():
        got["p"] = httpd.get("/debug/pprof/profile?seconds=2", timeout=30)

    with load:
        t = threading.Thread(target=prof)
        t.start()
        time.sleep(0.3)
        tr = httpd.get(TRACE + "?seconds=1", timeout=30)
        t.join()
    assert tr.status == 200 and got["p"].status == 200, (tr, got["p"])
    return tr, got["p"]


def test_runs_beside_a_cpu_profile(httpd, tmp_path):
    """As in Go, a trace and a CPU profile may run at once (they share the sampler), and
    the trace then has the profile's samples."""
    tr, p = trace_beside_profile(httpd, Load(httpd, max_seconds=20))
    served(tr.body, tmp_path)
    assert go_trace.summary(tr.body)["cpu_samples"] > 0
    assert p.body[:2] == b"\x1f\x8b"


class BurnLoad(Load):
    """Requests that only burn CPU: no lock or network wait gives the trace a PC."""

    def __init__(self, httpd, max_seconds=60):
        Requests.__init__(self, httpd, [("/pprof-test/burn?ms=30",)] * 2, max_seconds)


def test_cpu_samples_are_named_without_waits(httpd, tmp_path):
    """A child sends its maps with CPU samples even when no wait of a request needs them
    (the take sends the maps only for PCs): the samples' functions are named."""
    tr, _ = trace_beside_profile(httpd, BurnLoad(httpd, max_seconds=20))
    funcs = cpu_functions(tr.body)
    assert any(f.startswith("pprof_test_hot") for f in funcs), sorted(funcs)


def test_client_hangup_ends_tracing_at_once(httpd, tmp_path):
    s = socket.create_connection(("127.0.0.1", httpd.port), timeout=10)
    s.sendall(b"GET " + TRACE.encode() + b"?seconds=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.5)
    s.close()
    closed = time.monotonic()
    while True:
        asked = time.monotonic()
        r = httpd.get(TRACE + "?seconds=0.1", timeout=10)
        if r.status == 200:
            break
        check_error(r, 500, ALREADY)
        assert asked - closed < 5, "tracing still on 5 s after the hang-up"
        time.sleep(0.05)
    # The first trace that could start again was asked for this long after the hang-up
    # (typically 0.1-0.3 s: the collector looks at the client every 100 ms). The bound
    # tells "at once" from "at the end of the 30 s" on a loaded machine.
    print("tracing ended %.3f s after the hang-up" % (asked - closed))
    assert asked - closed < 3.0, asked - closed
    until = time.monotonic() + 5
    while "client went away" not in httpd.error_log() and time.monotonic() < until:
        time.sleep(0.1)
    assert "PP0401: trace stopped: client went away" in httpd.error_log()
    served(r.body, tmp_path)        # the first trace after it


def test_curl_then_go_tool_trace(httpd, tmp_path):
    """The README's way: curl -o trace.out URL, then go tool trace."""
    out = str(tmp_path / "trace.out")
    subprocess.run(["curl", "-sSf", "-o", out, httpd.url(TRACE + "?seconds=1")], check=True,
                   timeout=60)
    p = go_trace_d(out)
    assert p.returncode == 0, p.stderr[-2000:]
    p = go_trace_d(out, GO123)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(out, "rb") as f:
        served(f.read(), tmp_path, "served.out")


def marks_in_trace(srv, seconds, wait, n, key, margin):
    """A trace of `seconds` taken in the background; after `wait` s, n requests marked
    key=i, all at least `margin` s before the trace ended (else the test cannot judge).
    Each mark is a task of the trace exactly once. Returns the trace and the pids that
    served the marks."""
    got = {}

    def run():
        got["r"] = srv.get(TRACE + "?seconds=%d" % seconds, timeout=60)
        got["end"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(wait)
    pids = set()
    for i in range(n):
        r = srv.get("/pprof-test/pid?%s=%d" % (key, i))
        assert r.status == 200, r
        pids.add(r.text.strip())
    last = time.monotonic()
    t.join()
    assert got["end"] - last > margin, got["end"] - last
    r = got["r"]
    assert r.status == 200, r
    uris = [v for _, k, v in go_trace.summary(r.body)["logs"] if k == "uri"]
    for i in range(n):
        assert uris.count("/pprof-test/pid?%s=%d" % (key, i)) == 1, (i, uris)
    return r.body, pids


def test_requests_of_children_that_exit_are_kept(make_httpd, tmp_path):
    """Children that end during the trace (MaxConnectionsPerChild) leave their last
    records behind for the collector: every request made in the window is a task."""
    srv = make_httpd(extra_conf="MaxConnectionsPerChild 4")
    body, pids = marks_in_trace(srv, 6, 0.5, 24, "mark", 1.0)
    served(body, tmp_path)
    assert len(pids) >= 3, pids     # children did end and new ones served


def test_connection_opened_before_the_trace_keeps_its_headers(httpd):
    """A keep-alive connection accepted before a trace began: its next requests, made
    while tracing, are whole HTTP responses (status line, headers, body), and their output
    is in the trace. The trace's output filter was once added to such a connection from
    create_request, which left the request's HTTP_HEADER filter out: the body went out
    alone."""
    conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=30)
    trace = {}
    try:
        conn.request("GET", "/pprof-test/pid")
        first = conn.getresponse()
        assert first.status == 200 and first.read()
        tconn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=30)
        tconn.request("GET", TRACE + "?seconds=2")
        tresp = tconn.getresponse()         # headers: the trace is running
        assert tresp.status == 200, tresp.status
        t = threading.Thread(target=lambda: trace.setdefault("body", tresp.read()))
        t.start()
        for i in range(3):
            conn.request("GET", "/pprof-test/sleep?ms=1&n=%d" % i)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200 and r.getheader("Content-Length") == str(len(body)), \
                (r.status, r.getheaders(), body)
            assert body.startswith(b"ok sleep"), body
        t.join(30)
        tconn.close()
    finally:
        conn.close()
    assert trace.get("body", b"")[:16] == b"go 1.19 trace\x00\x00\x00", trace.get("body", b"")[:16]
    # The filter goes on a connection only while tracing: this one, begun before, got it
    # at its first traced request, so every response it sent in the trace has its output.
    regions = go_trace.summary(trace["body"])["regions"]
    assert regions.get("output", 0) >= 3, regions


ROUNDS_RE = re.compile(r"PP0401: trace done.* rounds asked (\d+) children, left (\d+) quiet")


def test_idle_children_are_not_asked_every_round(make_httpd, tmp_path):
    """An idle child's agent says it holds nothing, and the collector's rounds leave it
    out but for a full round every 5 s: most asks of an idle server's children are left
    out (asking every child each round was most of an unloaded trace's CPU; counted by the
    collector, PP0401). Requests made after a second of such rounds, on children that were
    left out (their workers clear the word), are all in the trace."""
    srv = make_httpd(extra_conf="LogLevel pprof:debug")
    body, _ = marks_in_trace(srv, 3, 1.3, 6, "quiet", 0.5)
    served(body, tmp_path)      # records that came late, after quiet rounds: both viewers
    m = ROUNDS_RE.findall(srv.error_log())
    assert len(m) == 1, m
    asked, left = int(m[0][0]), int(m[0][1])
    # About 30 rounds of 2-4 children: with every child asked each round none is left
    # out; quiet children are asked in the first round or two (before their first tick)
    # and a round or two after a mark.
    assert left > asked > 0, (asked, left)
