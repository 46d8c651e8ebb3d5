"""/debug/pprof/heap and /debug/pprof/allocs: every child's sampled allocations, read by
the real go tool pprof (over HTTP and from downloaded files) and by protoc, against
allocations of known size made by mod_pprof_test (retain, churn, dlopen), and Go's
answers (net/http/pprof handler.ServeHTTP and serveDeltaProfile, runtime/pprof's heap
formats).

Sampling is random (a Poisson process over allocated bytes, mean PprofMemProfileRate):
tolerances below are set from the binomial noise of the sample counts (see each test).
Exact checks use PprofMemProfileRate 1 (every allocation), or invert Go's unsampling
scale on each sample.
"""
import http.client
import math
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import BUILDDIR, MOD_PPROF_TEST, SANITIZE, SRCDIR, go_pprof, protoc_decode
from pprof_http import BAD_SECONDS, check_error, wait_for
from pprof_output import DecodedProfile, parse_top as read_top, parse_tags
from pprof_http import check_profile_response

HEAP = "/debug/pprof/heap"
ALLOCS = "/debug/pprof/allocs"
RATE = 524288                   # PprofMemProfileRate's default (Go's MemProfileRate)
MiB = 1 << 20
LIB = os.path.join(BUILDDIR, "tests", "unit", ".libs", "libppalloctest.so")
TEST_SRC = os.path.join(SRCDIR, "tests", "module", "mod_pprof_test.c")

SAMPLE_TYPES = [("alloc_objects", "count"), ("alloc_space", "bytes"),
                ("inuse_objects", "count"), ("inuse_space", "bytes")]


OK_RE = re.compile(rb"^ok (\w+) pid=(\d+)\n$")
MEM_UNITS = {"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
TEXT_HEAD_RE = re.compile(r"^heap profile: (\d+): (\d+) \[(\d+): (\d+)\] @ heap/(\d+)$")
TEXT_REC_RE = re.compile(r"^(\d+): (\d+) \[(\d+): (\d+)\] @((?: 0x[0-9a-f]+)+)$")
TEXT_FRAME_RE = re.compile(r"^#\t0x[0-9a-f]+(?:\t.*)?$")
RETAIN_FRAME_RE = re.compile(
    r"^#\t(0x[0-9a-f]+)\tpprof_test_retain\+(0x[0-9a-f]+)\t.*mod_pprof_test\.c:(\d+)$")


# --- helpers ------------------------------------------------------------------------------

def run_requests(httpd, path, n, conns=4):
    """n GETs of path, spread over `conns` keep-alive connections held open together (so
    under prefork they are served by `conns` different children). Every answer must be
    "ok WHAT pid=N". Returns {pid: number of requests it served}."""
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    per = [k for k in per if k]
    barrier = threading.Barrier(len(per), timeout=60)
    served, errors = {}, []
    lock = threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=60)
        try:
            for i in range(k):
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                m = OK_RE.match(body)
                if resp.status != 200 or not m:
                    raise AssertionError("GET %s: %d %r" % (path, resp.status, body[:200]))
                with lock:
                    pid = int(m.group(2))
                    served[pid] = served.get(pid, 0) + 1
                if i == 0:
                    barrier.wait()
        except BaseException as e:              # reported below
            barrier.abort()
            with lock:
                errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "request threads still running"
    assert not errors, errors
    assert sum(served.values()) == n, served
    return served


def run_sequences(httpd, paths, conns):
    """The same GETs, in the same order, on each of `conns` keep-alive connections held
    open together (under prefork: `conns` different children). Returns the pid that
    served each connection."""
    barrier = threading.Barrier(conns, timeout=60)
    pids, errors = [None] * conns, []

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=60)
        try:
            for j, path in enumerate(paths):
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                m = OK_RE.match(body)
                if resp.status != 200 or not m:
                    raise AssertionError("GET %s: %d %r" % (path, resp.status, body[:200]))
                if pids[i] is None:
                    pids[i] = int(m.group(2))
                elif pids[i] != int(m.group(2)):
                    raise AssertionError("connection %d moved from pid %d to %s" % (
                        i, pids[i], m.group(2)))
                if j == 0:
                    barrier.wait()
        except BaseException as e:              # reported below
            barrier.abort()
            errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "request threads still running"
    assert not errors, errors
    return pids


def stable_children(httpd, fetch, ledger_pids, tries=20):
    """fetch() with the children holding ledger_pids' memory alive throughout: under
    prefork an idle child may be stopped at any time (MaxSpareServers, one a second),
    taking its memory. Returns (fetch() result, live children before and after)."""
    for _ in range(tries):
        before = set(httpd.child_pids())
        out = fetch()
        after = set(httpd.child_pids())
        if not (set(ledger_pids) & before) - after:
            return out, before, after
        time.sleep(0.25)
    pytest.fail("children kept exiting during the fetch: %s -> %s" % (before, after))


def mem_bytes(text):
    """A go tool pprof byte quantity ("0", "512kB", "40.01MB") in bytes (1024-based)."""
    if text == "0":
        return 0.0
    m = re.match(r"^([0-9.]+)([a-zA-Z]+)$", text)
    assert m and m.group(2) in MEM_UNITS, "unknown pprof quantity %r" % text
    return float(m.group(1)) * MEM_UNITS[m.group(2)]


def parse_top(out):
    return read_top(out, mem_bytes)


