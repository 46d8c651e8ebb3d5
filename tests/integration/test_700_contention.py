"""/debug/pprof/block and /debug/pprof/mutex: Go's contention profiles for the whole
server (PprofBlockProfileRate, PprofMutexProfileFraction), read by protoc and the real go
tool pprof, against a handler whose threads fight over one mutex for a known time
(mod_pprof_test's fight: each waiter measures its own wait around pthread_mutex_lock).

With both directives at 1 every event is recorded unscaled, so each profile's delay for
the fight's function must match the waiting measured in the test module (within 20%): the
block profile names the waiter (pprof_test_fight_wait, caller of pthread_mutex_lock), the
mutex profile the unlocker (pprof_test_fight_unlock, caller of pthread_mutex_unlock)."""
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import APACHE2, free_port, go_pprof, make_tmpdir, protoc_decode, top_ms
from pprof_output import DecodedProfile
from pprof_http import check_profile_response, check_text_response

BLOCK = "/debug/pprof/block"
MUTEX = "/debug/pprof/mutex"
ON = "PprofBlockProfileRate 1\nPprofMutexProfileFraction 1\n"
FIGHT_RE = re.compile(rb"^fought (\d+) waited ([0-9.]+) ms\n$")
TYPES = [("contentions", "count"), ("delay", "nanoseconds")]


def fight(httpd, threads=4, ms=100):
    r = httpd.get("/pprof-test/fight?threads=%d&ms=%d" % (threads, ms))
    assert r.status == 200, r
    m = FIGHT_RE.match(r.body)
    assert m, r.body
    return float(m.group(2))


def profile_top_ms(httpd, path, sample_index):
    """{function: flat ms} of go tool pprof -top on a downloaded profile, and the output."""
    r = httpd.get(path)
    check_profile_response(r, path.rsplit("/", 1)[1].split("?")[0]
                           if "seconds" not in path else
                           path.rsplit("/", 1)[1].split("?")[0] + "-delta")
    return top_ms(r.body, sample_index)


def decoded(body):
    return DecodedProfile(body, protoc_decode)


def test_defaults_are_valid_empty_profiles(httpd):
    for path, name in ((BLOCK, "block"), (MUTEX, "mutex")):
        r = httpd.get(path)
        check_profile_response(r, name)
        p = decoded(r.body)
        assert p.value_types("sample_type") == TYPES
        assert p.value_types("period_type") == [("contentions", "count")]
        assert p.one(p.m, "period") == 1
        assert not p.m.get("sample"), p.m.get("sample")
    r = httpd.get(BLOCK + "?debug=1")
    check_text_response(r)
    assert r.body == b"--- contention:\ncycles/second=1000000000\n", r.body
    r = httpd.get(MUTEX + "?debug=1")
    check_text_response(r)
    assert r.body == b"--- mutex:\ncycles/second=1000000000\nsampling period=0\n", r.body


def test_index_lists_block_and_mutex(httpd):
    text = httpd.get("/debug/pprof/").body.decode()
    assert "<tr><td>0</td><td><a href='block?debug=1'>block</a></td></tr>" in text
    assert "<tr><td>0</td><td><a href='mutex?debug=1'>mutex</a></td></tr>" in text
    assert "<div class=profile-name>block: </div>" in text
    assert "<div class=profile-name>mutex: </div>" in text


