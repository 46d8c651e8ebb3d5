"""Integration-test harness for mod_pprof: real Apache httpd servers under each MPM.

Every server is started from a generated httpd.conf in its own temporary directory, on a
free loopback port, so runs can overlap. Every server is stopped at teardown and its
error_log is checked (check_error_log), so every test run ends by reading error_log.

No pytest-timeout plugin is available: every subprocess and HTTP call has its own timeout.

Environment:
  PPROF_BUILDDIR   build tree holding mod_pprof/.libs/mod_pprof.so and
                   tests/module/.libs/mod_pprof_test.so (default: the source tree)
  PPROF_KEEP_TMP   set to 1 to keep the servers' temporary directories
  PPROF_MPMS       the MPMs to run the per-MPM tests under (default "event worker
                   prefork")
  PPROF_SANITIZE   set to 1 when the build was configured with --enable-sanitizers: every
                   apache2 runs with the ASan runtime preloaded (Debian's apache2 has no
                   ASan of its own, and an instrumented module must find the runtime
                   loaded first) and ASan's reports written to the server's sanitizer/
                   directory (UBSan's go to error_log); any report fails the test at
                   teardown, like a problem in error_log (see sanitizer_env)
  PPROF_CORE_DIR   a directory (mode 1777) for the cores of crashing children: every
                   server gets CoreDumpDirectory there and an unlimited core size (and
                   ASan disable_coredump=0); httpd's fatal-signal handler dumps there.
                   For hunting a rare crash; off by default (cores are large)
"""
import gzip
import html
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.path.abspath(os.environ.get("PPROF_BUILDDIR") or SRCDIR)
PROTO_DIR = os.path.join(SRCDIR, "proto")

MOD_PPROF = os.path.join(BUILDDIR, "mod_pprof", ".libs", "mod_pprof.so")
MOD_PPROF_TEST = os.path.join(BUILDDIR, "tests", "module", ".libs", "mod_pprof_test.so")

APACHE2 = "/usr/sbin/apache2"
MODULES_DIR = "/usr/lib/apache2/modules"
GO = "/usr/bin/go"                      # Debian 12's golang-go: Go 1.19
GO123 = "/usr/lib/go-1.23/bin/go"       # golang-1.23-go from bookworm-backports
PROTOC = "/usr/bin/protoc"

# PPROF_MPMS narrows the MPMs every server-per-MPM test runs under (the sanitizer pass
# runs its lean subset so): a space-separated list, all three by default.
MPMS = os.environ.get("PPROF_MPMS", "event worker prefork").split()

HTTP_TIMEOUT = 30          # seconds, each HTTP call
CMD_TIMEOUT = 60           # seconds, each apache2 -k command
START_TIMEOUT = 30         # seconds until a started server answers
STOP_TIMEOUT = 30          # seconds until a stopped server's parent is gone

MPM_TUNING = {
    "prefork": """\
StartServers 4
MinSpareServers 4
MaxSpareServers 8
MaxRequestWorkers 16
""",
    "worker": """\
StartServers 2
ServerLimit 4
ThreadsPerChild 8
MaxRequestWorkers 32
MinSpareThreads 8
MaxSpareThreads 32
""",
}
MPM_TUNING["event"] = MPM_TUNING["worker"]

# error_log text that always fails a test run.
FATAL_LOG_PATTERNS = [
    "mod_pprof_test: crash",    # the test module's report of a crashing child: its stack
    "Segmentation fault",
    "exit signal",
    "Assertion",
    "AH00052",
    "AH00060",
    "Aborted",
    "double free",
    "corrupted",
    # The sanitizers' (configure --enable-sanitizers, PPROF_SANITIZE=1). UBSan writes to
    # stderr, a child's error_log, whatever its options say when ASan is in the process.
    "runtime error:",
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
]
PPROF_ERROR_RE = re.compile(r"\[pprof:(error|crit|alert|emerg)\]")
PPROF_WARN_RE = re.compile(r"\[pprof:warn\]")