def top(*args):
    p = go_pprof("-top", "-nodecount=1000", *args)
    assert p.returncode == 0, "go tool pprof -top %s failed (%d):\n%s%s" % (
        " ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    return p


class Sample:
    def __init__(self, values, labels, funcs):
        self.values = values            # [alloc_objects, alloc_space, inuse_objects, inuse_space]
        self.labels = labels            # [(key, str, num)]
        self.funcs = funcs              # [[names of a location's lines]], leaf first

    def num(self, key):
        v = [n for k, _, n in self.labels if k == key]
        assert len(v) == 1, (key, self.labels)
        return v[0]

    @property
    def pid(self):
        return self.num("pid")

    @property
    def size(self):
        return self.num("bytes")

    @property
    def leaf(self):
        return self.funcs[0] if self.funcs else []

    def has(self, name):
        return any(name in names for names in self.funcs)


class Profile(DecodedProfile):
    """A decoded heap profile.proto (from protoc --decode)."""

    def __init__(self, gz):
        super().__init__(gz, protoc_decode)
        funcs = {self.one(f, "id"): self.s(self.one(f, "name"))
                 for f in self.m.get("function", [])}
        self.locs = {self.one(loc, "id"): [funcs.get(self.one(ln, "function_id"))
                                           for ln in loc.get("line", [])]
                     for loc in self.m.get("location", [])}
        self.samples = []
        for smp in self.m.get("sample", []):
            labels = [(self.s(self.one(l, "key")),
                       self.s(l["str"][0]) if "str" in l else None,
                       l["num"][0] if "num" in l else None)
                      for l in smp.get("label", [])]
            ids = smp.get("location_id", [])
            assert all(i in self.locs for i in ids), ids
            values = smp.get("value", [])
            assert len(values) == 4, values
            self.samples.append(Sample(values, labels, [self.locs[i] for i in ids]))

    def total(self, index, pred=lambda s: True):
        return sum(s.values[index] for s in self.samples if pred(s))

    def by_pid(self, index, pred=lambda s: True):
        out = {}
        for s in self.samples:
            if pred(s):
                out[s.pid] = out.get(s.pid, 0) + s.values[index]
        return out


def leaf_is(name, size=None):
    return lambda s: name in s.leaf and (size is None or s.size == size)


def unscale(count, nbytes, size, rate):
    """The raw sample count c that Go's scaleHeapSample turns into (count, nbytes) for
    objects of `size` bytes, or None if there is none. (runtime/pprof/protomem.go:
    scale = 1/(1-exp(-avg/rate)), values truncated to int64; avg is `size` exactly.)"""
    if count == 0 and nbytes == 0:
        return 0
    if size == 0:
        return None
    if rate <= 1:
        return count if nbytes == count * size else None
    scale = 1 / (1 - math.exp(-float(size) / float(rate)))
    guess = int(count / scale)
    for c in range(max(1, guess - 2), guess + 3):
        if int(float(c) * scale) == count and int(float(c * size) * scale) == nbytes:
            return c
    return None


def fetch_profile(httpd, path, filename, timeout=60):
    r = httpd.get(path, timeout=timeout)
    check_profile_response(r, filename)
    return r, Profile(r.body)


def save(httpd, name, body):
    f = os.path.join(httpd.dir, "%s-%d.pb.gz" % (name, os.getpid()))
    with open(f, "wb") as out:
        out.write(body)
    return f


def within(got, want, tol):
    return want > 0 and abs(got - want) <= tol * want


# --- tests --------------------------------------------------------------------------------

# Test 1's noise: each 1 MiB allocation is sampled with p = 1-exp(-2) = 0.865 and counts
# 1 MiB/p. With n = 100 independent draws the estimate's sd is sqrt((1-p)/(n p)) = 3.96%:
# +-15% is 3.8 sd (all 100 sampled gives +15.6%, p^100 = 5e-7). If children sample alike
# (see test_children_sample_independently), the 4 children's 25 retains each are 25
# draws, not 100: sd 7.9%, and this test fails a few times in a hundred.
RETAINS = 100


def test_retained_memory_top_and_tags(make_httpd, mpm):
    """Memory retained by several children, as go tool pprof over HTTP shows it: the
    function, the total within 15%, and the children as pid tags."""
    h = make_httpd()
    served = run_requests(h, "/pprof-test/retain?bytes=%d" % MiB, RETAINS, conns=4)
    if mpm == "prefork":
        assert len(served) == 4, served
    url = h.url(HEAP)

    def fetch():
        return (top("-sample_index=inuse_space", url),
                go_pprof("-tags", url))

    (p, tags_p), before, after = stable_children(h, fetch, served)
    assert "Fetching profile over HTTP from %s" % url in p.stderr, p.stderr
    out = p.stdout
    assert "Type: inuse_space" in out, out
    rows = parse_top(out)
    assert "pprof_test_retain" in rows, out
    alive = {pid for pid in served if pid in after}
    want = sum(served[pid] for pid in alive) * MiB
    flat = rows["pprof_test_retain"][0]
    assert within(flat, want, 0.15), "pprof_test_retain flat %.2f MiB, retained %.2f MiB " \
        "(%s; alive %s):\n%s\nmod_pprof's log lines:\n%s" % (
            flat / MiB, want / MiB, served, sorted(alive), out,
            "\n".join(l for l in h.error_log().splitlines() if "PP0" in l))
    # Its caller is on every stack.
    assert rows["test_handler"][1] >= flat, out

    assert tags_p.returncode == 0, tags_p.stderr
    tags = parse_tags(tags_p.stdout)
    pids = {int(v) for v in tags.get("pid", {})}
    assert alive <= pids, (sorted(alive), tags_p.stdout)
    assert pids <= before | after, (sorted(before | after), tags_p.stdout)
    assert "1MB" in tags.get("bytes", {}), tags_p.stdout


# Sizes near RATE * ln 2, each sampled with p = 1/2, distinct so that the bytes label
# tells which allocation was sampled.
INDEP_SIZES = [363000 + 64 * i for i in range(32)]
INDEP_CONNS = 4


def test_children_sample_independently(make_httpd, mpm):
    """Every child (and thread) draws its own sampling thresholds: the same allocations
    made in the same order on several connections (under prefork, by several children
    forked from one parent) are not sampled alike. With independent draws all
    INDEP_CONNS connections agree on an allocation (all sampled it, or none) with
    probability 2 * (1/2)^4 = 1/8: about 4 of 32 agree, and 16 or more has probability
    below 1e-6. Correlated draws make them agree on nearly all. (Correlation across
    children also multiplies the noise of every server-wide figure.)"""
    h = make_httpd()
    pids = run_sequences(h, ["/pprof-test/retain?bytes=%d" % n for n in INDEP_SIZES],
                         INDEP_CONNS)
    if mpm == "prefork":
        assert len(set(pids)) == INDEP_CONNS, pids
    (r, prof), before, after = stable_children(
        h, lambda: fetch_profile(h, HEAP, "heap"), pids)
    assert set(pids) <= after, (pids, after)
    sampled = {n: 0 for n in INDEP_SIZES}
    per_pid = {}
    for s in prof.samples:
        if leaf_is("pprof_test_retain")(s) and s.size in sampled:
            c = unscale(s.values[0], s.values[1], s.size, RATE)
            assert c is not None and c <= INDEP_CONNS, (s.values, s.size)
            sampled[s.size] += c
            per_pid.setdefault(s.pid, set()).add(s.size)
    agree = [n for n in INDEP_SIZES if sampled[n] in (0, INDEP_CONNS)]
    n_sampled = sum(sampled.values())
    # Sanity: about half of the 128 allocations are sampled.
    assert 32 <= n_sampled <= 96, sampled
    assert len(agree) < 16, ("the connections' samples agree on %d of %d allocations "
                             "(independent: about 4); sampled sizes per pid: %s" % (
                                 len(agree), len(INDEP_SIZES),
                                 {p: sorted(v) for p, v in per_pid.items()}))


# Test 2's noise: 1.5 MiB churned objects are sampled with p = 1-exp(-3) = 0.950; with
# n = 60 the sd is 2.9%, +-15% is 5 sd.
CHURN2 = 3 * MiB // 2
CHURN2_REQUESTS = 6
CHURN2_COUNT = 10


def test_churn_in_allocs_not_in_heap(httpd):
    """Allocated-and-freed memory: in allocs' alloc_space, never in heap's inuse_space."""
    served = run_requests(httpd, "/pprof-test/churn?bytes=%d&count=%d" % (
        CHURN2, CHURN2_COUNT), CHURN2_REQUESTS, conns=2)
    allocs_url, heap_url = httpd.url(ALLOCS), httpd.url(HEAP)

    def fetch():
        a = httpd.get(ALLOCS)
        check_profile_response(a, "allocs")
        return a, top("-sample_index=alloc_space", allocs_url), \
            top("-sample_index=inuse_space", heap_url)

    (a, pa, ph), before, after = stable_children(httpd, fetch, served)
    rows = parse_top(pa.stdout)
    assert "Type: alloc_space" in pa.stdout, pa.stdout
    assert "pprof_test_churn" in rows and rows["pprof_test_churn"][0] > 0, pa.stdout
    assert "Type: inuse_space" in ph.stdout, ph.stdout
    assert "pprof_test_churn" not in parse_top(ph.stdout), ph.stdout

    # The 1.5 MiB objects churned here, by pid, from the decoded allocs profile.
    prof = Profile(a.body)
    churn = leaf_is("pprof_test_churn", CHURN2)
    alive = {pid for pid in served if pid in after}
    want = sum(served[pid] for pid in alive) * CHURN2_COUNT * CHURN2
    got = sum(v for pid, v in prof.by_pid(1, churn).items() if pid in alive)
    assert within(got, want, 0.15), (got / MiB, want / MiB, served, alive)
    assert prof.total(2, churn) == 0 and prof.total(3, churn) == 0
    # pprof_test_churn frees every object at once: no sample of it is in use.
    assert all(s.values[2] == 0 and s.values[3] == 0
               for s in prof.samples if s.has("pprof_test_churn")), prof.m


# Test 3's noise: a 4 MiB object is sampled with p = 1-exp(-8) = 0.99966.
DLOPEN_BYTES = 4 * MiB
DLOPEN_REQUESTS = 10


def test_dlopened_library_is_profiled(httpd):
    """A library dlopen'ed at run time (after the GOT patch at start-up) is hooked too."""
    assert os.path.isfile(LIB), "test library not built: %s" % LIB
    served = run_requests(httpd, "/pprof-test/dlopen?lib=%s&bytes=%d" % (LIB, DLOPEN_BYTES),
                          DLOPEN_REQUESTS, conns=2)
    url = httpd.url(HEAP)

    def fetch():
        r = httpd.get(HEAP)
        check_profile_response(r, "heap")
        return r, top("-sample_index=inuse_space", url)

    (r, p), before, after = stable_children(httpd, fetch, served)
    rows = parse_top(p.stdout)
    assert "ppt_retain_named" in rows, p.stdout
    alive = {pid for pid in served if pid in after}
    want = sum(served[pid] for pid in alive) * DLOPEN_BYTES
    flat = rows["ppt_retain_named"][0]
    assert within(flat, want, 0.25), (flat / MiB, want / MiB, served, alive, p.stdout)

    prof = Profile(r.body)
    files = [prof.s(prof.one(mp, "filename")) for mp in prof.m.get("mapping", [])]
    assert any(os.path.basename(f) == "libppalloctest.so" for f in files), files
    named = leaf_is("ppt_retain_named", DLOPEN_BYTES)
    assert set(prof.by_pid(3, named)) == alive, (prof.by_pid(3, named), alive)
    assert all(s.has("test_handler") for s in prof.samples if named(s))


# Memory taken with anonymous mmap in 2 MiB chunks, as PHP's Zend MM takes it. Each chunk
# is sampled with p = 1-exp(-4) = 0.982 and counts 2 MiB/p (+1.9%); every chunk missed
# takes 1/32 of the 32 chunks' 64 MiB: -15% needs 6 of 32 missed (binomial, ~5e-5).
MMAP_CHUNK = 2 * MiB
MMAP_MIB = 16                   # per connection
MMAP_CONNS = 4


def get_ok(conn, path):
    """GET path on a kept-alive connection; the pid of the child that answered."""
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    m = OK_RE.match(body)
    assert resp.status == 200 and m, (path, resp.status, body[:200])
    return int(m.group(2))


def test_mmap_chunks_in_heap(make_httpd, mpm):
    """Chunks mapped with anonymous mmap (an arena allocator's) are in the heap at the
    function that mapped them, about their size; unmapped, they leave inuse and stay in
    allocs. The connections stay open throughout, so that the unmapping reaches the
    children that mapped (under prefork: four children, none stopped while busy)."""
    h = make_httpd(extra_conf="KeepAliveTimeout 120\n")
    conns = [http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
             for _ in range(MMAP_CONNS)]
    try:
        pids = [get_ok(c, "/pprof-test/mmap?mib=%d&keep=1" % MMAP_MIB) for c in conns]
        if mpm == "prefork":
            assert len(set(pids)) == MMAP_CONNS, pids
        mapped = {}
        for pid in pids:
            mapped[pid] = mapped.get(pid, 0) + MMAP_MIB * MiB
        url = h.url(HEAP)

        def fetch():
            return fetch_profile(h, HEAP, "heap")[1], top("-sample_index=inuse_space", url)

        (prof, p), before, after = stable_children(h, fetch, mapped)
        alive = {pid for pid in mapped if pid in after}
        want = sum(mapped[pid] for pid in alive)
        rows = parse_top(p.stdout)
        assert "pprof_test_mmap_chunk" in rows, p.stdout
        flat = rows["pprof_test_mmap_chunk"][0]
        assert within(flat, want, 0.15), "pprof_test_mmap_chunk flat %.2f MiB, mapped " \
            "%.2f MiB (%s; alive %s):\n%s" % (flat / MiB, want / MiB, mapped, sorted(alive),
                                              p.stdout)
        assert rows["test_handler"][1] >= flat, p.stdout
        # One sample size, the chunk's; the handler on every stack; every child that mapped.
        leaf = leaf_is("pprof_test_mmap_chunk")
        assert {s.size for s in prof.samples if leaf(s)} == {MMAP_CHUNK}, \
            [(s.size, s.values) for s in prof.samples if leaf(s)]
        assert all(s.has("test_handler") for s in prof.samples if leaf(s))
        assert set(prof.by_pid(3, leaf)) == alive, (prof.by_pid(3, leaf), alive)
        for s in prof.samples:
            if leaf(s):
                assert unscale(s.values[2], s.values[3], s.size, RATE) is not None, s.values

        for c in conns:
            get_ok(c, "/pprof-test/munmap")

        def fetch_after():
            return fetch_profile(h, HEAP, "heap")[1], fetch_profile(h, ALLOCS, "allocs")[1]

        (heap, allocs), _, after = stable_children(h, fetch_after, mapped)
        assert heap.total(2, leaf) == 0 and heap.total(3, leaf) == 0, \
            [(s.pid, s.values) for s in heap.samples if leaf(s)]
        alive = {pid for pid in mapped if pid in after}
        want = sum(mapped[pid] for pid in alive)
        got = sum(v for pid, v in allocs.by_pid(1, leaf).items() if pid in alive)
        assert within(got, want, 0.15), (got / MiB, want / MiB, mapped, sorted(alive))
    finally:
        for c in conns:
            c.close()


def test_profile_format(httpd):
    """Sample types, period, labels, default sample type and headers, and Go's unsampling
    scale on every sample (each value pair must come from a whole number of samples)."""
    run_requests(httpd, "/pprof-test/retain?bytes=%d" % (2 * MiB), 4, conns=2)
    for path, name in ((HEAP, "heap"), (ALLOCS, "allocs")):
        before = set(httpd.child_pids())
        r, prof = fetch_profile(httpd, path, name)
        m = prof.m
        assert prof.value_types("sample_type") == SAMPLE_TYPES, m.get("sample_type")
        assert prof.value_types("period_type") == [("space", "bytes")]
        assert m.get("period") == [RATE]
        dst = prof.one(m, "default_sample_type")
        if name == "allocs":
            assert prof.s(dst) == "alloc_space"
        else:
            assert dst == 0, prof.s(dst)
        assert prof.one(m, "duration_nanos") == 0
        assert abs(prof.one(m, "time_nanos") / 1e9 - time.time()) < 60
        assert prof.samples
        assert any(s.leaf == ["pprof_test_retain"] for s in prof.samples)
        children = before | set(httpd.child_pids())
        for s in prof.samples:
            assert sorted(k for k, _, _ in s.labels) == ["bytes", "pid"], s.labels
            assert all(sv is None for _, sv, _ in s.labels), s.labels
            assert s.pid in children, (s.pid, children)
            assert s.values[0] >= s.values[2] and s.values[1] >= s.values[3], s.values
            assert s.funcs, "sample without locations"
            ca = unscale(s.values[0], s.values[1], s.size, RATE)
            ci = unscale(s.values[2], s.values[3], s.size, RATE)
            assert ca is not None and (ca > 0 or s.size == 0), (
                "alloc values not Go-scaled", s.values, s.size)
            assert ci is not None, ("inuse values not Go-scaled", s.values, s.size)


def test_exact_counts_at_rate_1(make_httpd):
    """PprofMemProfileRate 1: every allocation is a sample, values are unscaled."""
    h = make_httpd(extra_conf="PprofMemProfileRate 1\n")
    served = {}
    for _ in range(10):
        r = h.get("/pprof-test/retain?bytes=100000")
        m = OK_RE.match(r.body)
        assert r.status == 200 and m, r
        served[int(m.group(2))] = served.get(int(m.group(2)), 0) + 1
    assert set(served) <= set(h.child_pids()), served
    for path, name in ((HEAP, "heap"), (ALLOCS, "allocs")):
        r, prof = fetch_profile(h, path, name)
        assert prof.value_types("period_type") == [("space", "bytes")]
        assert prof.m.get("period") == [1]
        retained = leaf_is("pprof_test_retain", 100000)
        assert [prof.total(i, retained) for i in range(4)] == [10, 1000000, 10, 1000000], \
            [s.values for s in prof.samples if retained(s)]
        assert prof.by_pid(2, retained) == served
        # Unscaled: every sample's bytes are its objects times its size.
        for s in prof.samples:
            assert s.values[1] == s.values[0] * s.size, (s.values, s.size)
            assert s.values[3] == s.values[2] * s.size, (s.values, s.size)
    r = h.get(HEAP + "?debug=1")
    assert r.status == 200, r
    assert TEXT_HEAD_RE.match(r.text.split("\n", 1)[0]).group(5) == "2", r.text[:200]


def _retain_line(call="malloc(bytes)"):
    """Line number of pprof_test_retain's malloc call in mod_pprof_test.c (or of another
    call in it)."""
    with open(TEST_SRC) as f:
        lines = f.read().split("\n")
    start = next(i for i, l in enumerate(lines)
                 if re.match(r"NOINLINE void \*pprof_test_retain\(", l))
    return next(i for i in range(start, len(lines)) if call in lines[i]) + 1


def _retain_entry(pid):
    """Run-time address of pprof_test_retain in child pid: its file offset (nm and the
    PT_LOAD segments) placed in the module's executable mapping (/proc/PID/maps)."""
    nm = subprocess.run(["nm", "--defined-only", MOD_PPROF_TEST], capture_output=True,
                        text=True, timeout=30, check=True).stdout
    vaddr = next(int(f[0], 16) for f in (l.split() for l in nm.splitlines())
                 if len(f) == 3 and f[2] == "pprof_test_retain" and f[1] in "Tt")
    ph = subprocess.run(["readelf", "-lW", MOD_PPROF_TEST], capture_output=True, text=True,
                        timeout=30, check=True).stdout
    foff = next(vaddr - int(f[2], 16) + int(f[1], 16)
                for f in (l.split() for l in ph.splitlines())
                if f and f[0] == "LOAD" and int(f[2], 16) <= vaddr < int(f[2], 16) + int(f[5], 16))
    real = os.path.realpath(MOD_PPROF_TEST)
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "r-xp" and parts[5] == real:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                off = int(parts[2], 16)
                if off <= foff < off + (hi - lo):
                    return lo + foff - off
    raise AssertionError("%s has no executable mapping in %d" % (real, pid))


def parse_heap_text(text):
    """(header match, [(values, pcs, frame lines)], rest) of Go's debug=1 heap text."""
    lines = text.split("\n")
    head = TEXT_HEAD_RE.match(lines[0])
    assert head, lines[0]
    recs = []
    i = 1
    while i < len(lines) and lines[i]:
        m = TEXT_REC_RE.match(lines[i])
        assert m, "bad record line %r" % lines[i]
        frames = []
        i += 1
        while i < len(lines) and lines[i].startswith("#"):
            assert TEXT_FRAME_RE.match(lines[i]), "bad frame line %r" % lines[i]
            frames.append(lines[i])
            i += 1
        assert i < len(lines) and lines[i] == "", "record not ended by a blank line: %r" % (
            lines[i:i + 1])
        i += 1
        recs.append(([int(m.group(k)) for k in range(1, 5)],
                     [int(x, 16) for x in m.group(5).split()], frames))
    return head, recs, lines[i:]


def test_debug1_text(httpd):
    """Go's debug=1 heap text, checked against the protobuf profile and the binary."""
    run_requests(httpd, "/pprof-test/retain?bytes=%d" % (2 * MiB), 6, conns=2)

    def fetch():
        t = httpd.get(HEAP + "?debug=1")
        p = httpd.get(HEAP)
        return t, p

    (t, p), before, after = stable_children(httpd, fetch, httpd.child_pids())
    assert t.status == 200, t
    assert t.headers.get("content-type") == "text/plain; charset=utf-8", t
    assert t.headers.get("x-content-type-options") == "nosniff", t
    assert "content-disposition" not in t.headers, t
    head, recs, rest = parse_heap_text(t.text)
    assert head.group(5) == str(2 * RATE), head.group(0)
    tot = [sum(r[0][k] for r in recs) for k in range(4)]
    assert [int(head.group(k)) for k in range(1, 5)] == tot, (head.group(0), tot)
    # Go: a blank line, then "# runtime.MemStats"; here each child's mallinfo2.
    assert rest[:2] == ["", "# glibc malloc statistics (mallinfo2), per child"], rest[:3]
    # Records by in-use bytes, largest first, as Go sorts them.
    inuse = [r[0][1] for r in recs]
    assert inuse == sorted(inuse, reverse=True), inuse

    line = _retain_line()
    # pprof_test_retain's other allocation: the array of what it retains, which grows by
    # realloc (512 bytes, then doubling), so that it too is sampled now and then (a 4 KiB
    # one about once in 128) with the same leaf function.
    ledger_line = _retain_line("realloc(retained")
    entry = _retain_entry(min(after))
    retain_objs = 0
    found = 0
    for values, pcs, frames in recs:
        # Go's frames: one or more per pc (inlined calls expand), innermost first.
        assert len(frames) >= len(pcs), (pcs, frames)
        m = RETAIN_FRAME_RE.match(frames[0])
        if not m:
            continue
        found += 1
        pc, off, ln = int(m.group(1), 16), int(m.group(2), 16), int(m.group(3))
        assert pc == pcs[0] - 1, (hex(pcs[0]), frames[0])      # Go's frame.PC
        assert pc - off == entry, (frames[0], hex(entry))
        # One object size per record (its bytes are whole objects): the retained ones at
        # the malloc's line.
        retained = values[2] and values[3] == values[2] * 2 * MiB
        assert ln == line if retained else ln in (line, ledger_line), (
            frames[0], values, line, ledger_line)
        assert frames[1].split("\t")[2].startswith("test_handler+0x"), frames[1]
        if values[0] and values[1] % (2 * MiB) == 0 and values[1] // values[0] == 2 * MiB:
            retain_objs += values[0]
    assert found, t.text[:3000]
    assert retain_objs, t.text[:3000]

    # The protobuf, fetched right after, holds the same raw counts, scaled as Go does.
    check_profile_response(p, "heap")
    prof = Profile(p.body)
    raw = 0
    for s in prof.samples:
        if leaf_is("pprof_test_retain", 2 * MiB)(s):
            c = unscale(s.values[2], s.values[3], s.size, RATE)
            assert c is not None, s.values
            raw += c
    assert raw == retain_objs, (raw, retain_objs)

    # go tool pprof reads the text as Go's legacy heap profile (heap/2*rate).
    f = os.path.join(httpd.dir, "heap-debug1-%d.txt" % os.getpid())
    with open(f, "w") as out:
        out.write(t.text)
    lp = go_pprof("-raw", f)
    assert lp.returncode == 0, lp.stderr
    assert "PeriodType: space bytes" in lp.stdout, lp.stdout[:500]
    assert re.search(r"^Period: %d$" % RATE, lp.stdout, re.M), lp.stdout[:500]
    # pprof unsamples the text's raw counts (heap/2*rate: rate) as our protobuf does:
    # the same in-use figures for each object size (+-1 a record: Go's math.Exp; pprof
    # merges records that differ only by pid, which the text does not show).
    legacy = legacy_inuse(lp.stdout)
    mine = {}
    for s in prof.samples:
        if s.values[2]:
            o, b, n = mine.get(s.size, (0, 0, 0))
            mine[s.size] = (o + s.values[2], b + s.values[3], n + 1)
    assert set(legacy) == set(mine), (legacy, mine)
    for size, (o, b, n) in mine.items():
        lo, lb, ln = legacy[size]
        assert 1 <= ln <= n and abs(lo - o) <= n and abs(lb - b) <= n, (
            size, legacy[size], mine[size])


def legacy_inuse(raw):
    """{object size: (inuse objects, inuse bytes, samples)} from `go tool pprof -raw` of
    a legacy heap profile."""
    lines = raw.split("\n")
    i = lines.index("Samples:") + 1
    types = lines[i].split()
    if types == ["objects/count", "space/bytes"]:
        io, ib = 0, 1
    else:
        io, ib = types.index("inuse_objects/count"), types.index("inuse_space/bytes")
    out = {}
    i += 1
    while i < len(lines) and not lines[i].startswith("Locations"):
        m = re.match(r"^\s+([\d\s]+):[\d\s]*$", lines[i])
        if m:
            vals = [int(v) for v in m.group(1).split()]
            lab = re.match(r"^\s+bytes:\[(\d+)\]\s*$", lines[i + 1])
            assert lab, lines[i:i + 2]
            if vals[io]:
                o, b, n = out.get(int(lab.group(1)), (0, 0, 0))
                out[int(lab.group(1))] = (o + vals[io], b + vals[ib], n + 1)
        i += 1
    return out


DELTA_SECONDS = 2
PRE_CHURN = 3 * MiB + 4096     # churned before the window: an object size of its own
# How long before the window's end the churn stops: a churn request (ten 1 MiB objects)
# takes ~2 ms, but ~100 ms under ASan and up to a second on a loaded machine.
CHURN_MARGIN = 1.0 if SANITIZE else 0.5


class Delta:
    pass


@pytest.fixture(scope="module")
def delta(httpd):
    """heap?seconds=2 and allocs?seconds=2 at once, with 2 MiB objects retained and
    PRE_CHURN objects churned before the window and 1 MiB objects churned in it; then a
    heap snapshot."""
    out = Delta()
    out.pre_retain = run_requests(httpd, "/pprof-test/retain?bytes=%d" % (2 * MiB), 6,
                                  conns=2)
    run_requests(httpd, "/pprof-test/churn?bytes=%d&count=4" % PRE_CHURN, 4, conns=2)
    results, errors = {}, []
    churned = {}

    def get_delta(path):
        try:
            results[path] = httpd.get("%s?seconds=%d" % (path, DELTA_SECONDS), timeout=60)
        except Exception as e:          # reported below
            errors.append("%s: %r" % (path, e))

    def churn():
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=30)
        try:
            while time.monotonic() < churn_until:
                conn.request("GET", "/pprof-test/churn?bytes=%d&count=10" % MiB)
                resp = conn.getresponse()
                body = resp.read()
                m = OK_RE.match(body)
                if resp.status != 200 or not m:
                    errors.append("churn: %d %r" % (resp.status, body[:100]))
                    return
                pid = int(m.group(2))
                churned[pid] = churned.get(pid, 0) + 1
                time.sleep(0.02)
        except Exception as e:          # reported below
            errors.append("churn: %r" % e)
        finally:
            conn.close()

    out.t0 = time.time()
    # Churn from 0.3 s (both first snapshots taken) to CHURN_MARGIN before the window
    # ends: nothing of it is in flight when the last snapshots are taken.
    churn_until = time.monotonic() + DELTA_SECONDS - CHURN_MARGIN
    deltas = [threading.Thread(target=get_delta, args=(p,), daemon=True)
              for p in (HEAP, ALLOCS)]
    for t in deltas:
        t.start()
    time.sleep(0.3)
    churners = [threading.Thread(target=churn, daemon=True) for _ in range(2)]
    for t in churners:
        t.start()
    for t in churners:
        t.join(60)
    churn_end = time.time()
    for t in deltas:
        t.join(60)
    out.t1 = time.time()
    assert churn_end < out.t0 + DELTA_SECONDS, "churn ran into the window's end"
    assert not errors, errors
    assert churned, "no churn during the window"
    snap = httpd.get(HEAP)
    check_profile_response(snap, "heap")
    out.snap = Profile(snap.body)
    out.responses = {"heap": results[HEAP], "allocs": results[ALLOCS]}
    return out