def test_fight_delays_match_real_waiting(make_httpd):
    h = make_httpd(extra_conf=ON)
    waited = fight(h, threads=4, ms=100)
    assert waited > 400, waited       # 0+100+200+300 ms, give or take
    block, out_b = profile_top_ms(h, BLOCK, "delay")
    mutex, out_m = profile_top_ms(h, MUTEX, "delay")
    assert "pprof_test_fight_wait" in block, out_b
    assert "pprof_test_fight_unlock" in mutex, out_m
    print("\nwaited %.1f ms: block %.1f ms, mutex %.1f ms" % (
        waited, block["pprof_test_fight_wait"], mutex["pprof_test_fight_unlock"]))
    assert abs(block["pprof_test_fight_wait"] - waited) <= 0.2 * waited, (waited, out_b)
    assert abs(mutex["pprof_test_fight_unlock"] - waited) <= 0.2 * waited, (waited, out_m)
    # The waiter is not the unlocker, and the unlocker not a waiter.
    assert "pprof_test_fight_unlock" not in block, out_b
    assert "pprof_test_fight_wait" not in [k for k, v in mutex.items() if v > 0.0 and
                                           k == "pprof_test_fight_wait"], out_m
    # Contention counts: 3 waits (the first thread finds the lock free).
    counts, out_c = profile_top_ms(h, BLOCK, "contentions")
    assert counts.get("pprof_test_fight_wait") == 3, out_c
    # Cumulative: a second fight adds up.
    waited2 = waited + fight(h, threads=4, ms=100)
    block, out_b = profile_top_ms(h, BLOCK, "delay")
    assert abs(block["pprof_test_fight_wait"] - waited2) <= 0.2 * waited2, (waited2, out_b)


def test_debug1_text(make_httpd):
    h = make_httpd(extra_conf=ON)
    fight(h, threads=3, ms=50)
    for path, head in ((BLOCK, "--- contention:\ncycles/second=1000000000\n"),
                       (MUTEX, "--- mutex:\ncycles/second=1000000000\nsampling period=1\n")):
        r = h.get(path + "?debug=1")
        check_text_response(r)
        text = r.body.decode()
        assert text.startswith(head), text
        recs = re.findall(r"^(\d+) (\d+) @((?: 0x[0-9a-f]+)+)$", text, re.M)
        assert recs, text
        func = "pprof_test_fight_wait" if path == BLOCK else "pprof_test_fight_unlock"
        assert re.search(r"^#\t0x[0-9a-f]+\t%s\+0x[0-9a-f]+\t" % func, text, re.M), text
        # The index counts the records (the server's own waits may add some meanwhile).
        name = path.rsplit("/", 1)[1]
        index = h.get("/debug/pprof/").body.decode()
        m = re.search(r"<tr><td>(\d+)</td><td><a href='%s\?debug=1'>" % name, index)
        assert m and int(m.group(1)) >= len(recs), (len(recs), index)   # waits go on


def test_seconds_delta(make_httpd):
    h = make_httpd(extra_conf=ON)
    fight(h, threads=3, ms=50)                  # before the window: not in the delta
    box = {}

    def later():
        import time
        time.sleep(0.5)
        box["w"] = fight(h, threads=3, ms=100)

    t = threading.Thread(target=later)
    t.start()
    rows, out = profile_top_ms(h, BLOCK + "?seconds=2", "delay")
    t.join()
    w = box["w"]
    assert abs(rows["pprof_test_fight_wait"] - w) <= 0.2 * w, (w, out)


@pytest.mark.parametrize("directive,value", [("PprofBlockProfileRate", "-1"),
                                             ("PprofBlockProfileRate", "abc"),
                                             ("PprofMutexProfileFraction", "-3"),
                                             ("PprofMutexProfileFraction", "1x")])
def test_bad_values_fail_config_test(make_httpd, directive, value):
    h = make_httpd(extra_conf='%s "%s"\n' % (directive, value), start=False)
    # h.env: under the sanitizers, the ASan runtime preloaded as for every apache2.
    p = subprocess.run([APACHE2, "-f", h.conf, "-t"], capture_output=True, text=True,
                       timeout=60, env=h.env)
    assert p.returncode != 0
    assert "%s: '%s' is not" % (directive, value) in p.stdout + p.stderr


@pytest.mark.parametrize("what,func", [("waitcond", "pprof_test_wait_cond"),
                                       ("waitsem", "pprof_test_wait_sem"),
                                       ("waitrw", "pprof_test_wait_rw")])
def test_block_shows_cond_sem_rwlock_waits(make_httpd, what, func):
    """pthread_cond_timedwait, sem_timedwait and pthread_rwlock_rdlock: the waiter's
    function, with the delay it measured around the one call (within 20%)."""
    h = make_httpd(extra_conf=ON)
    r = h.get("/pprof-test/%s?ms=200" % what)
    assert r.status == 200, r
    m = re.match(rb"^waited ([0-9.]+) ms", r.body)
    assert m, r.body
    waited = float(m.group(1))
    assert waited >= 150, waited
    rows, out = profile_top_ms(h, BLOCK, "delay")
    assert func in rows, out
    assert abs(rows[func] - waited) <= 0.2 * waited, (waited, out)


