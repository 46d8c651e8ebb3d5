"""Go's query semantics, checked against Go itself (issue 10).

The same hostile queries, form bodies and symbol requests go to a Go 1.19 program that
serves net/http/pprof (goref/main.go, built here) and to mod_pprof; the answers must
agree: status, Content-Type, X-Go-Pprof, Content-Disposition, an error's text, and for a
200 the kind of answer (its file name, its text's first line with numbers as N, a
trace's header) and its duration.

Both servers take Timeout (Go's WriteTimeout) 20 s: the CPU profile's default of 30 s
then answers 400 at once, so a query that falls back to it is seen without waiting. The
trace's duration is compared as Go's request took and as mod_pprof's debug log PP0051
gives the window it parsed. Parsing does not depend on the MPM: one server (event)."""
import gzip
import http.client
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import GO, HERE, Httpd, _finish, _go_env, make_tmpdir, protoc_decode, require_go

TIMEOUT = 20
FORM = "application/x-www-form-urlencoded"
SEMICOLON_GO = "URL query contains semicolon"
SEMICOLON_OURS = "PP0050"


@pytest.fixture(scope="module")
def mpm():
    return "event"


class Server:
    """One side of the comparison: requests on a fresh connection each."""

    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, ctype=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": ctype} if ctype else {}
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, hdrs, data, time.monotonic() - t0
        finally:
            conn.close()