@pytest.mark.parametrize("name", ["heap", "allocs"])
def test_delta_allocs(httpd, delta, name):
    """seconds=N: headers and types, and alloc values over the window only."""
    r = delta.responses[name]
    check_profile_response(r, name + "-delta")
    prof = Profile(r.body)
    m = prof.m
    assert prof.value_types("sample_type") == SAMPLE_TYPES
    assert prof.value_types("period_type") == [("space", "bytes")]
    assert m.get("period") == [RATE]
    dst = prof.one(m, "default_sample_type")
    if name == "allocs":
        assert prof.s(dst) == "alloc_space"
    else:
        assert dst == 0, prof.s(dst)
    dur = prof.one(m, "duration_nanos")
    assert DELTA_SECONDS * 1e9 <= dur <= (DELTA_SECONDS + 10) * 1e9, dur
    assert delta.t0 - 1 <= prof.one(m, "time_nanos") / 1e9 <= delta.t1 + 1

    retain = leaf_is("pprof_test_retain")
    # Nothing was retained during the window: no allocation of it counts.
    assert prof.total(0, retain) == 0 and prof.total(1, retain) == 0, \
        [s.values for s in prof.samples if retain(s)]
    # Churn before the window is subtracted; churn in the window is not.
    assert prof.total(0, leaf_is("pprof_test_churn", PRE_CHURN)) == 0
    assert prof.total(1, leaf_is("pprof_test_churn", PRE_CHURN)) == 0
    assert prof.total(1, leaf_is("pprof_test_churn", MiB)) > 0
    assert prof.total(2, leaf_is("pprof_test_churn")) == 0
    assert prof.total(3, leaf_is("pprof_test_churn")) == 0
    for s in prof.samples:
        assert unscale(s.values[0], s.values[1], s.size, RATE) is not None, (s.values, s.size)

    if name == "allocs":
        f = save(httpd, "allocs-delta", r.body)
        rows = parse_top(top("-sample_index=alloc_space", f).stdout)
        assert "pprof_test_churn" in rows and rows["pprof_test_churn"][0] > 0, rows
        assert "pprof_test_retain" not in rows, rows


