"""Go 1.19 execution-trace format: tests of the checker go_trace.py (no Apache needed).

The trace files come from shared/docs/go-trace (FORMAT.md, gen_trace.py): sample.trace,
minimal.trace, the two real Go 1.19 traces and variants/*.trace (one per trap of
FORMAT.md section 11, and the rd-* reproducers of section 12.3 item 9, which only Go
1.23+'s viewer tells apart). A copy lives in go-trace-fixtures/ next to this file, so a
fresh clone works without ../shared; it is used by default.

Environment:
  GO_TRACE_DOCS   the shared docs directory (default: <repo>/../shared/docs/go-trace).
                  When set, its trace files are tested instead of the in-repo copy, and a
                  missing directory fails the tests. Without it, the docs are only used to
                  cross-check the in-repo copy and the section 11 table (skipped when the
                  default directory is absent) and to generate a missing variant.
"""
import glob
import os
import re
import subprocess
import sys

import pytest

import go_trace
from conftest import GO123, Viewer, view_trace, viewer_exit_output
from conftest import go_trace_d as go_trace_d_conftest
from go_trace import TraceError, check, parse, summary

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
IN_REPO_FIXTURES = os.path.join(HERE, "go-trace-fixtures")
DOCS_FROM_ENV = os.environ.get("GO_TRACE_DOCS")
DOCS = os.path.abspath(DOCS_FROM_ENV or os.path.join(REPO, "..", "shared", "docs", "go-trace"))
FIXTURES = os.path.abspath(DOCS_FROM_ENV) if DOCS_FROM_ENV else IN_REPO_FIXTURES
GO = "/usr/bin/go"

# The variants of the FORMAT.md section 11 table.
VARIANTS = [
    "ok", "no-frequency", "bad-seq", "unsorted-ts", "syscall-exit-early", "dup-start",
    "start-while-running", "procstop-running", "region-mismatch", "short-header",
    "header-1.21", "inline-4args", "frequency-first", "big-stack", "undefined-string",
    "create-no-stack", "running-at-end", "region-no-stack", "region-g0", "zero-pc",
    "sysblock-no-procstop", "insyscall", "no-gomaxprocs", "dup-pc", "gomaxprocs-first",
    "strings-first", "stacks-no-batch", "dup-ts", "no-procstart", "cpu-no-p", "extras",
]
# The variants of FORMAT.md section 12.3 item 9: -d parses all of them in every version;
# Go 1.23+'s viewer panics on the first four ('startRunningTime != 0'), opens the others.
RD_VARIANTS = ["rd-break", "rd-tie", "rd-early-cpu", "rd-insyscall-break", "rd-keep",
               "rd-late-start", "rd-insyscall-keep"]
RD_PANICS = {"rd-break", "rd-tie", "rd-early-cpu", "rd-insyscall-break"}
# "OK" in every column of the table: check() must accept them.
OK_VARIANTS = {"ok", "gomaxprocs-first", "strings-first", "stacks-no-batch", "dup-ts",
               "no-procstart", "cpu-no-p", "extras", "rd-keep", "rd-late-start"}
# OK for every reader, but written with EvGoInSyscall, which our writer must not use: only
# that producer rule fires.
READER_OK_VARIANTS = {"rd-insyscall-keep"}
# For each broken variant: a message of check() must match this (it names the trap).
TRAPS = {
    "no-frequency": r"^no EvFrequency record$",
    "bad-seq": r"^no consistent ordering of events possible: GoStart g=1 seq=7 ",
    "unsorted-ts": r"^time stamps out of order: GoStart g=2 seq=1 \(P 1.* merged after GoCreate",
    "syscall-exit-early": r"^time stamps out of order: GoSysExit g=2 .* before its GoSysBlock",
    "dup-start": r"^event sequences are broken: GoStart g=1 seq=1 ",
    "start-while-running": r"^no consistent ordering of events possible: .*GoStart g=3 ",
    "procstop-running": r"^P 0: ProcStop while g 1 runs on it",
    "region-mismatch": r"^misuse of region in g 1: end 'handler' .* innermost open start 'auth'",
    "short-header": r"^unknown event type 0 at offset 0x10 \(header longer than 16 bytes",
    "header-1.21": r"^bad header b'go 1.21 trace",
    "inline-4args": r"^GoCreate has wrong number of arguments .*must be length-prefixed",
    "frequency-first": r"^first record .* is Frequency at offset 0x10, not EvBatch",
    "big-stack": r"^Stack at offset 0x[0-9a-f]+: length-prefixed block of 2898 bytes > 2048",
    "undefined-string": r"^string id 999 undefined",
    "create-no-stack": r"^GoCreate g=1 at offset 0x[0-9a-f]+: start stack 0",
    "running-at-end": r"^g 2 still running at end of trace",
    "region-no-stack": r"^UserRegion task=1 start .*: stack 0",
    "region-g0": r"^UserRegion task=0 start .* no goroutine running on P 0",
    "zero-pc": r"^GoCreate g=1 at .*: start stack 1 frame 0 has PC 0",
    "sysblock-no-procstop": r"^P 1: GoSysBlock \(g 2\) .* not followed by ProcStop",
    "insyscall": r"^GoInSyscall g=4 .*: P 0 does not stop before g4's GoSysExit",
    "no-gomaxprocs": r"^no EvGomaxprocs",
    "dup-pc": r"^PC 0x406000 names two frames: ap_invoke_handler .* ap_process_request_internal",
    "rd-break": r"^g 1 is running in the initial dump \(GoStart g=1 .* first event Go 1.23\+ "
                r"keep, ProcStart \(P 0, .*, is at the trace's time 0: their viewer panics",
    "rd-tie": r"^g 1 is running in the initial dump .* keep, ProcStart \(P 0, .*time 0",
    "rd-early-cpu": r"^g 1 is running in the initial dump .* keep, CPUSample \(P 0, .*time 0",
    "rd-insyscall-break": r"^g 1 is in a syscall in the initial dump \(GoInSyscall g=1 .* "
                          r"keep, ProcStart .*time 0.*even when the P stops before its "
                          r"GoSysExit",
}
# What `go tool trace -d` (Go 1.19) says (section 11, go1.19.8 column); the others parse.
GO119_FAILS = {
    "no-frequency": "no EvFrequency event",
    "bad-seq": "no consistent ordering of events possible",
    "unsorted-ts": "time stamps out of order",
    "syscall-exit-early": "time stamps out of order",
    "dup-start": "event sequences are broken",
    "start-while-running": "no consistent ordering of events possible",
    "procstop-running": "p 0 is running a goroutine 1 during stop",
    "region-mismatch": "misuse of region in goroutine 1",
    "short-header": "unknown event type 0 at offset 0x10",
    "header-1.21": "unsupported trace file version 1.21",
    "inline-4args": "GoCreate has wrong number of arguments",
}
GOOD = ["sample.trace", "minimal.trace"]
REAL = ["real-go119-insyscall.trace", "real-go119-tasks-cpu.trace"]


