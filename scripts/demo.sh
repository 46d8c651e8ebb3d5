#!/usr/bin/env bash
# Build and install mod_pprof, then start a local Apache (127.0.0.1, event MPM) with it and
# a small demo workload, and print the URLs to try. `scripts/demo.sh stop` stops it.
# Run as root on Debian 12.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
demo=/tmp/mod_pprof-demo
port=${PORT:-8080}

stop() {
    if [ -f "$demo/workload.pid" ]; then
        kill "$(cat "$demo/workload.pid")" 2>/dev/null || true
        rm -f "$demo/workload.pid"
    fi
    if [ -f "$demo/httpd.conf" ]; then
        apache2 -f "$demo/httpd.conf" -k stop 2>/dev/null || true
    fi
}
if [ "${1:-}" = stop ]; then
    stop
    echo "demo stopped"
    exit 0
fi

"$top/scripts/setup.sh"
make -C "$top" install >/dev/null
stop
sleep 1

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is busy: run again with PORT=<free port>" >&2
    exit 1
fi
mkdir -p "$demo"
chmod 0755 "$demo"
moddir=$(apxs -q LIBEXECDIR)
confdir=$(apxs -q SYSCONFDIR)/mods-available
cat > "$demo/httpd.conf" <<CONF
ServerRoot $demo
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile $demo/httpd.pid
ErrorLog $demo/error_log
LogLevel info
DefaultRuntimeDir $demo
User www-data
Group www-data
Timeout 120
LoadModule mpm_event_module $moddir/mod_mpm_event.so
LoadModule authz_core_module $moddir/mod_authz_core.so
LoadModule authz_host_module $moddir/mod_authz_host.so
# What an admin does after 'make install': these two files are Debian's a2enmod pair.
Include $confdir/pprof.load
Include $confdir/pprof.conf
# The demo workload: the test module's named hot functions, sleeps and locks.
LoadModule pprof_test_module $top/tests/module/.libs/mod_pprof_test.so
<Location /pprof-test>
    SetHandler pprof-test
</Location>
CONF
apache2 -f "$demo/httpd.conf" -t
apache2 -f "$demo/httpd.conf" -k start
for _ in $(seq 50); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/debug/pprof/" && break
    sleep 0.2
done

# A bounded background workload (30 minutes): CPU in two named functions, sleeps, locks,
# memory kept (for /heap) and memory churned (for /allocs).
(
    for _ in 1 2 3 4; do
        curl -s -o /dev/null "http://127.0.0.1:$port/pprof-test/retain?bytes=4194304"
    done
    end=$((SECONDS + 1800))
    while [ $SECONDS -lt $end ]; do
        curl -s -o /dev/null "http://127.0.0.1:$port/pprof-test/burn?ms=50" &
        curl -s -o /dev/null "http://127.0.0.1:$port/pprof-test/sleep?ms=100" &
        curl -s -o /dev/null "http://127.0.0.1:$port/pprof-test/lock?ms=20" &
        curl -s -o /dev/null "http://127.0.0.1:$port/pprof-test/churn?bytes=65536&count=50" &
        wait
    done
) >/dev/null 2>&1 &
echo $! > "$demo/workload.pid"

url="http://127.0.0.1:$port/debug/pprof"
cat <<MSG

mod_pprof demo: Apache (event MPM) on 127.0.0.1:$port with a demo workload running.
  index:       $url/
  cmdline:     curl -s $url/cmdline | tr '\\0' ' '
  CPU profile: go tool pprof -top $url/profile?seconds=10
               go tool pprof -http=127.0.0.1:8081 $url/profile?seconds=10
  labels:      go tool pprof -tags $url/profile?seconds=5
  heap:        go tool pprof -sample_index=inuse_space -top $url/heap
  allocs:      go tool pprof -top $url/allocs
  threads:     curl -s $url/goroutine?debug=2
  trace:       curl -o trace.out $url/trace?seconds=5 && go tool trace -http=127.0.0.1:8082 trace.out
  symbol:      curl -s -d 0xADDR $url/symbol
  error_log:   $demo/error_log
  stop:        $top/scripts/demo.sh stop
MSG
