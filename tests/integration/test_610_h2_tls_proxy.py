"""mod_pprof beside mod_ssl, mod_http2 and mod_proxy_http, as they are really deployed:
every endpoint over h2c and h2 over TLS (curl negotiates h2 by itself on https), the hang-up
of a client over each protocol, and a reverse proxy's wait for its backend in the trace.
Clients are curl (nghttp2) and the real go tool pprof / go tool trace.
"""
import os
import subprocess
import threading
import time

import pytest

import go_trace
from pprof_output import parse_top
from conftest import (Httpd, _finish, _go_env, free_port, go_pprof, go_trace_d, make_tmpdir,
                      view_in_both)

CURL = "/usr/bin/curl"
MODDIR = "/usr/lib/apache2/modules"
# (name, curl arguments, URL scheme/port attribute)
PROTOCOLS = {
    "h2c": (["--http2-prior-knowledge"], "http", "port", "2"),
    "h2-tls": (["--http2", "-k"], "https", "tls_port", "2"),
    "http1-tls": (["--http1.1", "-k"], "https", "tls_port", "1.1"),
}
ENDPOINTS = [
    ("/debug/pprof/", "text/html"),
    ("/debug/pprof/cmdline", "text/plain"),
    ("/debug/pprof/symbol", "text/plain"),
    ("/debug/pprof/goroutine?debug=1", "text/plain"),
    ("/debug/pprof/goroutine?debug=2", "text/plain"),
    ("/debug/pprof/threadcreate?debug=1", "text/plain"),
    ("/debug/pprof/heap?debug=1", "text/plain"),
    ("/debug/pprof/heap", "application/octet-stream"),
    ("/debug/pprof/allocs", "application/octet-stream"),
    ("/debug/pprof/goroutine", "application/octet-stream"),
    ("/debug/pprof/threadcreate", "application/octet-stream"),
]


def stack_server(mpm="event"):
    """One server: h2c on its plain port, h2 and http/1.1 over TLS on a second port, and a
    reverse proxy (/proxied/) to its own slow test endpoint."""
    d = make_tmpdir("mod_pprof-it-h2-")
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)
    tls_port = free_port()
    s = Httpd(mpm, d)
    s.tls_port = tls_port
    s.extra_conf = """
LoadModule ssl_module {m}/mod_ssl.so
LoadModule http2_module {m}/mod_http2.so
LoadModule proxy_module {m}/mod_proxy.so
LoadModule proxy_http_module {m}/mod_proxy_http.so
Protocols h2c http/1.1
Listen 127.0.0.1:{tls}
<VirtualHost 127.0.0.1:{tls}>
    ServerName 127.0.0.1
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    Protocols h2 http/1.1
</VirtualHost>
ProxyPass /proxied/ http://127.0.0.1:{port}/pprof-test/
""".format(m=MODDIR, tls=tls_port, cert=cert, key=key, port=s.port)
    s.write_conf()
    return s, d


@pytest.fixture(scope="module")
def stack():
    s, d = stack_server()
    try:
        s.start()
        yield s
    finally:
        _finish([s], [d])


def curl(server, proto, path, out=None, max_time=60):
    """curl over proto: (http code, negotiated version, body bytes or None)."""
    args, scheme, port_attr, _ = PROTOCOLS[proto]
    url = "%s://127.0.0.1:%d%s" % (scheme, getattr(server, port_attr), path)
    cmd = [CURL, "-s", "--max-time", str(max_time), "-o", out or "-", "-w",
           "\n%{http_code} %{http_version} %{content_type}"] + args + [url]
    p = subprocess.run(cmd, capture_output=True, timeout=max_time + 30)
    text = p.stdout
    body, _, tail = text.rpartition(b"\n")
    code, version, ctype = (tail.decode().split(" ", 2) + ["", "", ""])[:3]
    return p.returncode, code, version, ctype, (None if out else body)


@pytest.mark.parametrize("proto", ["h2c", "h2-tls"])
def test_every_endpoint_answers_over_h2(stack, proto):
    for path, ctype in ENDPOINTS:
        rc, code, version, got_type, body = curl(stack, proto, path)
        assert rc == 0 and code == "200", (path, rc, code, body[:200])
        assert version == "2", (path, version)
        assert got_type.startswith(ctype), (path, got_type)
        assert body, path