SANITIZE = os.environ.get("PPROF_SANITIZE") == "1"


_asan_runtime = None


def asan_runtime():
    """The ASan runtime that mod_pprof.so was linked against (its path, from ldd)."""
    global _asan_runtime
    if _asan_runtime:
        return _asan_runtime
    p = subprocess.run(["ldd", MOD_PPROF], capture_output=True, text=True, timeout=60)
    for line in p.stdout.splitlines():
        m = re.match(r"\s*libasan\.so\S* => (\S+)", line)
        if m:
            _asan_runtime = m.group(1)
            return _asan_runtime
    pytest.fail("PPROF_SANITIZE=1 but %s is not linked with ASan (configure "
                "--enable-sanitizers): %s%s" % (MOD_PPROF, p.stdout, p.stderr), pytrace=False)


CORE_DIR = os.environ.get("PPROF_CORE_DIR")


def _unlimited_cores():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def sanitizer_env(logdir, env=None):
    """The environment additions that run apache2 under the sanitizers, ASan reporting
    into logdir (one file per process: asan.PID):
      LD_PRELOAD     the ASan runtime first, then whatever env preloads;
      ASAN_OPTIONS   detect_leaks=0: httpd leaves its pools to the exit of each process,
                     so LeakSanitizer would only list those (the unit tests do check for
                     leaks); abort_on_error=0: a finding ends the process with exit code 1
                     instead of a core dump, its report is the log file;
                     allow_user_segv_handler=0: a crash (SIGSEGV, SIGBUS, SIGFPE) is
                     ASan's to report, with the faulting stack, and not httpd's: its
                     fatal-signal handler (sig_coredump) would only log "exit signal";
      UBSAN_OPTIONS  the report with its stack, the process stopped (as the build's
                     -fno-sanitize-recover=all does anyway). With ASan in the process,
                     gcc's UBSan writes its reports to stderr, whatever log_path says: a
                     child's stderr is the error_log, where "runtime error:" fails the run
                     (FATAL_LOG_PATTERNS);
      PHP_INI_SCAN_DIR  empty: mod_php loads no extension (opcache, ctype, ...; the PHP
                     tests use none), because PHP dlopens extensions with RTLD_DEEPBIND,
                     which the ASan runtime refuses (it stops the process: see
                     google/sanitizers#611).
    ASAN_OPTIONS and UBSAN_OPTIONS already in the environment come after ours: theirs win.
    Nothing else is turned off: the heap sampler's GOT-patched malloc calls through to
    ASan's (its real_malloc is the malloc the dynamic linker resolves: the preloaded one)."""
    env = dict(env or {})
    preload = [asan_runtime()] + [x for x in (env.get("LD_PRELOAD") or
                                              os.environ.get("LD_PRELOAD") or "").split()]
    asan = ("detect_leaks=0:abort_on_error=0:allow_user_segv_handler=0:log_path=%s/asan"
            % logdir) + (":disable_coredump=0" if CORE_DIR else "")
    ubsan = "print_stacktrace=1:halt_on_error=1"
    env["LD_PRELOAD"] = " ".join(preload)
    env["ASAN_OPTIONS"] = ":".join(x for x in (asan, os.environ.get("ASAN_OPTIONS")) if x)
    env["UBSAN_OPTIONS"] = ":".join(x for x in (ubsan, os.environ.get("UBSAN_OPTIONS"))
                                    if x)
    env.setdefault("PHP_INI_SCAN_DIR", "")
    return env


def _check_modules():
    missing = [p for p in (MOD_PPROF, MOD_PPROF_TEST) if not os.path.isfile(p)]
    if missing:
        pytest.fail("module(s) not built: %s (build dir %s; set PPROF_BUILDDIR or run "
                    "`make -C %s all check`)" % (", ".join(missing), BUILDDIR, BUILDDIR),
                    pytrace=False)


def free_port():
    """A free loopback TCP port (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tmpdir(prefix="mod_pprof-it-"):
    """A temporary directory that www-data can read (mode 0755)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purposes.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return _parse_stat(f.read())[1] != "Z"
    except OSError:
        return False


