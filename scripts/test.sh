#!/usr/bin/env bash
# Set up (as scripts/setup.sh), then run the whole test suite: the core's unit tests
# (Check), make distcheck, and the integration tests against Debian's real apache2 under
# every MPM. The last line is "N passed, N failed". Run as root on Debian 12.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/scripts/setup.sh" || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
status=0

echo "== unit tests (Check)"
make -j"$(nproc)" check >/tmp/mod_pprof-unit.out 2>&1
unit_rc=$?
for log in tests/unit/check_*.log; do
    [ -f "$log" ] || continue
    # "100%: Checks: 5, Failures: 0, Errors: 0"
    line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "  $(basename "$log" .log): no summary (crashed?)"
        failed=$((failed + 1))
        continue
    fi
    n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    echo "  $(basename "$log" .log): $line"
    passed=$((passed + n - f - e))
    failed=$((failed + f + e))
done
if [ $unit_rc -ne 0 ]; then
    status=1
    grep -hE ':[FE]:' tests/unit/check_*.log || tail -n 30 /tmp/mod_pprof-unit.out
fi

echo "== make distcheck"
if make distcheck >/tmp/mod_pprof-distcheck.out 2>&1; then
    echo "  distcheck: ok"
    passed=$((passed + 1))
else
    echo "  distcheck: FAILED (tail of /tmp/mod_pprof-distcheck.out follows)"
    tail -n 30 /tmp/mod_pprof-distcheck.out
    failed=$((failed + 1))
    status=1
fi

echo "== integration tests (pytest, real apache2: event, worker, prefork)"
junit=/tmp/mod_pprof-junit.xml
rm -f "$junit"
(cd tests/integration && PPROF_BUILDDIR="$top" /usr/bin/python3 -m pytest -q -rfE \
    --junitxml="$junit" ${PYTEST_ARGS:-})
py_rc=$?
# pytest exits 5 when it ran no test at all: that is a failure here.
if [ $py_rc -ne 0 ]; then
    status=1
fi
if [ -f "$junit" ]; then
    read -r t f e s < <(/usr/bin/python3 - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
tot = lambda k: sum(int(x.get(k, 0)) for x in suites)
print(tot("tests"), tot("failures"), tot("errors"), tot("skipped"))
PY
)
    passed=$((passed + t - f - e - s))
    failed=$((failed + f + e))
    if [ "$t" -eq 0 ]; then
        failed=$((failed + 1))
    fi
else
    failed=$((failed + 1))
fi
if [ $status -ne 0 ] && [ $failed -eq 0 ]; then
    failed=1
fi
echo "$passed passed, $failed failed"
exit $status
