"""Go's serveError answers: unknown profiles, oversize symbol requests."""


def check_unknown(r):
    assert r.status == 404, r
    assert r.body == b"Unknown profile\n"
    assert r.headers.get("content-type") == "text/plain; charset=utf-8"
    assert r.headers.get("x-go-pprof") == "1"
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert "content-disposition" not in r.headers


def test_unknown_profile(httpd):
    check_unknown(httpd.get("/debug/pprof/nosuch"))


def test_unknown_nested_path(httpd):
    check_unknown(httpd.get("/debug/pprof/a/b"))


def test_unknown_profile_with_query(httpd):
    check_unknown(httpd.get("/debug/pprof/nosuch?debug=1&seconds=1"))


def test_symbol_body_too_large(httpd):
    body = b"0x10+" * ((9 * 1024 * 1024) // 5 + 1)
    assert len(body) > 9 * 1024 * 1024 - 5
    r = httpd.post("/debug/pprof/symbol", body, timeout=60)
    assert r.status == 413, r
    assert r.headers.get("x-go-pprof") == "1"
    assert r.headers.get("content-type") == "text/plain; charset=utf-8"
    assert "content-disposition" not in r.headers
    # The server keeps serving.
    for _ in range(3):
        ok = httpd.get("/debug/pprof/symbol")
        assert ok.status == 200, ok
        assert ok.body == b"num_symbols: 1\n"
    assert httpd.get("/debug/pprof/").status == 200
