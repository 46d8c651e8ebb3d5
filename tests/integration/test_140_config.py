"""Bad directives are configuration errors at apache2 -t, with a clear message."""
import subprocess

import pytest

from conftest import APACHE2


@pytest.mark.parametrize("value", ["0", "1001", "abc", "-5", "10x"])
def test_bad_cpu_rate_fails_config_test(make_httpd, value):
    h = make_httpd(extra_conf='PprofCPURate "%s"\n' % value, start=False)
    p = subprocess.run([APACHE2, "-f", h.conf, "-t"], capture_output=True, text=True,
                       timeout=60, env=h.env)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "PprofCPURate: '%s' is not a rate from 1 to 1000" % value in out, out


def test_missing_cpu_rate_fails_config_test(make_httpd):
    h = make_httpd(extra_conf='PprofCPURate ""\n', start=False)
    p = subprocess.run([APACHE2, "-f", h.conf, "-t"], capture_output=True, text=True,
                       timeout=60, env=h.env)
    assert p.returncode != 0
    assert "PprofCPURate takes one argument" in p.stdout + p.stderr


def test_good_cpu_rate_is_accepted(make_httpd):
    h = make_httpd(extra_conf="PprofCPURate 250\n", start=False)
    p = subprocess.run([APACHE2, "-f", h.conf, "-t"], capture_output=True, text=True,
                       timeout=60, env=h.env)
    assert p.returncode == 0, p.stdout + p.stderr
