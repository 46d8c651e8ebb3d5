"""make install (through apxs -i, honouring DESTDIR) installs the module and Debian's
a2enmod pair, and the shipped configuration is valid for apache2 -t."""
import os
import subprocess
import tempfile

from conftest import APACHE2, BUILDDIR, MODULES_DIR


def make_install(destdir):
    return subprocess.run(["make", "-C", BUILDDIR, "install", "DESTDIR=" + destdir],
                          capture_output=True, text=True, timeout=300)


def apxs(var):
    return subprocess.run(["apxs", "-q", var], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def test_make_install_destdir_and_shipped_config():
    with tempfile.TemporaryDirectory(prefix="mod_pprof-install-") as dest:
        os.chmod(dest, 0o755)
        p = make_install(dest)
        assert p.returncode == 0, p.stdout + p.stderr
        moddir = apxs("LIBEXECDIR")
        confdir = apxs("SYSCONFDIR") + "/mods-available"
        so = dest + moddir + "/mod_pprof.so"
        load = dest + confdir + "/pprof.load"
        conf = dest + confdir + "/pprof.conf"
        assert os.path.isfile(so)
        # The module exports only its module record.
        syms = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True,
                              text=True, timeout=30).stdout.split()
        assert "pprof_module" in syms
        assert not [s for s in syms if s.startswith("pp_")], syms
        with open(load) as f:
            assert f.read().strip() == "LoadModule pprof_module %s/mod_pprof.so" % moddir
        with open(conf) as f:
            text = f.read()
        assert "SetHandler pprof-handler" in text and "Require local" in text
        # The library, its headers and its pkg-config file come along.
        libdirs = [r for r, _, files in os.walk(dest) if "libpprofcore.pc" in files]
        assert libdirs, "libpprofcore.pc not installed"
        assert any("pp_profile.h" in files for _, _, files in os.walk(dest))

        # apache2 -t accepts the installed pair (paths moved into DESTDIR).
        with open(load) as f:
            load_text = f.read().replace(moddir, dest + moddir)
        test_conf = os.path.join(dest, "httpd.conf")
        with open(test_conf, "w") as f:
            f.write("ServerRoot %s\nServerName 127.0.0.1\nListen 127.0.0.1:1\n"
                    "DefaultRuntimeDir %s\nPidFile %s/pid\nErrorLog %s/error_log\n"
                    "LoadModule mpm_event_module %s/mod_mpm_event.so\n"
                    "LoadModule authz_core_module %s/mod_authz_core.so\n"
                    "LoadModule authz_host_module %s/mod_authz_host.so\n%s\n%s\n"
                    % (dest, dest, dest, dest, MODULES_DIR, MODULES_DIR, MODULES_DIR,
                       load_text, text))
        p = subprocess.run([APACHE2, "-f", test_conf, "-t"], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "Syntax OK" in p.stdout + p.stderr
