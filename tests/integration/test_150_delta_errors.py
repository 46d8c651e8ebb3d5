"""The profiles that take Go's "seconds" delta (heap, allocs, goroutine, threadcreate,
block, mutex) share Go's serveDeltaProfile checks, in Go's order, and the pid parameter's check."""
import pytest

from pprof_http import BAD_SECONDS, INCOMPATIBLE, TOO_LONG, check_error

DELTA_PROFILES = ["heap", "allocs", "goroutine", "threadcreate", "block", "mutex"]


@pytest.mark.parametrize("name", DELTA_PROFILES)
def test_delta_and_pid_errors(httpd, name):
    path = "/debug/pprof/" + name
    for q in ("seconds=abc", "seconds=0", "seconds=-1", "seconds=1.5", "seconds=+",
              "seconds=99999999999999999999", "seconds=abc&debug=1", "seconds=0&debug=2"):
        check_error(httpd.get(path + "?" + q), 400, BAD_SECONDS)
    # The harness's Timeout 60 is Go's WriteTimeout: seconds must be shorter.
    for q in ("seconds=60", "seconds=61", "seconds=3600", "seconds=60&debug=1"):
        check_error(httpd.get(path + "?" + q), 400, TOO_LONG)
    for q in ("seconds=1&debug=1", "seconds=1&debug=2", "debug=1&seconds=59"):
        check_error(httpd.get(path + "?" + q), 400, INCOMPATIBLE)
    parent = httpd.read_pid()
    for v in ("1", "abc", "0", "-5", "1x", str(parent),
              str(max(httpd.child_pids()) + 100000)):
        for q in ("pid=%s" % v, "pid=%s&debug=1" % v, "pid=%s&debug=2" % v,
                  "pid=%s&seconds=1" % v):
            check_error(httpd.get(path + "?" + q), 400,
                        ("pid %s is not a child process of this server\n" % v).encode())
