"""What Go's net/http/pprof answers, checked in one place for every endpoint's tests; and
the tests' shared ways of waiting and of loading a server."""

import threading
import time

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


def wait_for(cond, seconds, step=0.02):
    """cond() once it is true, or its last value after seconds."""
    until = time.monotonic() + seconds
    while True:
        v = cond()
        if v or time.monotonic() >= until:
            return v
        time.sleep(step)


class Requests:
    """Threads, one per item of args, each calling self.one(httpd, *item) in a loop from
    __enter__ until __exit__ (never past max_seconds). one() returns an error to note or
    None; what it raises is noted too. __exit__ fails the test on any error if strict."""

    def __init__(self, httpd, args, max_seconds=60, strict=True):
        self.httpd = httpd
        self.strict = strict
        self.stop = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.errors = []
        self.threads = [threading.Thread(target=self._loop, args=a, daemon=True)
                        for a in args]

    def _loop(self, *a):
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                e = self.one(self.httpd, *a)
            except Exception as x:      # noqa: BLE001 -- every failure is reported
                e = x
            if e is not None:
                with self.lock:
                    self.errors.append(e)

    def one(self, httpd, *a):
        raise NotImplementedError

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)
        if self.strict:
            assert not self.errors, self.errors[:5]
        return False
