"""What Go's net/http/pprof answers, checked in one place for every endpoint's tests."""

BAD_SECONDS = b'invalid value for "seconds" - must be a positive integer\n'
TOO_LONG = b"profile duration exceeds server's WriteTimeout\n"
INCOMPATIBLE = b"seconds and debug params are incompatible\n"


def check_error(r, status, body):
    """Go's serveError: the status, text/plain, X-Go-Pprof: 1, no attachment."""
    assert r.status == status, r
    assert r.body == body, r
    assert r.headers.get("content-type") == "text/plain; charset=utf-8", r
    assert r.headers.get("x-go-pprof") == "1", r
    assert r.headers.get("x-content-type-options") == "nosniff", r
    assert "content-disposition" not in r.headers, r


def check_profile_response(r, filename):
    """A gzipped profile attached as filename."""
    assert r.status == 200, r
    assert r.headers.get("content-type") == "application/octet-stream", r
    assert r.headers.get("content-disposition") == 'attachment; filename="%s"' % filename, r
    assert r.headers.get("x-content-type-options") == "nosniff", r
    assert "x-go-pprof" not in r.headers, r
    assert r.body[:2] == b"\x1f\x8b", "not gzip: %r" % r.body[:20]


def check_text_response(r):
    """A debug=N text answer."""
    assert r.status == 200, r
    assert r.headers.get("content-type") == "text/plain; charset=utf-8", r
    assert r.headers.get("x-content-type-options") == "nosniff", r
    assert "content-disposition" not in r.headers, r
    assert "x-go-pprof" not in r.headers, r