@pytest.mark.parametrize("name", ["heap", "allocs"])
def test_delta_inuse(httpd, delta, name):
    """seconds=N: in-use values as they stand at the end of the window (unlike Go's
    golang/go#67942), i.e. as in a snapshot taken after it: memory retained before the
    window is still in use."""
    prof = Profile(delta.responses[name].body)
    snap = delta.snap
    retain = leaf_is("pprof_test_retain")
    # The children in both; nothing retained or freed since.
    pids = {s.pid for s in prof.samples} | {s.pid for s in snap.samples}
    pids &= set(httpd.child_pids())
    kept = {p for p in delta.pre_retain if p in pids}
    assert kept, (delta.pre_retain, pids)
    for idx in (2, 3):
        got = {p: v for p, v in prof.by_pid(idx, retain).items() if p in pids}
        want = {p: v for p, v in snap.by_pid(idx, retain).items() if p in pids}
        assert got == want, (SAMPLE_TYPES[idx][0], "delta", got, "snapshot", want)
    assert all(prof.by_pid(3, retain).get(p, 0) > 0 for p in kept), (
        prof.by_pid(3, retain), delta.pre_retain)
    for s in prof.samples:
        assert unscale(s.values[2], s.values[3], s.size, RATE) is not None, (s.values, s.size)

    if name == "heap":
        f = save(httpd, "heap-delta", delta.responses[name].body)
        rows = parse_top(top("-sample_index=inuse_space", f).stdout)
        assert "pprof_test_retain" in rows and rows["pprof_test_retain"][0] > 0, rows
        assert "pprof_test_churn" not in rows, rows