@pytest.mark.parametrize("mech", ["fcntl", "flock", "sysvsem", "pthread"])
def test_accept_mutex_is_labelled(make_httpd, mpm, mech):
    """prefork and worker serialize accept() with an apr_proc_mutex (two Listen lines, so
    Apache uses it): children waiting for it show with label wait="apr_proc_mutex_lock
    (<mechanism>)", whichever mechanism Mutex selects, and a stack that starts at the
    MPM's caller (none of the hook's frames) and goes down through the MPM. event has no
    accept mutex."""
    if mpm == "event":
        pytest.skip("event: no accept mutex")
    h = make_httpd(extra_conf=ON + "Listen 127.0.0.1:%d\nMutex %s\n" % (free_port(), mech))
    want = "apr_proc_mutex_lock (%s)" % mech
    d = make_tmpdir("mod_pprof-it-cont-")
    f = os.path.join(d, "block.pb.gz")
    for _ in range(10):         # until a child that waited took the mutex
        for _ in range(20):
            r = h.get("/pprof-test/pid")
            assert r.status == 200, r
        with open(f, "wb") as fh:
            fh.write(h.get(BLOCK).body)
        p = go_pprof("-tags", f)
        assert p.returncode == 0, p.stdout + p.stderr
        if want in p.stdout:
            break
    assert want in p.stdout, p.stdout
    traces = go_pprof("-traces", f).stdout
    for block in traces.split("-----------+"):
        if want not in block:
            continue
        # "   1.23ms   frame" then "             frame": the frames, leaf first.
        frames = [line.replace("(inline)", "").split()[-1] for line in block.splitlines()
                  if line.strip() and ":" not in line and not line.startswith("-")]
        assert frames, block
        assert not any(ours in frames[0] for ours in ("hook_proc_lock", "waiter_stack",
                                                      "pp_funwind", "apr_proc_mutex")), block
        assert any("mod_mpm_" + mpm in fr or fr in ("child_main", "listener_thread")
                   for fr in frames), block


def test_after_graceful_restart(make_httpd):
    """The module is unloaded and loaded again: its hooks go and come back with it."""
    h = make_httpd(extra_conf=ON)
    fight(h, threads=2, ms=50)
    h.graceful()
    time.sleep(0.5)             # old children finish
    waited = fight(h, threads=3, ms=100)
    rows, out = profile_top_ms(h, MUTEX, "delay")
    assert "pprof_test_fight_unlock" in rows, out
    # Old children's records may still answer (graceful): at least the new fight's.
    assert rows["pprof_test_fight_unlock"] >= 0.8 * waited, (waited, out)
    rows, out = profile_top_ms(h, BLOCK, "delay")
    assert rows["pprof_test_fight_wait"] >= 0.8 * waited, (waited, out)


def test_mutex_fraction_scales_as_go(make_httpd):
    """PprofMutexProfileFraction 2: the profile is the recorded events times 2 (Go's
    scaleMutexProfile); debug=1 shows them raw, with sampling period=2."""
    h = make_httpd(extra_conf="PprofMutexProfileFraction 2\n")
    for _ in range(20):
        fight(h, threads=4, ms=5)
        text = h.get(MUTEX + "?debug=1").body.decode()
        if re.search(r"^\d+ \d+ @", text, re.M):
            break
    assert text.startswith("--- mutex:\ncycles/second=1000000000\nsampling period=2\n"), text
    for _ in range(3):
        text = h.get(MUTEX + "?debug=1").body.decode()
        p = decoded(h.get(MUTEX).body)
        raw = [(int(d), int(c)) for d, c in re.findall(r"^(\d+) (\d+) @", text, re.M)]
        got = [tuple(int(v) for v in s["value"]) for s in p.m.get("sample", [])]
        if sorted((2 * c, 2 * d) for d, c in raw) == sorted(got):
            break
    assert raw
    assert sorted((2 * c, 2 * d) for d, c in raw) == sorted(got), (raw, got)
