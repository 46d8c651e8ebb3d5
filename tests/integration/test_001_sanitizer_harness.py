"""The sanitizer pass's check of itself (PPROF_SANITIZE=1 only; skipped otherwise): a
memory error (ASan) or undefined behaviour (UBSan) in a child is reported into the
server's sanitizer/ directory and the harness sees it, so a pass that finds nothing has
looked. The error is in a library built here and loaded through the test module's dlopen
endpoint, never in the module."""
import http.client
import os
import subprocess

import pytest

from conftest import SANITIZE, Httpd, _finish, make_tmpdir

pytestmark = pytest.mark.skipif(not SANITIZE, reason="the sanitizer pass only "
                                "(PPROF_SANITIZE=1)")

# What each sanitizer must catch, the flags that build it, what its report says. ASan
# reports into the server's sanitizer/ directory, UBSan into error_log (see sanitizer_env).
BUGS = {
    # One byte past an 8-byte block.
    "asan": ("""
#include <stdlib.h>
volatile char ppt_sink;
void *ppt_retain_named(size_t n)
{
    char *p = malloc(8);
    ppt_sink = p[8 + (n & 1)];
    free(p);
    return (void *)1;
}
""", ["-fsanitize=address"], "heap-buffer-overflow"),
    # INT_MAX + 2.
    "ubsan": ("""
#include <limits.h>
#include <stddef.h>
volatile int ppt_sink = INT_MAX;
void *ppt_retain_named(size_t n)
{
    ppt_sink = ppt_sink + (int)n;
    return (void *)1;
}
""", ["-fsanitize=undefined", "-fno-sanitize-recover=all"], "signed integer overflow"),
}


@pytest.mark.parametrize("kind", sorted(BUGS))
def test_a_childs_error_is_reported(mpm, kind):
    code, flags, what = BUGS[kind]
    d = make_tmpdir("mod_pprof-it-sanity-")
    src, lib = os.path.join(d, "bug.c"), os.path.join(d, "bug.so")
    with open(src, "w") as f:
        f.write(code)
    p = subprocess.run(["gcc", "-shared", "-fPIC", "-O0", "-g"] + flags + ["-o", lib, src],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    os.chmod(lib, 0o755)
    s = Httpd(mpm, d)
    try:
        s.start()
        assert s.sanitizer_reports() == {}
        try:
            s.get("/pprof-test/dlopen?lib=%s&bytes=2" % lib, timeout=30)
        except (OSError, http.client.HTTPException):
            pass                        # the child ends without an answer
        s.stop()
        reports = s.sanitizer_reports()
        if kind == "asan":
            assert any(what in text and "ppt_retain_named" in text
                       for text in reports.values()), reports
            assert any("sanitizer report" in line for line in s.log_problems())
        else:
            assert any(what in line and "bug.c" in line for line in s.log_problems()), \
                s.error_log()
        # Found as it should be: cleared, so the teardown's check passes.
        for name in reports:
            os.unlink(os.path.join(s.sanitizer_dir, name))
        kept = [line for line in s.error_log().splitlines(True) if what not in line]
        with open(s.error_log_path, "w") as f:
            f.write("".join(kept))
    finally:
        _finish([s], [d])
