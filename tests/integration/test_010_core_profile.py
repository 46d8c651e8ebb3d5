"""The core's own profile (written by tests/unit/check_resolve from a real stack of a -g
binary) opens in the real go tool pprof with function names and file:line."""
import os
import subprocess

from conftest import BUILDDIR, go_pprof

UNIT = os.path.join(BUILDDIR, "tests", "unit", "check_resolve")
PROFILE = os.path.join(BUILDDIR, "tests", "unit", "out", "selfprofile.pb.gz")


def test_core_profile_opens_in_go_tool_pprof():
    # Run the unit test now so the profile is fresh, not a leftover.
    if os.path.exists(PROFILE):
        os.unlink(PROFILE)
    subprocess.run([UNIT], check=True, timeout=60, capture_output=True)
    out = go_pprof("-top", "-lines", PROFILE).stdout
    lines = [l for l in out.splitlines() if "resolve_" in l]
    names = {l.split()[-2] for l in lines}
    assert {"resolve_leaf", "resolve_middle", "resolve_outer"} <= names, out
    for l in lines:
        assert "tests/unit/check_resolve.c:" in l, l
    # The leaf carries all the flat time; the callers only cumulative time.
    leaf = [l for l in lines if " resolve_leaf " in l][0]
    assert leaf.split()[0] == "10ms", out
    traces = go_pprof("-traces", PROFILE).stdout
    assert "pid:  1234" in traces, traces
    stack = traces[traces.index("resolve_leaf"):].split()
    assert stack[:3] == ["resolve_leaf", "resolve_middle", "resolve_outer"], traces


TRACE_UNIT = os.path.join(BUILDDIR, "tests", "unit", "check_trace")
SCENARIO = os.path.join(BUILDDIR, "tests", "unit", "out", "scenario.trace")


def test_core_trace_writer_scenario_opens_in_go_tool_trace():
    """The trace writer's unit scenario (two processes, waiting, running and new threads,
    repaired records, CPU samples) parses in the real go tool trace and avoids every trap
    of the format (the independent checker)."""
    import go_trace
    from conftest import GO123, Viewer, go_trace_d, text_of, view_in_both

    if os.path.exists(SCENARIO):
        os.unlink(SCENARIO)
    subprocess.run([TRACE_UNIT], check=True, timeout=60, capture_output=True)
    with open(SCENARIO, "rb") as f:
        data = f.read()
    assert go_trace.check(data, strict_ts=True, strict_start=True) == []
    p = go_trace_d(SCENARIO)
    assert p.returncode == 0, p.stderr
    p = go_trace_d(SCENARIO, GO123)
    assert p.returncode == 0, p.stderr
    s = go_trace.summary(data)
    assert {t["name"] for t in s["tasks"].values()} == {"pprof-test", "static"}, s["tasks"]
    # A lock wait's stack: the waiting function, then its caller as the resolver named it,
    # then the thread's start function (the end of every stack of a state change).
    tr = go_trace.parse(data)
    waits = [[f.fn for f in tr.stacks[ev.stk].frames] for ev in tr.events
             if ev.name == "GoBlockSync"]
    assert waits and all(w == ["pthread_mutex_lock", "lock_caller", "httpd.worker_thread"]
                         for w in waits), waits
    with Viewer(SCENARIO) as v:
        status, html = v.get("/usertasks")
        assert status == 200 and "pprof-test" in text_of(html) and "static" in text_of(html)
        status, html = v.get("/userregions")
        assert status == 200 and "ap_invoke_handler" in text_of(html), text_of(html)
    # Every page of every kind in Go 1.19's and Go 1.23's viewer; the threads that ran are
    # httpd.worker_thread in both (the one that never did is "Inactive" in 1.23).
    view_in_both(SCENARIO)


def test_core_trace_streamed_in_pieces_is_the_same_trace():
    """The writer's output taken piece by piece (as the endpoint streams it) and taken
    whole hold the same events, strings and stacks (check_trace writes both)."""
    import go_trace

    subprocess.run([TRACE_UNIT], check=True, timeout=60, capture_output=True)
    parsed = []
    for name in ("streamed.trace", "whole.trace"):
        with open(os.path.join(BUILDDIR, "tests", "unit", "out", name), "rb") as f:
            data = f.read()
        assert go_trace.check(data, strict_ts=True, strict_start=True) == [], name
        tr = go_trace.parse(data)
        parsed.append(([(ev.name, ev.p, ev.ts, tuple(ev.args), ev.stk) for ev in tr.events],
                       tr.strings, {k: [(fr.pc, fr.fn, fr.file, fr.line) for fr in v.frames]
                                    for k, v in tr.stacks.items()}))
    assert parsed[0] == parsed[1]
    assert len(parsed[0][0]) > 50 * 10