def test_seconds_plus_sign(httpd):
    """strconv.ParseInt takes a sign: seconds=%2B1 is one second. A '+' in a query is a
    space (net/url), and " 1" is no integer: Go's 400 (test_160 asks Go itself)."""
    r, prof = fetch_profile(httpd, ALLOCS + "?seconds=%2B1", "allocs-delta")
    assert 1e9 <= prof.one(prof.m, "duration_nanos") <= 11e9
    check_error(httpd.get(ALLOCS + "?seconds=+1"), 400, BAD_SECONDS)


def test_empty_seconds_is_a_snapshot(httpd):
    """Go serves a delta only `if sec := r.FormValue("seconds"); sec != ""`: an empty
    seconds is the plain profile."""
    for q in ("seconds=", "seconds=&debug=0"):
        r, prof = fetch_profile(httpd, HEAP + "?" + q, "heap")
        assert prof.one(prof.m, "duration_nanos") == 0


def test_pid_restriction(httpd):
    """pid=N: that child's samples only, the same as in the whole profile."""
    conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=60)
    try:
        pids = set()
        for _ in range(3):
            conn.request("GET", "/pprof-test/retain?bytes=%d" % (2 * MiB))
            resp = conn.getresponse()
            m = OK_RE.match(resp.read())
            assert resp.status == 200 and m
            pids.add(int(m.group(2)))
        assert len(pids) == 1, pids         # one keep-alive connection, one child
        pid = pids.pop()
        (one, whole, one_allocs), _, after = stable_children(httpd, lambda: (
            fetch_profile(httpd, HEAP + "?pid=%d" % pid, "heap")[1],
            fetch_profile(httpd, HEAP, "heap")[1],
            fetch_profile(httpd, ALLOCS + "?pid=%d" % pid, "allocs")[1]), [pid])
    finally:
        conn.close()
    assert pid in after
    for prof in (one, one_allocs):
        assert prof.samples
        assert {s.pid for s in prof.samples} == {pid}
    assert len({s.pid for s in whole.samples}) >= 1
    retain = leaf_is("pprof_test_retain")
    assert one.by_pid(3, retain).get(pid, 0) > 0, one.by_pid(3, retain)
    for idx in range(4):
        assert one.by_pid(idx, retain) == {pid: whole.by_pid(idx, retain).get(pid)}, idx

    t = httpd.get(HEAP + "?debug=1&pid=%d" % pid)
    assert t.status == 200, t
    stats = re.findall(r"^# pid (\d+): ", t.text, re.M)
    assert stats == [str(pid)], stats


