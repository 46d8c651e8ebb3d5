"""/debug/pprof/symbol: Go's "num_symbols: 1" and "%#x name" lines."""
import re
import subprocess

import pytest

from conftest import APACHE2

ADDR_RE = re.compile(rb"^0x([0-9a-f]+) (pprof_test_hot_[ab])$")


@pytest.fixture(scope="module")
def hot_addrs(httpd):
    """{"pprof_test_hot_a": int, "pprof_test_hot_b": int} from the test module."""
    r = httpd.get("/pprof-test/addr")
    assert r.status == 200, r
    lines = r.body.rstrip(b"\n").split(b"\n")
    assert len(lines) == 2, r.body
    out = {}
    for line in lines:
        m = ADDR_RE.match(line)
        assert m, line
        out[m.group(2).decode()] = int(m.group(1), 16)
    assert set(out) == {"pprof_test_hot_a", "pprof_test_hot_b"}
    return out


def expected(*pairs):
    return ("num_symbols: 1\n" + "".join("%#x %s\n" % (a, n) for a, n in pairs)).encode()


def check_symbol_response(r, body):
    assert r.status == 200, r
    assert r.headers.get("content-type") == "text/plain; charset=utf-8"
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.body == body


def test_symbol_get_empty(httpd):
    check_symbol_response(httpd.get("/debug/pprof/symbol"), b"num_symbols: 1\n")


def test_symbol_post_empty(httpd):
    check_symbol_response(httpd.post("/debug/pprof/symbol", b""), b"num_symbols: 1\n")


def test_symbol_post(httpd, hot_addrs):
    a, b = hot_addrs["pprof_test_hot_a"], hot_addrs["pprof_test_hot_b"]
    body = "%#x+%#x+0x10+zz" % (a, b)
    r = httpd.post("/debug/pprof/symbol", body)
    check_symbol_response(r, expected((a, "pprof_test_hot_a"), (b, "pprof_test_hot_b")))


def test_symbol_post_order_kept(httpd, hot_addrs):
    a, b = hot_addrs["pprof_test_hot_a"], hot_addrs["pprof_test_hot_b"]
    r = httpd.post("/debug/pprof/symbol", "zz+%#x+0x10+%#x+%#x" % (b, a, b))
    check_symbol_response(r, expected((b, "pprof_test_hot_b"), (a, "pprof_test_hot_a"),
                                      (b, "pprof_test_hot_b")))


def test_symbol_get_query(httpd, hot_addrs):
    a, b = hot_addrs["pprof_test_hot_a"], hot_addrs["pprof_test_hot_b"]
    r = httpd.get("/debug/pprof/symbol?%#x" % a)
    check_symbol_response(r, expected((a, "pprof_test_hot_a")))
    r = httpd.get("/debug/pprof/symbol?%#x+%#x+0x10+zz" % (a, b))
    check_symbol_response(r, expected((a, "pprof_test_hot_a"), (b, "pprof_test_hot_b")))


def test_symbol_decimal(httpd, hot_addrs):
    # strconv.ParseUint(s, 0, 64): decimal is base 10, echoed back as %#x.
    b = hot_addrs["pprof_test_hot_b"]
    r = httpd.post("/debug/pprof/symbol", str(b))
    check_symbol_response(r, expected((b, "pprof_test_hot_b")))
    r = httpd.get("/debug/pprof/symbol?%d" % b)
    check_symbol_response(r, expected((b, "pprof_test_hot_b")))


def test_symbol_inside_function(httpd, hot_addrs):
    # An address a few bytes into the function still names it (a return address).
    a = hot_addrs["pprof_test_hot_a"]
    r = httpd.post("/debug/pprof/symbol", "%#x" % (a + 4))
    check_symbol_response(r, expected((a + 4, "pprof_test_hot_a")))


def _exe_text_mapping(pid):
    """(start, offset) of the apache2 executable's r-xp mapping in /proc/PID/maps."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "r-xp" and parts[5] == APACHE2:
                start = int(parts[0].split("-")[0], 16)
                return start, int(parts[2], 16)
    raise AssertionError("no r-xp mapping of %s in /proc/%d/maps" % (APACHE2, pid))


def _symbol_file_offset(path, name):
    """File offset of a defined dynamic symbol, through its PT_LOAD segment."""
    nm = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True,
                        text=True, timeout=30, check=True).stdout
    vaddr = None
    for line in nm.splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == name and f[1] in "Tt":
            vaddr = int(f[0], 16)
    assert vaddr is not None, "%s not in nm -D %s" % (name, path)
    ph = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True,
                        timeout=30, check=True).stdout
    for line in ph.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            off, va, memsz = int(f[1], 16), int(f[2], 16), int(f[5], 16)
            if va <= vaddr < va + memsz:
                return vaddr - va + off
    raise AssertionError("no PT_LOAD segment of %s holds %#x" % (path, vaddr))


def test_symbol_server_executable(httpd):
    r = httpd.get("/pprof-test/pid")
    assert r.status == 200, r
    child = int(r.body.strip())
    # All children share the parent's layout (apache2 and modules are mapped before
    # fork), so any child may answer the symbol request.
    start, offset = _exe_text_mapping(child)
    foff = _symbol_file_offset(APACHE2, "ap_run_handler")
    pc = start + (foff - offset)
    r = httpd.post("/debug/pprof/symbol", "0x10+%#x" % pc)
    check_symbol_response(r, expected((pc, "ap_run_handler")))
