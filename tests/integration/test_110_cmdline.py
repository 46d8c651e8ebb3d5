"""/debug/pprof/cmdline: the parent's argv, NUL-separated, like Go's os.Args."""


def parent_argv(httpd):
    pid = httpd.read_pid()
    assert pid, "no pid file"
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\0")
    return raw[:-1].split(b"\0")


def test_cmdline_is_parent_argv(httpd):
    r = httpd.get("/debug/pprof/cmdline")
    assert r.status == 200, r
    truth = parent_argv(httpd)
    assert truth == [a.encode() for a in httpd.argv]   # how the harness started it
    assert r.body.split(b"\0") == truth
    assert not r.body.endswith(b"\0")


def test_cmdline_headers(httpd):
    r = httpd.get("/debug/pprof/cmdline")
    assert r.status == 200, r
    assert r.headers.get("content-type") == "text/plain; charset=utf-8"
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert "x-go-pprof" not in r.headers


def test_cmdline_debug_param_same(httpd):
    # The index links cmdline?debug=1; Go ignores the parameter for cmdline.
    a = httpd.get("/debug/pprof/cmdline")
    b = httpd.get("/debug/pprof/cmdline?debug=1")
    assert b.status == 200, b
    assert a.body == b.body
