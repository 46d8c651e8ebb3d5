"""bench/php_vm_readv.py: how many process_vm_readv calls mod_pprof_php's CPU samples make
in a real mod_php child whose time goes to an included file's top-level code.

A sample whose newest PHP frame is such code reads that frame in place where the
allocator hooks saw the thread unmap nothing (php_walk.c, GUARDED), else through
process_vm_readv (two calls). This runs bench/php_soak.py's server (prefork, mod_php,
opcache off, so PHP destroys each include's code as it returns), loads /inc.php on three
connections, takes a 6 s CPU profile and counts, with `strace -c -f`, the children's
rt_sigreturn (one per signal handled: the samples, and the dumps' signals) and
process_vm_readv calls over 4 s of it. Needs root and strace (apt-get install strace).

Usage: /usr/bin/python3 bench/php_vm_readv.py   (BUILDDIR: the build tree, default this
one; USE_ZEND_ALLOC=0 in the environment runs PHP on malloc, where every such sample reads
through process_vm_readv.)
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import php_soak  # noqa: E402  (sets up the integration tests' conftest)


def main():
    ph = php_soak.Phase(False, 10)
    ph.httpd.start()
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                ph.httpd.get("/inc.php", timeout=30)
            except Exception:  # noqa: BLE001 -- load only
                pass

    loaders = [threading.Thread(target=load) for _ in range(3)]
    prof = threading.Thread(target=lambda: ph.httpd.get("/debug/pprof/profile?seconds=6",
                                                        timeout=60))
    try:
        for t in loaders:
            t.start()
        time.sleep(1)
        prof.start()
        time.sleep(1)
        kids = subprocess.run(["pgrep", "-P", str(ph.httpd.read_pid()), "-u", "www-data"],
                              capture_output=True, text=True).stdout.split()
        st = subprocess.run(["timeout", "-s", "INT", "4", "strace", "-c", "-f", "-e",
                             "trace=process_vm_readv,rt_sigreturn"]
                            + [a for k in kids for a in ("-p", k)],
                            capture_output=True, text=True)
        calls = {}
        for line in st.stderr.splitlines():
            f = line.split()
            if f and f[-1] in ("process_vm_readv", "rt_sigreturn"):
                calls[f[-1]] = int(f[3])
        print("%d children, 4 s of a CPU profile under /inc.php: %d rt_sigreturn, %d "
              "process_vm_readv" % (len(kids), calls.get("rt_sigreturn", 0),
                                    calls.get("process_vm_readv", 0)))
    finally:
        stop.set()
        for t in loaders:
            t.join()
        if prof.is_alive():
            prof.join()
        ph.httpd.stop()
        subprocess.run(["rm", "-rf", ph.dir])
    return 0


if __name__ == "__main__":
    sys.exit(main())