def _fixtures_dir():
    if not os.path.isdir(FIXTURES):
        pytest.fail("Go trace fixtures directory %s does not exist (%s). Copy sample.trace, "
                    "minimal.trace, real-go119-*.trace and variants/*.trace from "
                    "shared/docs/go-trace there, or point GO_TRACE_DOCS at that directory."
                    % (FIXTURES, "from GO_TRACE_DOCS" if DOCS_FROM_ENV else "in-repo copy"),
                    pytrace=False)
    return FIXTURES


def _docs_dir():
    """The shared docs directory, or skip if it is absent and not asked for explicitly."""
    if not os.path.isdir(DOCS):
        if DOCS_FROM_ENV:
            pytest.fail("GO_TRACE_DOCS=%s does not exist" % DOCS_FROM_ENV, pytrace=False)
        pytest.skip("shared docs %s absent (fresh clone?); set GO_TRACE_DOCS to cross-check"
                    % DOCS)
    return DOCS


def read(name):
    path = os.path.join(_fixtures_dir(), name)
    if not os.path.isfile(path):
        pytest.fail("fixture %s missing" % path, pytrace=False)
    with open(path, "rb") as f:
        return f.read()


def _variant_names_on_disk():
    return sorted(os.path.basename(p)[:-len(".trace")]
                  for p in glob.glob(os.path.join(FIXTURES, "variants", "*.trace")))


# Parametrized over the files found in the directory plus the names of the tables.
ALL_VARIANTS = sorted(set(_variant_names_on_disk()) | set(VARIANTS) | set(RD_VARIANTS))


@pytest.fixture(scope="session")
def variant_files(tmp_path_factory):
    """{name: path} of every variant: from the fixtures directory, or generated with
    gen_trace.py --variant NAME when missing there."""
    d = os.path.join(_fixtures_dir(), "variants")
    files = {n: os.path.join(d, n + ".trace") for n in _variant_names_on_disk()}
    missing = [n for n in VARIANTS + RD_VARIANTS if n not in files]
    if missing:
        gen = os.path.join(DOCS, "gen_trace.py")
        if not os.path.isfile(gen):
            pytest.fail("variants %s missing in %s and no generator at %s"
                        % (", ".join(missing), d, gen), pytrace=False)
        out = tmp_path_factory.mktemp("variants")
        for n in missing:
            path = str(out / (n + ".trace"))
            subprocess.run(["/usr/bin/python3", gen, "-o", path, "--variant", n],
                           check=True, capture_output=True, timeout=60)
            files[n] = path
    return files


# --- the directory and the table -------------------------------------------------------

def test_fixture_directory_holds_every_table_variant(variant_files):
    assert len(VARIANTS) == 31 and len(set(VARIANTS)) == 31
    assert len(RD_VARIANTS) == 7 and not set(RD_VARIANTS) & set(VARIANTS)
    missing = sorted(set(VARIANTS + RD_VARIANTS) - set(variant_files))
    assert not missing, "variants of the section 11 table without a file: %s" % missing
    unknown = sorted(set(_variant_names_on_disk()) - set(VARIANTS) - set(RD_VARIANTS))
    assert not unknown, "variant files not in the table (update VARIANTS/TRAPS): %s" % unknown
    assert set(TRAPS) | OK_VARIANTS | READER_OK_VARIANTS == set(VARIANTS) | set(RD_VARIANTS)
    assert not set(TRAPS) & (OK_VARIANTS | READER_OK_VARIANTS)
    assert RD_PANICS == set(RD_VARIANTS) & set(TRAPS)
    assert set(GO119_FAILS) <= set(TRAPS)