@pytest.fixture(scope="module")
def goref():
    """Go's net/http/pprof (go build of goref/main.go in a temporary module; the
    standard library only, nothing downloaded)."""
    require_go(GO)
    d = make_tmpdir("mod_pprof-it-goref-")
    shutil.copy(os.path.join(HERE, "goref", "main.go"), d)
    with open(os.path.join(d, "go.mod"), "w") as f:
        f.write("module pprofref\n\ngo 1.19\n")
    env = _go_env()
    env["GOFLAGS"] = "-mod=mod"
    p = subprocess.run([GO, "build", "-o", "pprofref", "."], cwd=d, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    log = os.path.join(d, "stderr")
    with open(log, "w") as err:
        proc = subprocess.Popen([os.path.join(d, "pprofref"), "-timeout", str(TIMEOUT)],
                                cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, text=True)
    try:
        line = proc.stdout.readline()
        m = re.match(r"port (\d+)$", line.strip())
        assert m, "the Go reference printed %r" % line
        srv = Server(int(m.group(1)))
        srv.log = lambda: open(log, errors="replace").read()
        yield srv
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if os.environ.get("PPROF_KEEP_TMP") != "1":
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def ours(mpm):
    d = make_tmpdir("mod_pprof-it-%s-" % mpm)
    s = Httpd(mpm, d, extra_conf="LogLevel info pprof:debug", timeout=TIMEOUT)
    try:
        s.start()
        srv = Server(s.port)
        srv.log = s.error_log
        yield srv
    finally:
        _finish([s], [d])


def shape(body):
    """The first line of a text answer, numbers as N (hex too), what follows '@' or '['
    cut (a thread's state is ours, a goroutine's Go's)."""
    line = body.split(b"\n", 1)[0].decode("utf-8", "replace")
    return re.sub(r"(0x[0-9a-f]+|\d+)", "N", re.split(r" @ |\[", line)[0])


def duration_s(body):
    """duration_nanos of a gzipped profile, in seconds."""
    m = re.search(r"^duration_nanos: (\d+)$", protoc_decode(body), re.M)
    return int(m.group(1)) / 1e9 if m else 0.0


def our_window(before_log, after_log):
    """The window PP0051 logged for one request (seconds)."""
    new = after_log[len(before_log):]
    found = re.findall(r"PP0051: \w+ window of ([0-9.]+) s", new)
    assert len(found) == 1, new[-2000:]
    return float(found[0])


def kind_of(status, h, body):
    """What an answer is, to compare: its headers, then its text or its kind."""
    out = {"status": status, "content-type": h.get("content-type"),
           "x-go-pprof": h.get("x-go-pprof"),
           "content-disposition": h.get("content-disposition"),
           "nosniff": h.get("x-content-type-options")}
    if status != 200 or h.get("content-type", "").startswith("text/plain") and \
            not body.startswith(b"\x1f\x8b"):
        out["text"] = body if status != 200 else shape(body)
    if body.startswith(b"\x1f\x8b"):
        out["text"] = "gzip"
    if body.startswith(b"go 1."):
        out["text"] = body[:16]
    if body.startswith(b"<html>"):
        out["text"] = "html"
    if status == 200 and b"\0" in body and body.startswith(b"/"):
        out["text"] = "argv"            # cmdline: each its own
    return out


def compare(goref, ours, method, path, body=None, ctype=None):
    go_log, our_log = goref.log(), ours.log()
    gs, gh, gb, gt = goref.request(method, path, body, ctype)
    os_, oh, ob, ot = ours.request(method, path, body, ctype)
    want, got = kind_of(gs, gh, gb), kind_of(os_, oh, ob)
    assert got == want, (method, path, body, ctype, "mod_pprof", got, "Go", want)
    semicolon = ";" in path.partition("?")[2]
    assert (SEMICOLON_GO in goref.log()[len(go_log):]) == semicolon, goref.log()
    assert (SEMICOLON_OURS in ours.log()[len(our_log):]) == semicolon, ours.log()[-2000:]
    if gs == 200 and got["text"] == "gzip" and "-delta" in (gh.get("content-disposition") or ""):
        assert abs(duration_s(ob) - duration_s(gb)) < 0.5, (path, duration_s(ob),
                                                             duration_s(gb))
    if gs == 200 and path.startswith("/debug/pprof/profile"):
        # Go's profile lasts its window; ours says its window (a wall clock of the
        # children's stop), both 1 s here.
        assert abs(duration_s(ob) - duration_s(gb)) < 0.5, (path, duration_s(ob),
                                                             duration_s(gb))
    if gs == 200 and path.startswith("/debug/pprof/trace"):
        # Go's request lasts its window and a few ms; PP0051 is the window we parsed.
        window = our_window(our_log, ours.log())
        assert window <= gt and gt - window < 0.4, (path, window, gt)


# Each table names the queries sent to one endpoint; comments say what Go does with the
# hostile ones. Timeout 20 s: the CPU profile's default (30 s) answers 400.
PROFILE = [
    "seconds=+1",                  # '+' is a space: " 1" is no integer, 30 s: 400
    "seconds=%2B1",                # "+1": ParseInt takes a sign, 1 s
    "seconds=1&seconds=x",         # the first of duplicate keys wins: 1 s
    "seconds=x&seconds=1",         # 30 s: 400
    "seconds=%zz&seconds=1",       # a bad escape drops its pair only: 1 s
    "seconds=1;x=1", "x=1;seconds=1",   # a ';' drops the pair (and is logged): 400
    "seconds", "seconds=", "seconds=1e0", "seconds=1.0", "seconds=0x1", "seconds=1_0",
    "seconds=%201", "seconds=1%20", "seconds=1%00", "seconds%00=1", "seconds=-1",
    "seconds=20", "seconds=99999999999999999999",
    "%73econds=1", "=1&&seconds=1&",
]
TRACE = [
    "seconds=+Inf",                # " Inf": no float, the default 1 s
    "seconds=%2BInf", "seconds=inf", "seconds=INFINITY",   # not below 20: 400
    "seconds=-inf", "seconds=infin",   # 1 s
    "seconds=nan",                 # a NaN: Duration(NaN) ends at once on amd64
    "seconds=0x1p-30", "seconds=1_0e-10", "seconds=4e-320",   # at once
    "seconds=2_0", "seconds=0x1_4p0", "seconds=.2e2", "seconds=2e%2B1",   # 20: 400
    "seconds=2__0", "seconds=0x14",    # no float (a hex float needs its 'p'): 1 s
    "seconds=1e400",               # ErrRange: 1 s
]
HEAP = [
    "seconds=+1",                  # " 1": 400 invalid value for "seconds"
    "seconds=%2B1",                # a 1 s delta
    "seconds", "seconds=", "debug=1&seconds",   # an empty seconds is a snapshot
    "debug", "debug=+01", "debug=%2B01", "debug=1&debug=0", "debug=0&debug=1",
    "debug=%zz&debug=1", "debug=1%00", "debug%00=1", "debug=1;", "de%62ug=1",
    "debug=99999999999", "debug=-1", "gc=1&debug=1",
    "seconds=1&debug=%2B1", "seconds=1.0", "seconds=%2B20", "seconds=20&debug=1",
]
GOROUTINE = ["debug=2", "debug=99999999999", "debug=+2", "debug=%2B2", "debug=2%20",
             "debug=1&debug=2", "debug=-1", "seconds=+1"]
OTHERS = [
    ("threadcreate", "debug=1"), ("threadcreate", "debug=-5"), ("block", "debug=1"),
    ("block", "debug=-1"), ("mutex", "debug=1"), ("mutex", "debug=+1"),
    ("allocs", "debug=1&seconds=%20"), ("nosuch", "seconds=abc"), ("", "debug=1"),
    ("cmdline", "x=%zz"),
]
SYMBOL_GET = ["0x1+0x2", "", "+", "0x", "18446744073709551616", "0b1+0o7+1_0", "%30x1"]
SYMBOL_POST = [b"0x1+0x2", b"", b"+++", b"0x1\n", b"-1+0x_1"]
FORMS = [
    # (endpoint, query, body, Content-Type): a POST, PUT or PATCH url-encoded form's
    # values come before the query's.
    ("heap", "", "debug=1", FORM),
    ("heap", "debug=0", "debug=1", FORM),
    ("heap", "debug=1", "debug=0", FORM),
    ("heap", "", "debug=1", FORM + "; charset=utf-8"),
    ("heap", "", "debug=1", "Application/X-WWW-Form-URLEncoded"),
    ("heap", "", "debug=1", "text/plain"),
    ("heap", "", "seconds=+1", FORM),
    ("heap", "", "debug=1;x", FORM),
    ("goroutine", "debug=1", "debug=2&x=%zz", FORM),
    ("profile", "seconds=1", "seconds=x", FORM),
    ("heap", "", "debug=1\0&debug=1", FORM),       # a raw NUL: "1\x00" is no integer
    ("heap", "", "debug\0=1&debug=1", FORM),       # "debug\x00" is another key
]


@pytest.mark.parametrize("table,path,queries", [
    ("profile", "/debug/pprof/profile", PROFILE),
    ("trace", "/debug/pprof/trace", TRACE),
    ("heap", "/debug/pprof/heap", HEAP),
    ("goroutine", "/debug/pprof/goroutine", GOROUTINE),
], ids=["profile", "trace", "heap", "goroutine"])
def test_queries_answer_as_go(goref, ours, table, path, queries):
    for q in queries:
        compare(goref, ours, "GET", path + "?" + q)


def test_other_endpoints_answer_as_go(goref, ours):
    for name, q in OTHERS:
        compare(goref, ours, "GET", "/debug/pprof/%s?%s" % (name, q))
    for q in SYMBOL_GET:
        compare(goref, ours, "GET", "/debug/pprof/symbol?" + q)
    for body in SYMBOL_POST:
        compare(goref, ours, "POST", "/debug/pprof/symbol", body, "text/plain")


def test_form_bodies_answer_as_go(goref, ours):
    for i, (name, q, body, ctype) in enumerate(FORMS):
        method = ("POST", "PUT", "PATCH")[i % 3]
        compare(goref, ours, method, "/debug/pprof/%s%s" % (name, "?" + q if q else ""),
                body.encode(), ctype)


def test_client_that_leaves_frees_the_profile_as_go(goref, ours):
    """Go's sleep(r, d) ends when the request's context is cancelled, which its server
    does when the client closes the connection: the CPU profile stops and is free for
    the next request. Ours stops every child and frees the window too (README)."""
    for srv in (goref, ours):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("GET", "/debug/pprof/profile?seconds=15")
        time.sleep(1)
        conn.close()
        left = time.monotonic()
        while True:
            asked = time.monotonic() - left
            status, _, body, _ = srv.request("GET", "/debug/pprof/profile?seconds=1")
            if status == 200 or time.monotonic() - left > 2:
                break
            time.sleep(0.1)
        assert status == 200, (srv.port, status, body)
        assert gzip.decompress(body)
        print("%s: a profile asked %.2f s after the client left started" % (
            "Go" if srv is goref else "mod_pprof", asked))