def test_gc(httpd):
    """gc=1 (heap): every child trims its heap first; the answer is a plain profile."""
    for q in ("gc=1", "gc=2&debug=0"):
        r, prof = fetch_profile(httpd, HEAP + "?" + q, "heap")
        assert prof.value_types("sample_type") == SAMPLE_TYPES
        assert prof.m.get("period") == [RATE]
    r, prof = fetch_profile(httpd, ALLOCS + "?gc=1", "allocs")
    t = httpd.get(HEAP + "?gc=1&debug=1")
    assert t.status == 200 and TEXT_HEAD_RE.match(t.text.split("\n", 1)[0]), t


def test_graceful_restart(make_httpd, mpm):
    """Retains, a graceful restart (the module is unloaded and loaded again, its GOT
    patches undone and redone), more retains: the new generation is profiled, the old
    one is gone, and the error_log stays clean (checked at teardown)."""
    h = make_httpd()
    url = h.url(HEAP)
    old = run_requests(h, "/pprof-test/retain?bytes=%d" % (2 * MiB), 8, conns=2)
    old_children = set(h.child_pids())
    h.graceful()
    assert wait_for(lambda: not (old_children & set(h.child_pids())), 20), (
        old_children, h.child_pids())
    assert set(old) <= old_children, (old, old_children)
    new = run_requests(h, "/pprof-test/retain?bytes=%d" % (2 * MiB), 16, conns=4)
    assert not set(new) & old_children, (new, old_children)
    (r, prof), _, after = stable_children(h, lambda: fetch_profile(h, HEAP, "heap"), new)
    kept = prof.by_pid(3, leaf_is("pprof_test_retain"))
    assert set(kept) == {p for p in new if p in after}, (kept, new)
    h.graceful()
    # Until they exit, the old generation's children may still take a connection and
    # close it after one request (no keep-alive while stopping): wait for them.
    gone = old_children | set(new)
    assert wait_for(lambda: not (gone & set(h.child_pids())), 20), (gone, h.child_pids())
    newer = run_requests(h, "/pprof-test/retain?bytes=%d" % (2 * MiB), 16, conns=2)
    assert not set(newer) & gone, (newer, gone)

    def fetch():
        r = h.get(HEAP)
        check_profile_response(r, "heap")
        return r, top("-sample_index=inuse_space", url)

    (r, p), before, after = stable_children(h, fetch, newer)
    prof = Profile(r.body)
    pids = {s.pid for s in prof.samples}
    assert pids and pids <= before | after, (pids, before, after)
    assert not pids & gone, (pids, gone)
    # 2 MiB objects are sampled with p = 1-exp(-4) = 0.98: +-25% is far outside the noise.
    alive = {pid for pid in newer if pid in after}
    want = sum(newer[pid] for pid in alive) * 2 * MiB
    rows = parse_top(p.stdout)
    assert "pprof_test_retain" in rows, p.stdout
    assert within(rows["pprof_test_retain"][0], want, 0.25), (rows["pprof_test_retain"],
                                                              want, newer, p.stdout)
    for path, name in ((ALLOCS, "allocs"), (HEAP + "?gc=1", "heap")):
        fetch_profile(h, path, name)
    t = h.get(HEAP + "?debug=1")
    assert t.status == 200 and TEXT_HEAD_RE.match(t.text.split("\n", 1)[0]), t
    assert h.log_problems() == [], h.log_problems()
