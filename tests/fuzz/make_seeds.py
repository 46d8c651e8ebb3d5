#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into corpus/NAME/seed-*: small, valid inputs
of each format, from which libFuzzer mutates. Run again after changing a format; the
corpus also keeps regression inputs (regress-*: what a fuzz run once found), which this
script leaves alone. Formats: core/pp_stacktab.h (records), core/pp_tbuf.h (pp_tb_record),
/proc/PID/maps (proc(5)), proto/pprof_wire.proto (encoded by protoc)."""
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "proto")


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def symbol():
    write("symbol", "post", "0x4a5b10+0x4a5c20+0x7f0012345678")
    write("symbol", "trailing-plus", "0x401000+")
    write("symbol", "bases", "4198400+0o20004000+0b10000000001000000000000+020004000")
    write("symbol", "junk", "0x401000+notanaddress++0x_40_10_00+0x")


def query():
    for name, v in [("int", "30"), ("neg", "-1"), ("plus", "+5"), ("max", "9223372036854775807"),
                    ("float", "0.5"), ("exp", "1e3"), ("inf", "inf"), ("nan", "NaN"),
                    ("hexfloat", "0x1p-2"), ("space", " 5"), ("zero", "-0"),
                    ("underscores", "0x_1_4p0_1"), ("infinity", "-Infinity"),
                    ("pairs", "seconds=%2B1&debug&=1&&de%62ug=2+x"),
                    ("bad-pairs", "a=%zz&b=1;c=2&d=%0&e=%00&f%00=1")]:
        write("query", name, v)


MAPS = """\
55d4c8e00000-55d4c8e2a000 r--p 00000000 fe:00 131090                     /usr/sbin/apache2
55d4c8e2a000-55d4c8e8c000 r-xp 0002a000 fe:00 131090                     /usr/sbin/apache2
55d4c8e8c000-55d4c8eb0000 r--p 0008c000 fe:00 131090                     /usr/sbin/apache2
55d4c9a1c000-55d4c9b7e000 rw-p 00000000 00:00 0                          [heap]
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 
7f3a20a28000-7f3a20a4e000 r--p 00000000 fe:00 264380                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a20a4e000-7f3a20ba3000 r-xp 00026000 fe:00 264380                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a20c10000-7f3a20c2e000 r-xp 00004000 fe:00 400112                     /usr/lib/apache2/modules/mod_pprof.so (deleted)
7f3a20c40000-7f3a20c42000 r-xp 00000000 00:00 0                          [vdso]
7ffd5c8f1000-7ffd5c912000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


def maps():
    write("maps", "apache2", MAPS)
    write("maps", "no-newline", "7f3a20a4e000-7f3a20ba3000 r-xp 00026000 fe:00 264380 /lib/x.so")
    write("maps", "path-with-spaces", "400000-401000 r-xp 00000000 08:01 12 /opt/my lib/a b.so\n")


def stack_record(key, values, pcs):
    return (struct.pack("<QII", key, len(pcs), len(values)) +
            b"".join(struct.pack("<Q", v) for v in values) +
            b"".join(struct.pack("<Q", p) for p in pcs))


def stacktab():
    write("stacktab", "cpu", stack_record(7 | (1 << 32), [3], [0x401000, 0x402000, 0x403000]) +
          stack_record(8, [1], [0x401000]))
    write("stacktab", "heap", stack_record(64, [2, 128, 1, 64], [0x7f3a20a4e100, 0x401234]) +
          stack_record(4096, [1, 4096, 0, 0], []))


KINDS = {"WAKE": 1, "IDLE": 2, "BLOCK": 3, "UNBLOCK": 4, "TASK_BEGIN": 5, "TASK_END": 6,
         "REGION_BEGIN": 7, "REGION_END": 8, "LOG": 9}


