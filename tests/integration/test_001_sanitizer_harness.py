"""The sanitizer pass's check of itself (PPROF_SANITIZE=1 only; skipped otherwise): a
memory error in a child is reported by ASan into the server's sanitizer/ directory and the
harness sees it, so a pass that finds nothing has looked. The error is in a library built
here and loaded through the test module's dlopen endpoint, never in the module."""
import os
import subprocess

import pytest

from conftest import SANITIZE, Httpd, _finish, make_tmpdir

pytestmark = pytest.mark.skipif(not SANITIZE, reason="the sanitizer pass only "
                                "(PPROF_SANITIZE=1)")

# Reads one byte past an 8-byte block: a heap-buffer-overflow for ASan.
OVERFLOW_C = r"""
#include <stdlib.h>
volatile char ppt_sink;
void *ppt_retain_named(size_t n)
{
    char *p = malloc(8);
    ppt_sink = p[8 + (n & 1)];
    free(p);
    return (void *)1;
}
"""


def test_a_childs_memory_error_is_reported(mpm):
    d = make_tmpdir("mod_pprof-it-sanity-")
    src, lib = os.path.join(d, "overflow.c"), os.path.join(d, "overflow.so")
    with open(src, "w") as f:
        f.write(OVERFLOW_C)
    p = subprocess.run(["gcc", "-shared", "-fPIC", "-O0", "-g", "-fsanitize=address", "-o",
                        lib, src], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    os.chmod(lib, 0o755)
    s = Httpd(mpm, d)
    try:
        s.start()
        assert s.sanitizer_reports() == {}
        try:
            s.get("/pprof-test/dlopen?lib=%s&bytes=2" % lib, timeout=30)
        except OSError:
            pass                        # the child ends without an answer
        s.stop()
        reports = s.sanitizer_reports()
        assert any("heap-buffer-overflow" in text and "ppt_retain_named" in text
                   for text in reports.values()), reports
        assert any("sanitizer report" in line for line in s.log_problems())
        # Found as it should be: cleared, so the teardown's check passes.
        for name in reports:
            os.unlink(os.path.join(s.sanitizer_dir, name))
    finally:
        _finish([s], [d])