def test_variant_list_matches_format_md_table():
    with open(os.path.join(_docs_dir(), "FORMAT.md"), encoding="utf-8") as f:
        text = f.read()
    sec = text[text.index("\n## 11."):text.index("\n## 12.")]
    names = set()
    for line in sec.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z0-9.-]+)`", line.split("|")[1]))
    assert names == set(VARIANTS)


def test_rd_variant_list_matches_format_md():
    """FORMAT.md 12.3 item 9: 'Variants: `rd-break` ..., `rd-insyscall-break` (panic);
    `rd-keep`, ... (open ...)': the panicking ones before the semicolon."""
    with open(os.path.join(_docs_dir(), "FORMAT.md"), encoding="utf-8") as f:
        text = f.read()
    item = text[text.index("9. **The earliest timestamp"):text.index("10. **Goroutine names")]
    listed = item[item.index("Variants:"):]
    panics, opens = listed.split(";", 1)
    assert set(re.findall(r"`(rd-[a-z-]+)`", panics)) == RD_PANICS
    assert set(re.findall(r"`(rd-[a-z-]+)`", opens)) == set(RD_VARIANTS) - RD_PANICS


def test_in_repo_fixtures_match_shared_docs():
    docs = _docs_dir()
    if os.path.abspath(docs) == os.path.abspath(FIXTURES):
        pytest.skip("testing the shared docs directly")
    names = GOOD + REAL + ["variants/%s.trace" % n for n in _variant_names_on_disk()]
    upstream = GOOD + REAL + ["variants/" + os.path.basename(p) for p in
                              glob.glob(os.path.join(docs, "variants", "*.trace"))]
    assert sorted(names) == sorted(upstream)
    for n in names:
        with open(os.path.join(docs, n), "rb") as f:
            assert read(n) == f.read(), "%s differs from %s" % (n, docs)


# --- good and real traces --------------------------------------------------------------

@pytest.mark.parametrize("name", GOOD)
def test_good_traces_pass(name):
    data = read(name)
    assert check(data) == []
    assert check(data, strict_ts=True) == []
    assert check(data, producer_rules=False) == []


@pytest.mark.parametrize("name", REAL)
def test_real_go_traces_pass_without_producer_rules(name):
    data = read(name)
    assert check(data, producer_rules=False) == []
    # With the producer rules on, only those rules fire: the Go runtime writes
    # GoStartLocal (and, in one trace, GoInSyscall), which our writer must not; it runs
    # Ps on its thread (M) 0 and names goroutines by their function (runtime.main) while
    # their stacks end in another (main.main), which Go 1.23+ then show.
    msgs = check(data)
    assert msgs
    for m in msgs:
        assert ("runtime-only event type" in m or "do not write EvGoInSyscall" in m or
                "ProcStart events on thread 0" in m or "(12.3.10)" in m), m
    if "insyscall" in name:
        assert any(m.startswith("GoInSyscall g=6 ") for m in msgs)
    assert any(re.match(r"\d+ ProcStart events on thread 0, first ProcStart \(P \d", m)
               for m in msgs), msgs
    assert any(m.startswith("g 1: Go 1.23+ name it 'main.main' (outermost frame of the "
                            "stack of ") and "Go 1.19 'runtime.main'" in m for m in msgs), msgs


# --- variants --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_variant(name, variant_files):
    assert name in variant_files
    with open(variant_files[name], "rb") as f:
        data = f.read()
    msgs = check(data)
    if name in OK_VARIANTS:
        assert msgs == []
        return
    if name in READER_OK_VARIANTS:
        assert check(data, producer_rules=False) == []
        assert msgs and all("do not write EvGoInSyscall" in m for m in msgs), msgs
        return
    assert msgs, "check() accepted the broken variant %s" % name
    assert any(re.search(TRAPS[name], m) for m in msgs), \
        "no message names the trap %r: %s" % (TRAPS[name], msgs)
    # Every trap of the table breaks some reader: none is only a producer rule.
    assert check(data, producer_rules=False)


# --- the real tool ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def go_env(tmp_path_factory):
    if not os.path.exists(GO):
        pytest.skip("%s not installed" % GO)
    home = tmp_path_factory.mktemp("gohome")
    env = dict(os.environ, HOME=str(home), GOCACHE=str(home / "go-build"),
               GOPATH=str(home / "go"), GOTOOLCHAIN="local", GOFLAGS="")
    return env


def go_trace_d(path, env):
    p = subprocess.run([GO, "tool", "trace", "-d", str(path)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, env=env, timeout=60)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("name", ["variants/%s" % n for n in ALL_VARIANTS] + GOOD + REAL)
def test_go_tool_trace_agrees(name, go_env, variant_files):
    """`go tool trace -d` (1.19) fails exactly where the section 11 table says it does
    (no-frequency, bad-seq, ...; sample.trace parses), and every file it rejects is
    also rejected by check(producer_rules=False)."""
    if name.startswith("variants/"):
        base = name[len("variants/"):]
        path = variant_files[base]
    else:
        base, path = name, os.path.join(_fixtures_dir(), name)
    rc, out = go_trace_d(path, go_env)
    if base in GO119_FAILS:
        assert rc != 0 and GO119_FAILS[base] in out, out[-2000:]
        with open(path, "rb") as f:
            assert check(f.read(), producer_rules=False)
    else:
        assert rc == 0, out[-2000:]


@pytest.mark.parametrize("name", RD_VARIANTS)
def test_go123_viewer_agrees_on_rd_variants(name, go_env, variant_files):
    """FORMAT.md 12.3 items 9 and 12: Go 1.23's -d parses every rd-* variant, but its
    viewer panics on exactly those check() flags ('startRunningTime != 0'); the others
    open in Go 1.19's and Go 1.23's viewer, every page of every kind."""
    path = variant_files[name]
    p = go_trace_d_conftest(path, GO123)
    assert p.returncode == 0, p.stdout + p.stderr
    if name in RD_PANICS:
        out = viewer_exit_output(path, GO123)
        assert "startRunningTime != 0" in out, out[-2000:]
    else:
        for go in (GO, GO123):
            view_trace(path, go)


def _processes_with_arg(arg):
    out = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if arg.encode() in f.read().split(b"\0"):
                    out.append(int(d))
        except (OSError, ValueError):
            continue
    return out


@pytest.mark.parametrize("go", [GO, GO123], ids=["go1.19", "go1.23"])
def test_viewer_leaves_no_process(go, tmp_path, variant_files):
    """`go tool trace` execs `trace -http`, which outlives a killed `go`: a Viewer runs in
    a process group of its own and closing it (also after a failed start) ends them all."""
    good = str(tmp_path / "good.trace")
    with open(good, "wb") as f:
        f.write(read("sample.trace"))
    with Viewer(good, go=go) as v:
        assert v.get("/")[0] == 200
        assert len(v.processes()) >= 2, v.processes()      # go and its `trace` child
        assert set(v.processes()) <= set(_processes_with_arg(good))
    assert v.processes() == [] and _processes_with_arg(good) == []
    bad = str(tmp_path / "bad.trace")
    with open(variant_files["no-frequency"], "rb") as f, open(bad, "wb") as g:
        g.write(f.read())
    out = viewer_exit_output(bad, go)
    assert "EvFrequency" in out, out[-2000:]
    assert _processes_with_arg(bad) == []


def test_go_tool_accepts_hand_built_trace(go_env, tmp_path):
    path = tmp_path / "built.trace"
    path.write_bytes(build(live=annotations, tail=samples))
    rc, out = go_trace_d(path, go_env)
    assert rc == 0, out[-2000:]
    assert "UserRegion" in out and "CPUSample" in out


def test_httpd_trace_from_before_the_go123_rules(tmp_path):
    """A trace mod_pprof served (event MPM, 2 children of 8 threads, light load) before
    its writer kept 12.3 items 9-11: ProcStart first in the dump, threads that had served
    nothing on thread 0, idle stacks ending in httpd.wait_for_work. Go 1.19 opens it,
    every page; Go 1.23's viewer panics; check() names each of those traps."""
    path = os.path.join(_fixtures_dir(), "httpd-event-before-go123-rules.trace")
    with open(path, "rb") as f:
        data = f.read()
    msgs = check(data, strict_ts=True, strict_start=True)
    assert re.match(r"12 ProcStart events on thread 0", msgs[0]), msgs
    running = [m for m in msgs if re.match(r"g \d+ is running in the initial dump .* keep, "
                                           r"ProcStart \(P 1, .* time 0", m)]
    assert len(running) == 3, msgs
    assert sum(m.startswith("1 events not 1 ns after the dump's earliest GoCreate") for m in
               msgs) == 1, msgs
    names = [m for m in msgs if re.match(r"g \d+: Go 1.23\+ name it 'httpd.wait_for_work' .* "
                                         r"Go 1.19 'httpd.worker_thread'", m)]
    assert len(names) == 15 and len(msgs) == 1 + 3 + 1 + 15, msgs
    assert check(data, producer_rules=False) == running
    view_trace(path, GO)
    out = viewer_exit_output(path, GO123)
    assert "startRunningTime != 0" in out, out[-2000:]


# --- parse() and summary() -------------------------------------------------------------

def test_parse_minimal_matches_listing():
    """Record offsets and values of FORMAT.md section 10.2."""
    tr = parse(read("minimal.trace"))
    recs = [(r.offset, r.name) for r in tr.records]
    assert recs == [
        (0x10, "Batch"), (0x14, "ProcStart"), (0x17, "GoCreate"), (0x1d, "Gomaxprocs"),
        (0x21, "GoStart"), (0x25, "String"), (0x2d, "UserTaskCreate"), (0x34, "String"),
        (0x3e, "UserRegion"), (0x45, "String"), (0x4e, "UserLog"), (0x58, "UserRegion"),
        (0x5f, "UserTaskEnd"), (0x63, "GoBlock"), (0x66, "ProcStop"), (0x68, "Batch"),
        (0x6c, "CPUSample"), (0x74, "Frequency"), (0x7a, "Batch"), (0x7e, "String"),
        (0x8c, "String"), (0x97, "Stack")]
    ev = {r.offset: r for r in tr.records}
    assert [e.ts for e in tr.events] == [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1017,
                                         1018, 1019, 1020, 1031]
    assert ev[0x17].form == "prefixed" and ev[0x17].block_len == 4
    assert ev[0x17].args == [1, 1] and ev[0x17].stk == 0
    assert ev[0x21].form == "inline" and ev[0x21].args == [1, 1] and ev[0x21].g == 1
    assert ev[0x4e].args == [1, 3] and ev[0x4e].stk == 1 and ev[0x4e].value == b"200"
    assert ev[0x6c].args == [1010, 0, 1] and ev[0x6c].g == 1 and ev[0x6c].p == 0
    assert ev[0x66].g == 0 and ev[0x63].g == 1
    assert tr.frequency == 1000000000
    assert tr.strings == {1: "GET /", 2: "handler", 3: "status", 4: "main.worker",
                          5: "worker.c"}
    (fr,) = tr.stacks[1].frames
    assert (fr.pc, fr.fn, fr.file, fr.line) == (0x1000, "main.worker", "worker.c", 10)
    assert [(c.p, c.ticks) for c in tr.chunks] == [(0, 1000), (0, 1030), (0, 1040)]


def test_summary_sample():
    s = summary(read("sample.trace"))
    B = 1000000
    assert s["goroutines"] == 3
    assert s["goroutine_start_functions"] == {1: "apache.worker_thread",
                                              2: "apache.worker_thread",
                                              3: "apache.listener_thread"}
    assert s["tasks"] == {
        1: {"name": "GET /index.html", "parent": 0, "start": B + 150, "end": B + 360},
        2: {"name": "POST /api/upload", "parent": 0, "start": B + 140, "end": B + 290}}
    assert s["regions"] == {"read_request": 2, "handler": 2, "auth": 2, "log": 1}
    assert s["logs"] == [(1, "status", "200 OK"), (2, "bytes", "4096")]
    assert s["cpu_samples"] == 4
    assert s["ps"] == [0, 1]
    assert s["frequency"] == 1000000000
    assert s["stacks"] == 9        # FORMAT.md 10.3 says 12; identical stacks are shared


def test_summary_minimal_and_real():
    s = summary(read("minimal.trace"))
    assert s["goroutines"] == 1 and s["goroutine_start_functions"] == {1: "main.worker"}
    assert s["tasks"] == {1: {"name": "GET /", "parent": 0, "start": 1005, "end": 1018}}
    assert s["regions"] == {"handler": 1} and s["logs"] == [(1, "status", "200")]
    assert s["cpu_samples"] == 1 and s["ps"] == [0]
    s = summary(read("real-go119-tasks-cpu.trace"))
    assert s["cpu_samples"] == 4 and s["ps"] == [0, 1] and len(s["tasks"]) == 2
    assert all(t["end"] is not None for t in s["tasks"].values())
    assert sorted(v for _, _, v in s["logs"]) == ["200", "200"]


def test_cli(tmp_path):
    script = os.path.join(HERE, "go_trace.py")
    ok = subprocess.run([sys.executable, script, os.path.join(_fixtures_dir(), "sample.trace")],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.endswith(": OK\n"), ok.stdout + ok.stderr
    bad = tmp_path / "nofreq.trace"
    bad.write_bytes(build(freq=None))
    p = subprocess.run([sys.executable, script, str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "no EvFrequency record" in p.stdout
    real = os.path.join(_fixtures_dir(), REAL[0])
    p = subprocess.run([sys.executable, script, real], capture_output=True, timeout=60)
    assert p.returncode == 1
    p = subprocess.run([sys.executable, script, "--no-producer-rules", real],
                       capture_output=True, timeout=60)
    assert p.returncode == 0


# --- hand-built traces: one rule at a time ---------------------------------------------
# An encoder of our own (type numbers from FORMAT.md section 6), independent of
# go_trace.py and gen_trace.py.

T = {"Batch": 1, "Frequency": 2, "Stack": 3, "Gomaxprocs": 4, "ProcStart": 5,
     "ProcStop": 6, "GCStart": 7, "GoCreate": 13, "GoStart": 14, "GoEnd": 15,
     "GoSched": 17, "GoBlock": 20, "GoUnblock": 21, "GoBlockNet": 27, "GoSysCall": 28,
     "GoSysExit": 29, "GoSysBlock": 30, "GoWaiting": 31, "GoInSyscall": 32, "HeapAlloc": 33,
     "GoStartLocal": 38, "UserTaskCreate": 45, "UserTaskEnd": 46, "UserRegion": 47,
     "UserLog": 48, "CPUSample": 49}
HDR = b"go 1.19 trace\x00\x00\x00"


def uv(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def rec(name, *args, prefixed=None, trailer=b""):
    body = b"".join(uv(a) for a in args)
    if prefixed is None:
        prefixed = len(args) >= 4
    if prefixed:
        return bytes([T[name] | 0xC0]) + uv(len(body)) + body + trailer
    return bytes([T[name] | (len(args) - 1) << 6]) + body + trailer


def string(sid, s):
    b = s.encode()
    return bytes([37]) + uv(sid) + uv(len(b)) + b


class W:
    """Writes chunks with absolute timestamps (converted to deltas)."""

    def __init__(self, header=HDR):
        self.out = bytearray(header)
        self.last = 0

    def batch(self, p, ticks, **kw):
        self.out += rec("Batch", p, ticks, **kw)
        self.last = ticks

    def ev(self, ts, name, *args, **kw):
        self.out += rec(name, ts - self.last, *args, **kw)
        self.last = ts

    def raw(self, b):
        self.out += b


STACK = rec("Stack", 1, 1, 0x1000, 1, 2, 10)
STRINGS = string(1, "main.worker") + string(2, "worker.c") + string(3, "task") + \
    string(4, "region") + string(5, "key")


def build(dump=None, live=None, tail=None, freq=1000000000, gomaxprocs=True,
          stacks=STACK):
    """1 P, g1 (start function main.worker, stack 1) running 1004..1100, then blocked.
    dump(w): after GoCreate g1 (ts 1002), before Gomaxprocs (1003) - use ts 1002.
    live(w): while g1 runs on P0, timestamps 1005..1099.
    tail(w): after ProcStop (1101): more chunks (timestamps from 1200)."""
    w = W()
    w.batch(0, 1000)
    w.ev(1001, "ProcStart", 7)
    w.ev(1002, "GoCreate", 1, 1, 0)
    if dump:
        dump(w)
    if gomaxprocs:
        w.ev(1003, "Gomaxprocs", 1, 0)
    w.ev(1004, "GoStart", 1, 1)
    if live:
        live(w)
    w.ev(1100, "GoBlock", 1)
    w.ev(1101, "ProcStop")
    if tail:
        tail(w)
    if freq is not None:
        w.raw(rec("Frequency", freq))
    w.batch(0, 5000)
    w.raw(STRINGS + stacks)
    return bytes(w.out)


def annotations(w):
    w.ev(1010, "UserTaskCreate", 1, 0, 3, 1)
    w.ev(1011, "UserRegion", 1, 0, 4, 1)
    w.ev(1012, "UserLog", 1, 5, 1, trailer=uv(2) + b"hi")
    w.ev(1013, "UserRegion", 1, 1, 4, 1)
    w.ev(1014, "UserTaskEnd", 1, 1)


def samples(w):
    w.batch(0, 1200)
    w.ev(1201, "CPUSample", 1050, 0, 1, 1)
    w.ev(1202, "CPUSample", 1051, -1, 0, 1)


def test_built_trace_is_clean():
    data = build(live=annotations, tail=samples)
    assert check(data, strict_ts=True) == []
    s = summary(data)
    assert s["tasks"] == {1: {"name": "task", "parent": 0, "start": 1010, "end": 1014}}
    assert s["regions"] == {"region": 1} and s["logs"] == [(1, "key", "hi")]
    assert s["cpu_samples"] == 2 and s["goroutine_start_functions"] == {1: "main.worker"}


def only(data, pattern, **kw):
    msgs = check(data, **kw)
    assert len(msgs) == 1 and re.search(pattern, msgs[0]), msgs
    return msgs[0]


@pytest.mark.parametrize("data, pattern", [
    (b"go 1.19 trace\x00\x00", r"bad header"),
    (HDR[:-1] + b"\x01", r"bad header"),
    (HDR + b"\x41\x00", r"truncated varint"),
    (HDR + b"\x41\x00" + b"\xff" * 10 + b"\x01", r"bad varint .* more than 10 bytes"),
    (HDR + b"\x41\x00" + b"\xff" * 9 + b"\x7f", r"bad varint .* more than 64 bits"),
    (HDR + string(0, "x"), r"EvString at offset 0x10 has invalid id 0"),
    (HDR + string(1, "x") + string(1, "y"), r"duplicate id 1 \(first at 0x10\)"),
    (HDR + b"\x25\x01\x00", r"EvString id 1 at offset 0x10 is empty"),
    (HDR + b"\x25\x01\x05ab", r"truncated EvString bytes"),
    (HDR + rec("Stack", 1, 2, 0x1000, 1, 2, 10), r"EvStack id 1 .* want 2\+4\*2 = 10, got 6"),
    (HDR + rec("Stack", 1, 1001), r"EvStack id 1 .* bad number of frames 1001"),
    (HDR + rec("Stack", 1, prefixed=True), r"EvStack .* at least 2"),
    (HDR + rec("Batch", 0, 1000) + rec("GoStart", 1, 1), r"GoStart has wrong number of "
                                                         r"arguments .*: want 3, got 2$"),
    (HDR + rec("Batch", 0, 1000) + b"\xcd\x03\x01\x01\x81\x01", r"GoCreate at offset 0x14 "
                                                                r"has wrong length"),
    (HDR + rec("Batch", 0, 1000) + b"\xcd\x03\x01\x01\x81", r"truncated varint"),
    (HDR + rec("Batch", 0, 1000) + b"\xcd\x09\x01", r"truncated GoCreate .* runs past"),
    (HDR + rec("Batch", 0, 1000) + b"\x32\x00", r"unknown event type 50 at offset 0x14$"),
    (HDR + rec("Batch", 0, 1000) + b"\x00", r"unknown event type 0 at offset 0x14$"),
])
def test_malformed(data, pattern):
    with pytest.raises(TraceError, match=pattern):
        parse(data)
    only(data, pattern)


def test_framing_rules():
    w = W()
    w.batch(0, 1000, prefixed=True)
    data = build().replace(HDR + rec("Batch", 0, 1000), bytes(w.out), 1)
    only(data, r"^EvBatch at offset 0x10 is length-prefixed")
    big = rec("Stack", 1, 200, *[x for i in range(200) for x in (0x7f0000000000 + i, 1, 2, i)])
    only(build(stacks=big), r"^Stack at offset .* block of \d+ bytes > 2048")
    # 3-argument events may be length-prefixed
    data = build(live=lambda w: w.ev(1010, "GoSysCall", 1, prefixed=True))
    assert check(data) == []
    only(HDR + rec("Frequency", 1000) + build(freq=None)[16:],
         r"^first record after the header .* is Frequency at offset 0x10, not EvBatch")
    w = W()
    w.batch(0, 1000)
    w.raw(rec("Frequency", 1000) + STRINGS + STACK)
    assert check(bytes(w.out)) == ["trace is empty (no timed events)"]


def test_frequency_rules():
    only(build(freq=None), r"^no EvFrequency record$")
    only(build(freq=0), r"^EvFrequency at offset 0x[0-9a-f]+: bad frequency 0")
    two = build(tail=lambda w: w.raw(rec("Frequency", 5)))
    only(two, r"^2 EvFrequency records \(want exactly one")
    assert check(two, producer_rules=False) == []


def test_string_and_stack_rules():
    only(build(stacks=rec("Stack", 1, 1, 0x1000, 1, 77, 10)),
         r"^string id 77 undefined \(used 1 times, first as file name in stack 1 frame 0\)")
    only(build(live=lambda w: w.ev(1010, "UserTaskCreate", 1, 0, 66, 1)),
         r"^string id 66 undefined .* name of UserTaskCreate task=1")
    only(build(live=lambda w: w.ev(1010, "UserLog", 0, 65, 1, trailer=uv(0))),
         r"^string id 65 undefined .* key of UserLog")
    only(build(stacks=STACK + rec("Stack", 1, 1, 0x2000, 1, 2, 11)),
         r"^stack id 1 defined twice")
    only(build(live=lambda w: w.ev(1010, "GoSysCall", 9)),
         r"^stack id 9 undefined \(referenced 1 times, first by GoSysCall \(g 1\)")
    only(build(stacks=STACK + rec("Stack", 2, 1, 0x1000, 3, 2, 10)),
         r"^PC 0x1000 names two frames: main.worker worker.c:10 \(stack 1\) and task")
    # the same PC with the same frame in several stacks is fine
    assert check(build(stacks=STACK + rec("Stack", 2, 2, 0x2000, 3, 2, 5, 0x1000, 1, 2,
                                          10))) == []


def test_goroutine_start_stack_rules():
    def create(stk):
        return lambda w: w.ev(1020, "GoCreate", 2, stk, 1)
    only(build(live=create(0)), r"^GoCreate g=2 at offset 0x[0-9a-f]+: start stack 0")
    msgs = check(build(live=create(8)))
    assert any(re.match(r"GoCreate g=2 at .*: start stack 8 undefined", m) for m in msgs)
    only(build(live=create(2), stacks=STACK + rec("Stack", 2, 0)),
         r"^GoCreate g=2 at .*: start stack 2 is empty")
    only(build(live=create(2), stacks=STACK + rec("Stack", 2, 2, 0x3000, 1, 2, 1, 0, 1, 2, 2)),
         r"^GoCreate g=2 at .*: start stack 2 frame 1 has PC 0")


def test_per_p_time_rules():
    def back(w):                       # a second P0 chunk that starts before the first ended
        w.batch(0, 1050)
        w.ev(1060, "HeapAlloc", 4096)
    msgs = check(build(tail=back))
    assert len(msgs) == 2, msgs
    assert re.match(r"P 0: timestamps go backwards at offset 0x[0-9a-f]+ \(HeapAlloc, ts 1060 "
                    r"< 1101 of ProcStop", msgs[0])
    assert re.match(r"time stamps out of order: HeapAlloc .* merged after ProcStop", msgs[1])
    dup = build(live=lambda w: (w.ev(1010, "GoSysCall", 1), w.ev(1010, "GoSysCall", 1)))
    assert check(dup) == []
    only(dup, r"^P 0: timestamps not increasing at offset .* same ts 1010", strict_ts=True)


def test_merge_rules():
    # g2 created on P0 at 1020, started on P1 at 1010: cause after effect
    def p1(w):
        w.batch(1, 1000)
        w.ev(1010, "GoStart", 2, 1)
        w.ev(1030, "GoBlock", 1)
    only(build(live=lambda w: w.ev(1020, "GoCreate", 2, 1, 1), tail=p1),
         r"^time stamps out of order: GoStart g=2 seq=1 \(P 1.* merged after GoCreate g=2")
    # an unblock with a wrong seq can never be merged
    msg = only(build(dump=lambda w: w.ev(1002, "GoCreate", 2, 1, 0) or
                     w.ev(1002, "GoWaiting", 2),
                     live=lambda w: w.ev(1010, "GoUnblock", 2, 3, 1)),
               r"^no consistent ordering of events possible: GoUnblock g=2 seq=3 .* needs g2 "
               r"\(seq 3, waiting\), has \(seq 2, waiting\)")
    assert "P 0, offset 0x" in msg


def _sys(real, exit_ts=1040, start_ts=1050):
    def live(w):
        w.ev(1010, "GoSysCall", 1)
        w.ev(1020, "GoSysBlock")
        w.ev(1021, "ProcStop")
        w.ev(1030, "ProcStart", 7)
        w.ev(exit_ts, "GoSysExit", 1, 2, real)
        w.ev(start_ts, "GoStart", 1, 3)
    return build(live=live)


def test_syscall_rules():
    assert check(_sys(1035)) == [] and check(_sys(0)) == []
    only(_sys(1015), r"^time stamps out of order: GoSysExit g=1 .* real ticks 1015 before "
                     r"its GoSysBlock at ts 1020")
    only(_sys(1045, exit_ts=1040, start_ts=1042), r"^GoSysExit g=1 .*: real ticks 1045 after "
                                                  r"g1's next start GoStart g=1 seq=3")

    def no_stop(w):
        w.ev(1020, "GoSysBlock")
        w.ev(1040, "GoSysExit", 1, 2, 0)
        w.ev(1050, "GoStart", 1, 3)
    only(build(live=no_stop), r"^P 0: GoSysBlock \(g 1\) at offset .* not followed by "
                              r"ProcStop \(next: GoSysExit g=1")

    def stray(w):
        w.ev(1010, "GoBlock", 1)
        w.ev(1020, "GoSysExit", 1, 2, 1015)
        w.ev(1030, "GoStart", 1, 3)
    only(build(live=stray), r"^stray syscall exit: GoSysExit g=1 .* no earlier GoSysBlock")


def test_state_rules():
    only(build(live=lambda w: w.ev(1010, "ProcStart", 8)), r"^P 0: ProcStart while already "
                                                            r"running")
    # a GoStart of a goroutine that already ran to its end: never ready again
    msgs = check(build(live=lambda w: (w.ev(1010, "GoEnd"), w.ev(1020, "GoStart", 1, 2))))
    assert any(m.startswith("no consistent ordering") for m in msgs), msgs
    # G 0 must not block; GoCreate from G 0 on a P that runs a goroutine
    msgs = check(build(live=lambda w: (w.ev(1010, "GoBlock", 1), w.ev(1020, "GoSched", 1))))
    assert any(m.startswith("no consistent ordering") for m in msgs), msgs
    # a syscall mark from G 0 (after g1 ended; g2 then runs until the end)
    only(build(live=lambda w: (w.ev(1010, "GoEnd"), w.ev(1020, "GoSysCall", 1),
                               w.ev(1030, "GoCreate", 2, 1, 0), w.ev(1040, "GoStart", 2, 1))),
         r"^g 0 did GoSysCall \(g 0\) \(P 0")


def test_annotation_rules():
    def outside(w):                    # after the ProcStop: no goroutine runs on P0
        w.batch(0, 1200)
        w.ev(1201, "UserLog", 0, 5, 1, trailer=uv(0))
    only(build(tail=outside), r"^UserLog .* no goroutine running on P 0 \(g 0\)")
    only(build(live=lambda w: (w.ev(1010, "UserTaskCreate", 1, 0, 3, 1),
                               w.ev(1011, "UserTaskCreate", 1, 0, 3, 1))),
         r"^task id conflicts \(id:1\)")
    only(build(live=lambda w: w.ev(1010, "UserTaskCreate", 0, 0, 3, 1)), r"task id 0$")
    # a task id may be reused once ended
    assert check(build(live=lambda w: (w.ev(1010, "UserTaskCreate", 1, 0, 3, 1),
                                       w.ev(1011, "UserTaskEnd", 1, 1),
                                       w.ev(1012, "UserTaskCreate", 1, 0, 3, 1)))) == []
    only(build(live=lambda w: (w.ev(1010, "UserRegion", 1, 0, 4, 1),
                               w.ev(1011, "UserRegion", 2, 1, 4, 1))),
         r"^misuse of region in g 1: end 'region' \(task 2, name id 4\)")
    only(build(live=lambda w: w.ev(1010, "UserRegion", 1, 2, 4, 1)),
         r"^invalid user region mode 2")
    only(build(live=lambda w: w.ev(1010, "UserRegion", 1, 0, 4, 7)), r"^stack id 7 undefined")
    end_only = build(live=lambda w: w.ev(1010, "UserRegion", 1, 1, 4, 1))
    only(end_only, r"region end 'region' without an open start on g 1")
    assert check(end_only, producer_rules=False) == []


def test_cpu_sample_rules():
    def bad_p(w):
        w.batch(0, 1200)
        w.ev(1201, "CPUSample", 1050, 3, 1, 1)
    only(build(tail=bad_p), r"^CPUSample at offset 0x[0-9a-f]+: P 3 has no batch")

    def early(w):                      # names g1 at 1001, before its GoCreate at 1002
        w.batch(0, 1200)
        w.ev(1201, "CPUSample", 1001, 0, 1, 1)
    only(build(tail=early), r"^GoCreate g=1 .* comes after CPUSample .* naming g1 .*'g 1 "
                            r"already exists'")

    def unknown_g(w):
        w.batch(0, 1200)
        w.ev(1201, "CPUSample", 1050, 0, 9, 1)
    data = build(tail=unknown_g)
    only(data, r"^CPUSample at offset .*: g 9 is never created")
    assert check(data, producer_rules=False) == []


def test_gomaxprocs_rules():
    only(build(gomaxprocs=False), r"^no EvGomaxprocs")
    two = build(live=lambda w: w.ev(1010, "Gomaxprocs", 2, 0))
    only(two, r"^2 EvGomaxprocs events \(want exactly one\)")
    assert check(two, producer_rules=False) == []

    def late_waiting(w):               # g2 created in the dump, GoWaiting after Gomaxprocs
        w.ev(1002, "GoCreate", 2, 1, 0)

    def unblock(w):
        w.ev(1010, "GoUnblock", 2, 2, 1)
    data = build(dump=late_waiting, live=unblock).replace(
        rec("GoStart", 1, 1, 1), rec("GoWaiting", 0, 2) + rec("GoStart", 1, 1, 1), 1)
    only(data, r"^GoWaiting g=2 .* comes after EvGomaxprocs .* created before it")


def test_insyscall_rules():
    def dump(w):
        w.ev(1002, "GoCreate", 2, 1, 0)
        w.ev(1002, "GoInSyscall", 2)

    def exit_(w):
        w.ev(1010, "GoSysExit", 2, 2, 0)
    data = build(dump=dump, live=exit_)
    msgs = check(data)
    assert len(msgs) == 3
    assert re.match(r"GoInSyscall g=2 .*: do not write EvGoInSyscall", msgs[0])
    assert re.match(r"GoInSyscall g=2 .*: P 0 does not stop before g2's GoSysExit", msgs[1])
    # ... and the ProcStart at 1001 comes before the dump (12.3.12)
    assert re.match(r"g 2 is in a syscall in the initial dump .* keep, ProcStart \(P 0, "
                    r"offset 0x14, ts 1001\), is at the trace's time 0", msgs[2])
    assert check(data, producer_rules=False) == msgs[1:]


def running_dump(first="GoCreate", tie=False, freq=1000000000, sample_at=None):
    """1 P; g1 (main.worker) running in the initial dump, then blocked. The dump's
    GoCreate at 1000 comes first (ProcStart at 1001, or at 1000 with tie), or after a
    ProcStart at 1000 (first="ProcStart"); sample_at adds a CPU sample (g 0) then."""
    w = W()
    w.batch(0, 1000)
    if first == "GoCreate":
        w.ev(1000, "GoCreate", 1, 1, 0)
        w.ev(1000 if tie else 1001, "ProcStart", 7)
    else:
        w.ev(1000, "ProcStart", 7)
        w.ev(1001, "GoCreate", 1, 1, 0)
    w.ev(1002, "GoStart", 1, 1)
    w.ev(1003, "Gomaxprocs", 1, 0)
    w.ev(1010, "GoBlock", 1)
    w.ev(1011, "ProcStop")
    if sample_at is not None:
        w.batch(0, 1020)
        w.ev(1021, "CPUSample", sample_at, 0, 0, 1)
    w.raw(rec("Frequency", freq))
    w.batch(0, 5000)
    w.raw(STRINGS + STACK)
    return bytes(w.out)


@pytest.mark.parametrize("case, pattern", [
    ("keep", None),
    ("procstart-first", r"keep, ProcStart \(P 0, offset 0x14, ts 1000\), is at the trace's "
                        r"time 0"),
    ("tie", r"keep, ProcStart \(P 0, offset 0x1a, ts 1000\), is at the trace's time 0"),
    # 2 ticks per ns: 1 tick after the GoCreate is still 0 ns for Go 1.23+
    ("fast-clock", r"keep, ProcStart \(P 0, offset 0x1a, ts 1001\), is at the trace's time 0"),
    ("early-sample", r"keep, CPUSample .* is at the trace's time 0"),
    ("tied-sample", r"keep, CPUSample .* is at the trace's time 0"),
])
def test_start_time_rules(case, pattern, tmp_path):
    """12.3 item 9, checked against Go 1.23's viewer: with g1 running in the dump, the
    first event kept after the dropped GoCreates must not be at time 0 (in ns)."""
    data = {"keep": running_dump(sample_at=1001),
            "procstart-first": running_dump("ProcStart"), "tie": running_dump(tie=True),
            "fast-clock": running_dump(freq=2000000000),
            "early-sample": running_dump(sample_at=999),
            "tied-sample": running_dump(sample_at=1000)}[case]
    path = str(tmp_path / (case + ".trace"))
    with open(path, "wb") as f:
        f.write(data)
    if pattern is None:
        assert check(data) == []
        with Viewer(path, go=GO123) as v:
            assert v.get("/goroutines")[0] == 200
    else:
        only(data, r"^g 1 is running in the initial dump \(GoStart g=1 seq=1 .*" + pattern)
        out = viewer_exit_output(path, GO123)
        assert "startRunningTime != 0" in out, out[-2000:]
    if case == "keep":
        assert check(data, strict_ts=True, strict_start=True) == []
    else:
        # What a writer keeps by construction: nothing but the dump's GoCreates on or
        # within 1 ns of the earliest of them (CPU samples by their real time).
        assert any(m.startswith("1 events not 1 ns after the dump's earliest GoCreate")
                   for m in check(data, strict_start=True))


def test_strict_start_without_a_running_goroutine():
    """rd-late-start's shape: a ProcStart first, no goroutine running in the dump: every
    viewer opens it, but a writer keeping 12.3 item 9 would not write it."""
    data = build()
    assert check(data) == []
    only(data, r"^1 events not 1 ns after the dump's earliest GoCreate \(ts 1002\), first "
               r"ProcStart \(P 0, offset 0x14, ts 1001\)", strict_start=True)
    # no dump at all: nothing to keep first
    assert check(build(dump=None).replace(rec("GoCreate", 1, 1, 1, 0), b"", 1)
                 .replace(rec("GoStart", 1, 1, 1), b"", 1)
                 .replace(rec("GoBlock", 96, 1), b"", 1), strict_start=True) == []


def test_goroutine_name_rules():
    """12.3 item 10 (producer rule): Go 1.23+ name g1 (created in the dump) by the
    outermost frame of its first stacked state change, Go 1.19 by its start function."""
    other = rec("Stack", 2, 2, 0x2000, 3, 2, 5, 0x3000, 4, 2, 6)      # task <- region
    ending = rec("Stack", 3, 2, 0x2000, 3, 2, 5, 0x1000, 1, 2, 10)    # task <- main.worker

    def sched(stk):
        return lambda w: (w.ev(1010, "GoSched", stk), w.ev(1011, "GoStart", 1, 2))
    data = build(live=sched(2), stacks=STACK + other)
    only(data, r"^g 1: Go 1.23\+ name it 'region' \(outermost frame of the stack of GoSched "
               r"\(g 1\) .*\), Go 1.19 'main.worker' \(its start function\)")
    assert check(data, producer_rules=False) == []
    assert check(build(live=sched(3), stacks=STACK + ending)) == []
    # only the first stacked change names it; a stack 0 names nothing
    assert check(build(live=lambda w: (w.ev(1005, "GoSched", 0), w.ev(1006, "GoStart", 1, 2),
                                       w.ev(1010, "GoSched", 3), w.ev(1011, "GoStart", 1, 3),
                                       w.ev(1020, "GoSched", 2), w.ev(1021, "GoStart", 1, 4)),
                       stacks=STACK + other + ending)) == []
    # created after EvGomaxprocs: named by the outermost frame of its start stack
    two = build(live=lambda w: (w.ev(1010, "GoCreate", 2, 2, 1), w.ev(1020, "GoEnd"),
                                w.ev(1030, "GoStart", 2, 1), w.ev(1040, "GoEnd"),
                                w.ev(1050, "GoCreate", 3, 1, 0), w.ev(1060, "GoStart", 3, 1),
                                w.ev(1070, "GoSched", 1), w.ev(1080, "GoStart", 3, 2)),
                stacks=STACK + other)
    msgs = check(two)
    assert any(re.match(r"g 2: Go 1.23\+ name it 'region' \(outermost frame of the stack of "
                        r"GoCreate g=2 .*Go 1.19 'task'", m) for m in msgs), msgs


def test_thread_rules():
    """12.3 item 11 (producer rule): ProcStart's argument is the M of Go 1.23+."""
    data = build().replace(rec("ProcStart", 1, 7), rec("ProcStart", 1, 0), 1)
    only(data, r"^1 ProcStart events on thread 0, first ProcStart \(P 0, offset 0x14, ts "
               r"1001\): write the real thread id")
    assert check(data, producer_rules=False) == []


def test_runtime_only_events():
    data = build(live=lambda w: (w.ev(1010, "GoSched", 1), w.ev(1011, "GoStartLocal", 1)))
    only(data, r"^EvGoStartLocal at offset 0x[0-9a-f]+ \(1 in all\): runtime-only")
    assert check(data, producer_rules=False) == []


def test_module_api():
    assert set(summary(read("minimal.trace"))) == {
        "goroutines", "goroutine_start_functions", "tasks", "regions", "logs",
        "cpu_samples", "ps", "frequency", "events", "strings", "stacks"}