def _parse_stat(text):
    """(comm, state, ppid) from a /proc/PID/stat line (comm may hold spaces and parens)."""
    lpar, rpar = text.index("("), text.rindex(")")
    rest = text[rpar + 2:].split()
    return text[lpar + 1:rpar], rest[0], int(rest[1])


class Response:
    """A small HTTP response: status, headers (dict, lower-cased names), body bytes."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<Response %d %s %r %r>" % (self.status, self.reason, self.headers,
                                           self.body[:200])


class Httpd:
    """An Apache httpd instance: writes its httpd.conf and controls it."""

    def __init__(self, mpm, tmpdir, extra_conf="", timeout=60, env=None, tuning=None):
        """tuning: the MPM's directives instead of MPM_TUNING's (the scale tests')."""
        _check_modules()
        if mpm not in MPM_TUNING:
            raise ValueError("unknown MPM %r" % mpm)
        self.mpm = mpm
        self.tuning = MPM_TUNING[mpm] if tuning is None else tuning
        self.dir = os.path.abspath(str(tmpdir))
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.timeout = timeout
        self.extra_conf = extra_conf
        # Extra process environment for apache2 (e.g. USE_ZEND_ALLOC=0 for PHP).
        self.sanitizer_dir = None
        if SANITIZE:
            # Written by the parent (root) and the children (www-data).
            self.sanitizer_dir = os.path.join(self.dir, "sanitizer")
            os.makedirs(self.sanitizer_dir, exist_ok=True)
            os.chmod(self.sanitizer_dir, 0o1777)
            env = sanitizer_env(self.sanitizer_dir, env)
        self.env = dict(os.environ, **(env or {}))
        self.conf = os.path.join(self.dir, "httpd.conf")
        self.pidfile = os.path.join(self.dir, "httpd.pid")
        self.error_log_path = os.path.join(self.dir, "error_log")
        self.access_log_path = os.path.join(self.dir, "access_log")
        self.rundir = os.path.join(self.dir, "run")
        os.makedirs(self.rundir, exist_ok=True)
        os.chmod(self.rundir, 0o755)
        self.allowed_warnings = []
        self.argv = [APACHE2, "-f", self.conf, "-k", "start"]
        self.running = False
        self.parent_pid = None
        self.write_conf()

    # --- configuration ------------------------------------------------------------
    def config_text(self):
        return """\
# Generated by tests/integration/conftest.py
ServerRoot "{dir}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
DefaultRuntimeDir "{rundir}"
PidFile "{pidfile}"
ErrorLog "{error_log}"
LogLevel info
User www-data
Group www-data
Timeout {timeout}
KeepAlive On
DocumentRoot "{dir}"

LoadModule mpm_{mpm}_module {moddir}/mod_mpm_{mpm}.so
LoadModule authz_core_module {moddir}/mod_authz_core.so
LoadModule authz_host_module {moddir}/mod_authz_host.so
LoadModule pprof_module {mod_pprof}
LoadModule pprof_test_module {mod_pprof_test}

{tuning}
LogFormat "%h %l %u %t \\"%r\\" %>s %b %D pid=%P" pprof_it
CustomLog "{access_log}" pprof_it

<Location /debug/pprof>
    SetHandler pprof-handler
    Require local
</Location>
<Location /pprof-test>
    SetHandler pprof-test
</Location>

{extra}
{core}
""".format(dir=self.dir, port=self.port, rundir=self.rundir, pidfile=self.pidfile,
           error_log=self.error_log_path, access_log=self.access_log_path,
           timeout=self.timeout, mpm=self.mpm, moddir=MODULES_DIR, mod_pprof=MOD_PPROF,
           mod_pprof_test=MOD_PPROF_TEST, tuning=self.tuning,
           extra=self.extra_conf,
           core='CoreDumpDirectory "%s"' % CORE_DIR if CORE_DIR else "")

    def write_conf(self):
        with open(self.conf, "w") as f:
            f.write(self.config_text())
        os.chmod(self.conf, 0o644)

    # --- control ------------------------------------------------------------------
    def _apachectl(self, action):
        return subprocess.run([APACHE2, "-f", self.conf, "-k", action],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CMD_TIMEOUT, env=self.env)

    def _fail(self, msg):
        pytest.fail("%s [%s, %s]\n--- error_log ---\n%s" % (msg, self.mpm, self.dir,
                                                           self.error_log()),
                    pytrace=False)

    def read_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _answers(self):
        try:
            r = self.get("/pprof-test/pid", timeout=5)
            return r.status == 200
        except (OSError, http.client.HTTPException):
            return False

    def start(self):
        # Check the configuration first: its errors are clearer than a failed start.
        p = subprocess.run([APACHE2, "-f", self.conf, "-t"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=CMD_TIMEOUT, env=self.env)
        if p.returncode != 0:
            self._fail("apache2 -t failed (%d): %s%s" % (p.returncode, p.stdout, p.stderr))
        p = subprocess.run(self.argv, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=CMD_TIMEOUT, env=self.env,
                           preexec_fn=_unlimited_cores if CORE_DIR else None)
        if p.returncode != 0:
            self._fail("apache2 -k start failed (%d): %s%s" % (p.returncode, p.stdout,
                                                               p.stderr))
        self.running = True
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            pid = self.read_pid()
            if pid and pid_alive(pid) and self._answers():
                self.parent_pid = pid
                if SANITIZE:
                    self._check_sanitized(pid)
                return self
            time.sleep(0.05)
        self._fail("server did not answer on port %d within %ds" % (self.port,
                                                                    START_TIMEOUT))

    def _check_sanitized(self, pid):
        """PPROF_SANITIZE: the parent really runs with the ASan runtime (so does every
        child, a fork of it)."""
        try:
            with open("/proc/%d/maps" % pid) as f:
                maps = f.read()
        except OSError:
            return
        if os.path.basename(asan_runtime()) not in maps:
            self._fail("PPROF_SANITIZE=1 but apache2 (pid %d) has no %s mapped" % (
                pid, asan_runtime()))

    def stop(self):
        if not self.running:
            return
        pid = self.read_pid() or self.parent_pid
        self.running = False
        p = self._apachectl("stop")
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and pid_alive(pid):
            children = self.child_pids(pid)
            for c in [pid] + children:
                try:
                    os.kill(c, signal.SIGKILL)
                except OSError:
                    pass
            self._fail("server (pid %d) did not stop within %ds (stop: %s%s)" % (
                pid, STOP_TIMEOUT, p.stdout, p.stderr))
        if p.returncode != 0:
            self._fail("apache2 -k stop failed (%d): %s%s" % (p.returncode, p.stdout,
                                                              p.stderr))

    def _generations(self):
        # AH00489: "... configured -- resuming normal operations", once per generation.
        return self.error_log().count("resuming normal operations")

    def graceful(self):
        before = self._generations()
        old_children = set(self.child_pids())
        p = self._apachectl("graceful")
        if p.returncode != 0:
            self._fail("apache2 -k graceful failed (%d): %s%s" % (p.returncode, p.stdout,
                                                                  p.stderr))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._generations() > before:
                new = set(self.child_pids()) - old_children
                if new and self._answers():
                    self.parent_pid = self.read_pid() or self.parent_pid
                    return self
            time.sleep(0.05)
        self._fail("no new generation answered within %ds of graceful" % START_TIMEOUT)

    # --- HTTP -----------------------------------------------------------------------
    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        """One request on a fresh connection; never raises on 4xx/5xx."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            send_error = None
            try:
                conn.request(method, path, body=body, headers=dict(headers or {}))
            except (BrokenPipeError, ConnectionResetError) as e:
                # The server may answer (e.g. 413) before it has read the whole body.
                send_error = e
            try:
                resp = conn.getresponse()
            except (http.client.HTTPException, OSError):
                if send_error:
                    raise send_error
                raise
            data = resp.read()
            hdrs = {}
            for k, v in resp.getheaders():
                k = k.lower()
                hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
            return Response(resp.status, resp.reason, hdrs, data)
        finally:
            conn.close()

    def get(self, path, headers=None, timeout=HTTP_TIMEOUT, method="GET"):
        return self.request(method, path, headers=headers, timeout=timeout)

    def head(self, path, headers=None, timeout=HTTP_TIMEOUT):
        return self.request("HEAD", path, headers=headers, timeout=timeout)

    def post(self, path, data, headers=None, timeout=HTTP_TIMEOUT):
        if isinstance(data, str):
            data = data.encode()
        h = {"Content-Type": "application/octet-stream"}
        h.update(headers or {})
        return self.request("POST", path, body=data, headers=h, timeout=timeout)

    # --- inspection -------------------------------------------------------------------
    def error_log(self):
        try:
            with open(self.error_log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def access_log(self):
        try:
            with open(self.access_log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def child_pids(self, parent=None):
        """Live children of the parent process (from /proc/*/stat ppid)."""
        parent = parent or self.read_pid() or self.parent_pid
        out = []
        if not parent:
            return out
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    _, state, ppid = _parse_stat(f.read())
            except (OSError, ValueError):
                continue
            if ppid == parent and state != "Z":
                out.append(int(d))
        return sorted(out)

    def sanitizer_reports(self):
        """{file name: text} of the sanitizers' reports (PPROF_SANITIZE), none if clean."""
        out = {}
        if not self.sanitizer_dir or not os.path.isdir(self.sanitizer_dir):
            return out
        for name in sorted(os.listdir(self.sanitizer_dir)):
            try:
                with open(os.path.join(self.sanitizer_dir, name), errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            if text.strip():
                out[name] = text
        return out

    def log_problems(self):
        """What fails a run (see check_error_log): the first lines of each sanitizer
        report, then the error_log lines."""
        bad = []
        for name, text in self.sanitizer_reports().items():
            lines = text.splitlines()
            bad.append("sanitizer report %s/%s:\n  %s%s" % (
                self.sanitizer_dir, name, "\n  ".join(lines[:60]),
                "\n  ... (%d more lines)" % (len(lines) - 60) if len(lines) > 60 else ""))
        for line in self.error_log().splitlines():
            if any(p in line for p in FATAL_LOG_PATTERNS) or PPROF_ERROR_RE.search(line):
                bad.append(line)
            elif PPROF_WARN_RE.search(line) and not any(w in line
                                                        for w in self.allowed_warnings):
                bad.append(line)
        return bad

    def check_error_log(self):
        bad = self.log_problems()
        if bad:
            pytest.fail("error_log of %s server (%s) has problems:\n%s" % (
                self.mpm, self.error_log_path, "\n".join(bad)), pytrace=False)


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=MPMS, ids=MPMS)
def mpm(request):
    return request.param


def _finish(servers, dirs):
    """Stop every server, then check every error_log; remove temp dirs if all is well."""
    failures = []
    for s in servers:
        try:
            s.stop()
        except BaseException as e:       # pytest.fail raises an OutcomeException
            failures.append(str(e))
    for s in servers:
        problems = s.log_problems()
        if problems:
            failures.append("error_log of %s server (%s) has problems:\n%s" % (
                s.mpm, s.error_log_path, "\n".join(problems)))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    if os.environ.get("PPROF_KEEP_TMP") != "1":
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def httpd(mpm):
    """One started server per (test file, MPM), shared by that file's tests."""
    _check_modules()
    d = make_tmpdir("mod_pprof-it-%s-" % mpm)
    server = Httpd(mpm, d)
    try:
        server.start()
        yield server
    finally:
        _finish([server], [d])


@pytest.fixture
def make_httpd(mpm):
    """Factory for servers with a custom configuration: make_httpd(extra_conf="",
    timeout=60, start=True). Stopped and error_log-checked at teardown."""
    _check_modules()
    servers, dirs = [], []

    def factory(extra_conf="", timeout=60, start=True, mpm_name=None):
        d = make_tmpdir("mod_pprof-it-%s-" % (mpm_name or mpm))
        dirs.append(d)
        s = Httpd(mpm_name or mpm, d, extra_conf=extra_conf, timeout=timeout)
        servers.append(s)
        if start:
            s.start()
        return s

    try:
        yield factory
    finally:
        _finish(servers, dirs)


# --- go tool pprof and protoc helpers ---------------------------------------------------

_go_home = None


def _go_env():
    global _go_home
    if _go_home is None or not os.path.isdir(_go_home):
        _go_home = make_tmpdir("mod_pprof-it-gohome-")
    env = dict(os.environ)
    env["HOME"] = _go_home
    env["PPROF_TMPDIR"] = _go_home
    env["GOCACHE"] = os.path.join(_go_home, "go-build")
    env["GOPATH"] = os.path.join(_go_home, "go")
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = ""
    env.pop("PPROF_BINARY_PATH", None)
    return env


def go_pprof(*args, timeout=120, go=GO):
    """Run `go tool pprof ARGS` (HOME and PPROF_TMPDIR in a temp dir); CompletedProcess."""
    return subprocess.run([go, "tool", "pprof"] + [str(a) for a in args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=_go_env(), timeout=timeout)


TOP_MS_RE = re.compile(r"^\s*([0-9.]+)(ms)?\s+[0-9.]+%\s+[0-9.]+%\s+\S+\s+[0-9.]+%\s+(\S.*?)\s*$")


def top_ms(body, sample_index):
    """({function: flat ms}, the output) of `go tool pprof -top -unit=ms` on a profile's
    bytes, for its sample_index."""
    f = os.path.join(make_tmpdir("mod_pprof-it-top-"), "p.pb.gz")
    with open(f, "wb") as fh:
        fh.write(body)
    p = go_pprof("-top", "-nodecount=1000", "-unit=ms", "-sample_index=" + sample_index, f)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {}
    for line in p.stdout.splitlines():
        m = TOP_MS_RE.match(line)
        if m:
            rows[m.group(3)] = float(m.group(1))
    return rows, p.stdout


def pprof_top(source, timeout=120, go=GO):
    """stdout of `go tool pprof -top -nodecount=1000 SOURCE`; fails on a non-zero exit."""
    p = go_pprof("-top", "-nodecount=1000", source, timeout=timeout, go=go)
    if p.returncode != 0:
        pytest.fail("go tool pprof -top %s failed (%d):\n%s%s" % (
            source, p.returncode, p.stdout, p.stderr), pytrace=False)
    return p.stdout


# --- go tool trace ------------------------------------------------------------------------

def go_trace_d(path, go=GO):
    """`go tool trace -d` (1.19; -d=1 from 1.23 on, where -d takes a level): only parses."""
    flag = "-d=1" if go == GO123 else "-d"
    return subprocess.run([go, "tool", "trace", flag, path], capture_output=True,
                          text=True, env=_go_env(), timeout=120)


def require_go(go):
    if not os.path.exists(go):
        pytest.fail("%s is not installed (scripts/setup.sh installs golang-1.23-go from "
                    "bookworm-backports)" % go, pytrace=False)


def group_pids(pgid):
    """Pids of the live (not zombie) processes in process group pgid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                text = f.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        if rest[0] != "Z" and int(rest[2]) == pgid:
            out.append(int(d))
    return out


class ViewerExited(AssertionError):
    """The viewer ended before it served (a panic while preparing the trace)."""

    def __init__(self, output):
        super().__init__("go tool trace exited: %s" % output)
        self.output = output


def viewer_exit_output(path, go=GO):
    """What a viewer that must end before it serves (a panic while preparing the trace)
    printed. One that serves is closed and fails the test."""
    try:
        v = Viewer(path, go=go)
    except ViewerExited as e:
        return e.output
    v.close()
    pytest.fail("go tool trace (%s) serves %s: it was expected to exit" % (go, path),
                pytrace=False)


class Viewer:
    """`go tool trace -http` of one Go toolchain (GO or GO123) serving one file. Use it as
    a context manager: `go tool trace` execs a child (`trace -http`) that outlives a killed
    `go`, so the viewer runs in a process group of its own, which close() kills whole."""

    def __init__(self, path, go=GO):
        require_go(go)
        self.go = go
        self.port = free_port()
        self.proc = subprocess.Popen([go, "tool", "trace", "-http=127.0.0.1:%d" % self.port,
                                      path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=_go_env(),
                                     start_new_session=True)
        try:
            self._wait_serving()
        except BaseException:
            self.close()
            raise

    def _wait_serving(self):
        until = time.monotonic() + 60
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise ViewerExited(self.proc.stdout.read().decode("utf-8", "replace"))
            try:
                self.get("/")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("go tool trace (%s) did not start serving" % self.go)

    def get(self, path):
        """(status, body text) of path; never raises on an HTTP error status."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path),
                                        timeout=60) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def close(self):
        """Kill the whole group (also when `go` itself is gone) and wait until it is."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc.stdout.close()
        until = time.monotonic() + 10
        while self.processes() and time.monotonic() < until:
            time.sleep(0.02)            # the orphaned `trace` is reaped by init

    def processes(self):
        """Pids of the live processes of the viewer's group."""
        return group_pids(self.proc.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# Pages that shell out to `go tool pprof -svg`: without Graphviz (`dot`) they answer 500,
# on real Go traces too (FORMAT.md section 9).
GRAPHVIZ_PAGES = {"/io", "/block", "/sched", "/syscall", "/regionio", "/regionblock",
                  "/regionsched", "/regionsyscall"}
_LINK_RE = re.compile(r"""(?:href|src)\s*=\s*"([^"]*)"|url = '(/jsontrace\?[^']*)'""")


def page_kind(url):
    """The kind of a viewer URL: its path and query keys (with the values of `view` and
    `raw`), e.g. "/jsontrace?goid", "/jsontrace?view=thread", "/io?raw=1"."""
    path, _, query = url.partition("?")
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    keys = ["%s=%s" % (k, q[k][0]) if k in ("view", "raw") else k for k in sorted(q)]
    return path + ("?" + "&".join(keys) if keys else "")


def _links(body):
    for m in _LINK_RE.finditer(body):
        url = html.unescape(m.group(1) or m.group(2)).partition("#")[0]
        if url.startswith("/") and not url.startswith("//") and not url.startswith("/static/"):
            yield url


def crawl(viewer, per_kind=3):
    """Every page of the viewer reachable by links from /, at most per_kind URLs of each
    kind (page_kind): `/trace?Q` pages with the `/jsontrace?Q` data they load, goroutine,
    task and region pages with the goid/taskid/focustask views they link to. Every page
    must answer 200, but the Graphviz ones 200 or 500. Returns {url: (status, body)}."""
    pages, seen, queue = {}, {}, ["/"]
    while queue:
        url = queue.pop(0)
        kind = page_kind(url)
        if url in pages or seen.get(kind, 0) >= per_kind:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        status, body = viewer.get(url)
        pages[url] = (status, body)
        if status == 200 and not kind.startswith("/jsontrace") and "raw=1" not in kind:
            queue.extend(u for u in _links(body) if u not in pages)
    bad = ["%s: %d %s" % (u, st, body[:300]) for u, (st, body) in sorted(pages.items())
           if st != 200 and not (st == 500 and u.partition("?")[0] in GRAPHVIZ_PAGES)]
    assert not bad, "go tool trace (%s) pages failed:\n%s" % (viewer.go, "\n".join(bad))
    return pages


def crawled_kinds(pages):
    return {page_kind(u) for u in pages}


def view_trace(path, go, per_kind=3):
    """Open the trace file path in go's viewer and crawl it (crawl: every page 200 but the
    Graphviz ones), checking that every kind of page the trace calls for was reached: the
    index, goroutines (a group and a goroutine's view), tasks and regions (a type, a
    task's and a focused task's view) when it has some, MMU, the proc view, and in 1.23+
    the thread view. Returns {url: (status, body)}."""
    import go_trace

    with open(path, "rb") as f:
        s = go_trace.summary(f.read())
    with Viewer(path, go=go) as v:
        pages = crawl(v, per_kind)
    kinds = crawled_kinds(pages)
    special = ("goid", "taskid", "focustask", "view=thread")
    want = {
        "index, goroutines, tasks, regions, MMU": {"/", "/goroutines", "/usertasks",
                                                   "/userregions", "/mmu"} <= kinds,
        "proc view": any(k.startswith("/jsontrace") and not any(x in k for x in special)
                         for k in kinds),
        "goroutine group": not s["goroutines"] or any(k.startswith("/goroutine?")
                                                     for k in kinds),
        "goroutine view": not s["goroutines"] or "/jsontrace?goid" in kinds,
        "thread view": go != GO123 or "/jsontrace?view=thread" in kinds,
        "task pages": not s["tasks"] or {"/usertask?type", "/jsontrace?taskid",
                                         "/jsontrace?focustask"} <= kinds,
        "region type": not s["regions"] or "/userregion?pc&type" in kinds,
    }
    missing = [k for k, ok in want.items() if not ok]
    assert not missing, "%s: %s not reached in the %s viewer (crawled: %s)" % (
        path, missing, go, sorted(kinds))
    return pages


def goroutine_groups(pages):
    """{name: count} of the groups on a Go 1.23+ /goroutines page; "" is the group of
    goroutines named by no stack, '(Inactive, no stack trace sampled)'."""
    rows = re.findall(r'<a href="/goroutine\?name=([^"]*)">.*?</a></code></td>\s*<td>(\d+)</td>',
                      pages["/goroutines"][1], re.S)
    return {urllib.parse.unquote(html.unescape(n)): int(c) for n, c in rows}


def view_in_both(path, thread_name="httpd.worker_thread", per_kind=3):
    """Go 1.19's and Go 1.23's viewer on the trace file path, every page of every kind
    (view_trace). Both name the goroutines thread_name: 1.19 by their creation, 1.23 by
    the stacks of their state changes, so there every goroutine that ran is in that group
    and only those that never ran (no state change) are '(Inactive, ...)'. Returns
    {go: pages}."""
    import go_trace

    out = {go: view_trace(path, go, per_kind) for go in (GO, GO123)}
    assert thread_name in text_of(out[GO]["/goroutines"][1])
    with open(path, "rb") as f:
        tr = go_trace.parse(f.read())
    created = {ev.args[0] for ev in tr.events if ev.name == "GoCreate"}
    ran = {ev.g for ev in tr.events if ev.name in go_trace.STARTS}
    want = {thread_name: len(ran)}
    if created - ran:
        want[""] = len(created - ran)
    assert goroutine_groups(out[GO123]) == want, (goroutine_groups(out[GO123]), want)
    return out


def text_of(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", html))


def protoc_decode(gz_bytes, timeout=60):
    """Text form of a gzipped perftools.profiles.Profile, decoded by protoc."""
    raw = gzip.decompress(gz_bytes)
    p = subprocess.run([PROTOC, "--decode=perftools.profiles.Profile", "-I", PROTO_DIR,
                        "profile.proto"], input=raw, capture_output=True,
                       timeout=timeout)
    if p.returncode != 0:
        pytest.fail("protoc --decode failed (%d): %s" % (
            p.returncode, p.stderr.decode(errors="replace")), pytrace=False)
    return p.stdout.decode("utf-8", "replace")


@pytest.fixture(scope="session", autouse=True)
def _go_home_cleanup():
    yield
    if _go_home and os.environ.get("PPROF_KEEP_TMP") != "1":
        shutil.rmtree(_go_home, ignore_errors=True)