def rec(kind, ts, a=0, b=0, text=b"", gen=1):
    """One pp_tb_record as pp_tbuf_put writes it: the header, the text and its NUL, zeros
    up to a multiple of 8."""
    body = text + b"\0"
    size = (32 + len(body) + 7) & ~7
    return struct.pack("<IHHQQQ", gen, KINDS[kind], size, ts, a, b) + body + \
        b"\0" * (size - 32 - len(body))


def trace():
    request = (rec("WAKE", 2000) + rec("TASK_BEGIN", 2010, 1, 0, b"GET") +
               rec("REGION_BEGIN", 2020, 1, 0, b"read_request") +
               rec("REGION_END", 2030, 1, 0, b"read_request") +
               rec("REGION_BEGIN", 2040, 1, 0, b"handler") +
               rec("LOG", 2045, 1, 0, b"uri\0/index.html") +
               rec("BLOCK", 2050, 2, 0, b"apr_thread_mutex_lock 0x401001 0x402003") +
               rec("UNBLOCK", 2060) +
               rec("REGION_END", 2070, 1, 0, b"handler") +
               rec("TASK_END", 2080, 1) + rec("IDLE", 2090))
    write("trace", "request", b"\x01" + request)
    write("trace", "waiting-thread", b"\x01" + rec("BLOCK", 1500, 1, 0, b"poll 0x401005") +
          rec("UNBLOCK", 1600) + rec("IDLE", 1700))
    write("trace", "unmatched", b"\x02" + rec("REGION_END", 1200, 9, 0, b"handler") +
          rec("TASK_END", 1300, 9) + rec("REGION_BEGIN", 1400, 3, 0, b"") +
          rec("TASK_BEGIN", 1500, 3, 0, b"") + rec("TASK_BEGIN", 1600, 3, 0, b"POST"))


def encode(message, text):
    return subprocess.run(["protoc", "--encode=ppwire." + message, "-I", PROTO_DIR,
                           "pprof_wire.proto"], input=text.encode(), capture_output=True,
                          check=True).stdout


def wire():
    """fuzz_wire's first byte: 0 a reply's bytes, 1 a framed reply, 2 a request."""
    cpu = encode("Reply", """
status: OK pid: 4242
mappings { start: 0x55d4c8e2a000 end: 0x55d4c8e8c000 offset: 0x2a000 path: "/usr/sbin/apache2" }
mappings { start: 0x7f3a20a4e000 end: 0x7f3a20ba3000 offset: 0x26000 path: "/lib/libc.so.6" }
counters { name: "dropped" value: 3 } counters { name: "hz" value: 100 }
stacks { key: 0x100000007 values: 12 pcs: 0x55d4c8e2b000 pcs: 0x7f3a20a4e100 }
tags { id: 7 handler: "php-script" vhost: "www.example.com:80" }
""")
    threads = encode("Reply", """
status: OK pid: 4243
threads { tid: 4243 pcs: 0x7f3a20a4e100 answered: true state: 83 name: "apache2"
          role: "worker" status: "writing" client: "127.0.0.1" vhost: "localhost:80"
          request: "GET /x HTTP/1.1" handler: "pprof-test" seconds: 0.25 slot: 3 busy: true }
threads { tid: 4244 answered: false state: 82 name: "apache2" role: "agent" seconds: -1 }
sections { slot: 3 tid: 4243 records: "\\001\\000\\000\\000\\001\\000(\\000" }
samples { ts: 123456789 tid: 4243 pcs: 0x55d4c8e2b000 pcs: 0x55d4c8e2b100 }
""")
    request = encode("Request", 'kind: "heap" op: TAKE gen: 2 hz: 100 deadline_us: 1700000000000000 '
                     'flags: 1')
    write("wire", "reply-cpu", b"\0" + cpu)
    write("wire", "frame-threads", b"\1" + struct.pack("<I", len(threads)) + threads)
    write("wire", "request", b"\2" + request)
    write("wire", "reply-error", b"\0" + encode("Reply", 'status: ERROR error: "no memory"'))


if __name__ == "__main__":
    symbol()
    query()
    maps()
    stacktab()
    trace()
    wire()