@pytest.mark.parametrize("proto", ["h2c", "h2-tls", "http1-tls"])
def test_profile_and_trace_are_complete_over(stack, proto, tmp_path):
    load = threading.Thread(target=lambda: [stack.get("/pprof-test/burn?ms=200")
                                            for _ in range(8)])
    load.start()
    try:
        prof = str(tmp_path / "cpu.pb.gz")
        rc, code, version, _, _ = curl(stack, proto, "/debug/pprof/profile?seconds=2", prof)
        assert rc == 0 and code == "200" and version == PROTOCOLS[proto][3], (rc, code, version)
        trace = str(tmp_path / "trace.out")
        rc, code, version, _, _ = curl(stack, proto, "/debug/pprof/trace?seconds=1", trace)
        assert rc == 0 and code == "200" and version == PROTOCOLS[proto][3], (rc, code, version)
    finally:
        load.join(60)
    p = go_pprof("-top", prof)
    assert p.returncode == 0, p.stderr
    assert "pprof_test_burn" in p.stdout, p.stdout
    p = go_trace_d(trace)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    # Complete: every rule of the format holds to the end (EvFrequency last, all stopped).
    with open(trace, "rb") as f:
        assert go_trace.check(f.read(), strict_ts=True) == []
    view_in_both(trace)


def went_away(server, tag):
    return server.error_log().count(tag)


@pytest.mark.parametrize("proto", ["h2c", "h2-tls", "http1-tls"])
@pytest.mark.parametrize("kind,tag", [("trace", "PP0401: trace stopped: client went away"),
                                      ("profile", "PP0101: client went away")],
                         ids=["trace", "profile"])
def test_client_that_gives_up_frees_collection(stack, proto, kind, tag):
    """A client that gives up after 1 s of a 30 s window: collection stops and the slot
    is free again within 2 s, as over plain HTTP/1.1."""
    before = went_away(stack, tag)
    rc, _, _, _, _ = curl(stack, proto, "/debug/pprof/%s?seconds=30" % kind, os.devnull,
                          max_time=1)
    assert rc == 28, rc              # curl: operation timed out, i.e. it gave up
    gave_up = time.monotonic()
    while went_away(stack, tag) == before and time.monotonic() - gave_up < 10:
        time.sleep(0.05)
    freed = time.monotonic() - gave_up
    print("%s over %s: freed %.2f s after the client gave up" % (kind, proto, freed))
    assert went_away(stack, tag) == before + 1, stack.error_log()[-3000:]
    assert freed < 2, freed
    rc, code, _, _, _ = curl(stack, proto, "/debug/pprof/%s?seconds=1" % kind, os.devnull)
    assert rc == 0 and code == "200", (rc, code)


def test_proxy_backend_wait_is_a_network_block(stack, tmp_path):
    """mod_proxy_http waiting for a slow backend: the trace shows the wait as a network
    block whose stack is the proxy's."""
    stop = threading.Event()
    errors = []

    def load():
        while not stop.is_set():
            r = stack.get("/proxied/sleep?ms=150")
            if r.status != 200:
                errors.append(r)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        r = stack.get("/debug/pprof/trace?seconds=2", timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[:3]
    assert r.status == 200, r
    path = str(tmp_path / "proxy.trace")
    with open(path, "wb") as f:
        f.write(r.body)
    view_in_both(path)
    prof = str(tmp_path / "net.pprof")
    with open(prof, "wb") as f:
        p = subprocess.run(["go", "tool", "trace", "-pprof=net", path], stdout=f, stderr=subprocess.PIPE, env=_go_env(),
                           timeout=120)
    assert p.returncode == 0, p.stderr
    # mod_proxy's exported hook runner names the proxy (Debian strips mod_proxy_http's
    # static functions); the blocked call is APR's poll for the backend's answer.
    p = go_pprof("-top", "-cum", "-nodecount=200", "-focus=proxy_run_scheme_handler", prof)
    assert p.returncode == 0, p.stderr
    rows = parse_top(p.stdout, quantity=str)
    assert "proxy_run_scheme_handler" in rows and "poll" in rows, p.stdout
