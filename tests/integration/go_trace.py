#!/usr/bin/env python3
"""go_trace.py - strict, independent checker for Go 1.19 execution traces ("v1" format).

Written from the format notes in shared/docs/go-trace/FORMAT.md (sections 2-9, 11, 12.3);
pure Python 3 standard library. Public API:

    parse(data: bytes) -> Trace          wire-level decoding; raises TraceError
    check(data: bytes, producer_rules=True, strict_ts=False, strict_start=False) -> list[str]
                                         every rule violation found ([] = no trap hit)
    summary(data: bytes) -> dict         counts for tests (see summary())
    TraceError                           malformed input (header, varint, framing, ...)

Rule families (one function each, in the order check() runs them):
    _check_layout         first non-string record is EvBatch; EvBatch inline; blocks <= 2048
                          bytes; trace not empty
    _check_frequency      EvFrequency present and > 0 (exactly one: producer rule)
    _check_event_types    producer rules: no EvGoInSyscall, no runtime-only event types
    _check_strings        string ids used by frames, task/region names, log keys, labels
    _check_stacks         stack ids referenced by events defined, no duplicate stack ids,
                          one (function, file, line) per PC
    _check_goroutine_stacks  every GoCreate's start stack: non-zero, defined, non-empty,
                          no PC 0
    _check_per_p_time     per-P timestamps (P's chunks in file order) never go back;
                          strictly increasing with strict_ts=True
    _check_sysblock       GoSysBlock immediately followed by ProcStop on that P
    _check_cpu_samples    sample P is -1 or a P that has a batch (producer rule: sample g
                          is 0 or a created goroutine)
    _merge                the 1.19 merge (per-P queues + goroutine seq/state, smallest
                          ready timestamp), merged timestamps non-decreasing, GoSysExit
                          real ticks (stray exit, before its block, after the next start)
    _check_states         section 8 (ProcStart/ProcStop, goroutine state machine, tasks,
                          regions, GC pairing), annotations on a running created goroutine,
                          UserRegion stacks, goroutines still running at the end, no CPU
                          sample naming a goroutine before its GoCreate
    _check_gomaxprocs     exactly one EvGomaxprocs (more: producer rule); goroutines of
                          the initial dump get their GoWaiting/GoInSyscall before it
    _check_insyscall      a GoInSyscall's P stops before that goroutine's GoSysExit
    _check_start_time     12.3 items 9 and 12: with a goroutine running (or in a syscall)
                          in the initial dump, the first event Go 1.23+ keep is not at the
                          trace's time 0 (their viewer panics: startRunningTime); with
                          strict_start=True, nothing but the dump's GoCreates within 1 ns
                          of the earliest of them (CPU samples by real ticks)
    _check_names          producer rule, 12.3 item 10: Go 1.23+ name a goroutine as 1.19
                          does (the outermost frame of its first stacked state change, or
                          of its creation stack, is its start function)
    _check_threads        producer rule, 12.3 item 11: no ProcStart on thread 0

"Producer rules" (producer_rules=True, the default) are stricter than what real Go
traces satisfy: the Go runtime legitimately writes EvGoInSyscall, GC events,
GoStartLocal & co, may write EvGomaxprocs again when GOMAXPROCS changes, and can see
region ends whose start predates the trace. A non-Go producer (our C trace writer) has
no reason to do any of that, so check() flags it by default; pass producer_rules=False
for traces written by the Go runtime (real-go119-*.trace).

strict_ts=True also demands strictly increasing per-P timestamps (Go's runtime bumps
equal ticks and the 1.23+ converter nudges ties by 1 ns). It is off by default because
FORMAT.md section 11 lists the equal-timestamp variant `dup-ts` as accepted by every reader.

strict_start=True demands 12.3 item 9 as a writer should keep it, not only where it
breaks a viewer: the dump's GoCreates alone on the trace's earliest tick, everything else
at least 1 ns (as Go 1.23+ convert ticks) after them. It is off by
default because `rd-late-start` (a ProcStart first, no goroutine running in the dump)
opens in every viewer.

Usage: python3 go_trace.py [--no-producer-rules] [--strict-ts] [--strict-start] [--summary]
       FILE...
(exit status 1 if any file has a violation).
"""
import heapq
import sys
from collections import Counter, defaultdict, deque

HEADER = b"go 1.19 trace\x00\x00\x00"
U64_MAX = (1 << 64) - 1
NO_P = -1                       # "no P": 2^64-1 on the wire
MAX_PREFIXED_BLOCK = 2048       # limit of the 1.23+ readers (section 2.2)
MAX_STACK_FRAMES = 1000         # 1.19 limit (section 5)
MAX_STRING_LEN = 1000000        # 1.19 limit (section 2.3)

# --- event table (section 6) -----------------------------------------------------------
# type -> (name, wire argument count incl. delta and stack (None = variable), has stack,
#          timed)
EV_STRING = 37
EVENTS = {
    1: ("Batch", 2, False, False),
    2: ("Frequency", 1, False, False),
    3: ("Stack", None, False, False),
    4: ("Gomaxprocs", 3, True, True),
    5: ("ProcStart", 2, False, True),
    6: ("ProcStop", 1, False, True),
    7: ("GCStart", 3, True, True),
    8: ("GCDone", 1, False, True),
    9: ("GCSTWStart", 2, False, True),
    10: ("GCSTWDone", 1, False, True),
    11: ("GCSweepStart", 2, True, True),
    12: ("GCSweepDone", 3, False, True),
    13: ("GoCreate", 4, True, True),
    14: ("GoStart", 3, False, True),
    15: ("GoEnd", 1, False, True),
    16: ("GoStop", 2, True, True),
    17: ("GoSched", 2, True, True),
    18: ("GoPreempt", 2, True, True),
    19: ("GoSleep", 2, True, True),
    20: ("GoBlock", 2, True, True),
    21: ("GoUnblock", 4, True, True),
    22: ("GoBlockSend", 2, True, True),
    23: ("GoBlockRecv", 2, True, True),
    24: ("GoBlockSelect", 2, True, True),
    25: ("GoBlockSync", 2, True, True),
    26: ("GoBlockCond", 2, True, True),
    27: ("GoBlockNet", 2, True, True),
    28: ("GoSysCall", 2, True, True),
    29: ("GoSysExit", 4, False, True),
    30: ("GoSysBlock", 1, False, True),
    31: ("GoWaiting", 2, False, True),
    32: ("GoInSyscall", 2, False, True),
    33: ("HeapAlloc", 2, False, True),
    34: ("HeapGoal", 2, False, True),
    35: ("TimerGoroutine", 1, False, False),
    36: ("FutileWakeup", 1, False, True),
    EV_STRING: ("String", None, False, False),
    38: ("GoStartLocal", 2, False, True),
    39: ("GoUnblockLocal", 3, True, True),
    40: ("GoSysExitLocal", 3, False, True),
    41: ("GoStartLabel", 4, False, True),
    42: ("GoBlockGC", 2, True, True),
    43: ("GCMarkAssistStart", 2, True, True),
    44: ("GCMarkAssistDone", 1, False, True),
    45: ("UserTaskCreate", 5, True, True),
    46: ("UserTaskEnd", 3, True, True),
    47: ("UserRegion", 5, True, True),
    48: ("UserLog", 4, True, True),
    49: ("CPUSample", 5, True, True),
}
EV = {name: typ for typ, (name, _, _, _) in EVENTS.items()}   # "GoStart" -> 14

BLOCKING = {"GoBlock", "GoBlockSend", "GoBlockRecv", "GoBlockSelect", "GoBlockSync",
            "GoBlockCond", "GoBlockNet", "GoSleep", "GoBlockGC"}
STARTS = {"GoStart", "GoStartLabel", "GoStartLocal"}
# events that end the current goroutine's execution on its P (section 4)
STOPS = {"GoEnd", "GoStop", "GoSched", "GoPreempt", "GoSysBlock"} | BLOCKING
ANNOTATIONS = {"UserTaskCreate", "UserTaskEnd", "UserRegion", "UserLog"}
GC_EVENTS = {"GCStart", "GCDone", "GCSTWStart", "GCSTWDone", "GCSweepStart", "GCSweepDone",
             "GCMarkAssistStart", "GCMarkAssistDone", "GoBlockGC"}
# written by the Go runtime, of no use to a non-Go producer (section 6)
RUNTIME_ONLY = GC_EVENTS | {"FutileWakeup", "TimerGoroutine", "GoStartLocal",
                            "GoUnblockLocal", "GoSysExitLocal"}

DEAD, RUNNABLE, RUNNING, WAITING = "dead", "runnable", "running", "waiting"


class TraceError(Exception):
    """Malformed trace: the file cannot be decoded record by record."""


# --- parsed representation -------------------------------------------------------------

class Record:
    """One record of the file.

    type, name    event type number and name ("GoStart")
    offset        file offset of the header byte
    form          "inline", "prefixed" (length-prefixed argument block) or "string"
    block_len     L of a length-prefixed block (else None)
    raw           the wire arguments in order (timed events: raw[0] is the delta)
    timed         True for timed events (they belong to a chunk)
    p             P of the enclosing chunk (-1 = no P; 0 if there is no chunk yet)
    chunk         index into Trace.chunks (None before the first EvBatch / untimed)
    ts            timed events: absolute ticks (chunk ticks + the deltas so far)
    g             goroutine the reader attributes the event to (section 4); for CPUSample
                  the sampled goroutine
    stk           stack id argument (0 = none) of events whose table entry has a stack
    args          the remaining arguments: without delta and stack
                  (GoCreate: [g, new stack]; GoStart: [g, seq]; CPUSample: [real ticks,
                  p, g]; UserRegion: [task, mode, name id]; ...)
    value         EvString: the bytes; UserLog: the message bytes
    """
    __slots__ = ("type", "name", "offset", "form", "block_len", "raw", "timed", "p",
                 "chunk", "ts", "g", "stk", "args", "value")

    def __init__(self, typ, offset, form, block_len, raw):
        self.type = typ
        self.name = EVENTS[typ][0]
        self.offset = offset
        self.form = form
        self.block_len = block_len
        self.raw = raw
        self.timed = False
        self.p = None
        self.chunk = None
        self.ts = None
        self.g = None
        self.stk = 0
        self.args = []
        self.value = None

    def __repr__(self):
        return "<%s>" % describe(self)


class Frame:
    __slots__ = ("pc", "fn_id", "file_id", "line", "fn", "file")

    def __init__(self, pc, fn_id, file_id, line, strings):
        self.pc, self.fn_id, self.file_id, self.line = pc, fn_id, file_id, line
        self.fn = strings.get(fn_id)
        self.file = strings.get(file_id)

    def __repr__(self):
        return "Frame(pc=0x%x, %s %s:%d)" % (self.pc, self.fn, self.file, self.line)


class Stack:
    __slots__ = ("id", "frames", "offset")

    def __init__(self, sid, frames, offset):
        self.id, self.frames, self.offset = sid, frames, offset


class Chunk:
    __slots__ = ("p", "ticks", "offset", "events")

    def __init__(self, p, ticks, offset):
        self.p, self.ticks, self.offset, self.events = p, ticks, offset, []


class Trace:
    """Result of parse().

    records      every record in file order (strings included)
    events       timed events in file order
    chunks       [Chunk(p, ticks, offset, events)] in file order
    ps           set of P ids that have an EvBatch
    strings      {id: str}; string_offsets {id: offset}
    stacks       {id: Stack(id, [Frame(pc, fn_id, file_id, line, fn, file)], offset)}
                 (records with id 0 are not stored; n = 0 gives an empty frame list)
    stack_dups   [(id, first offset, duplicate offset)]
    frequency    value of the last EvFrequency (None if absent)
    frequencies  the EvFrequency records
    """

    def __init__(self):
        self.records, self.events, self.chunks = [], [], []
        self.ps = set()
        self.strings, self.string_offsets = {}, {}
        self.stacks, self.stack_dups = {}, []
        self.frequency, self.frequencies = None, []

    def by_p(self):
        """{p: [events of p in file order]}: the reader's per-P queues (no CPU samples)."""
        q = defaultdict(list)
        for ev in self.events:
            if ev.name != "CPUSample":
                q[ev.p].append(ev)
        return q


def signed_p(v):
    return NO_P if v == U64_MAX else v


def describe(ev):
    """Short text for an event: 'GoStart g=1 seq=1 (P 0, offset 0x21, ts 1004)'."""
    n, a = ev.name, ev.args
    detail = ""
    if n == "GoCreate":
        detail = " g=%d" % a[0]
    elif n in ("GoStart", "GoStartLabel", "GoUnblock"):
        detail = " g=%d seq=%d" % (a[0], a[1])
    elif n == "GoSysExit":
        detail = " g=%d seq=%d" % (a[0], a[1])
    elif n in ("GoStartLocal", "GoUnblockLocal", "GoSysExitLocal", "GoWaiting",
               "GoInSyscall"):
        detail = " g=%d" % a[0]
    elif n in ("UserTaskCreate", "UserTaskEnd"):
        detail = " task=%d" % a[0]
    elif n == "UserRegion":
        detail = " task=%d %s" % (a[0], {0: "start", 1: "end"}.get(a[1], "mode=%d" % a[1]))
    elif n in STOPS or n == "GoSysCall":
        detail = " (g %d)" % ev.g if ev.g is not None else ""
    if not ev.timed:
        return "%s%s (offset 0x%x)" % (n, detail, ev.offset)
    return "%s%s (P %d, offset 0x%x, ts %d)" % (n, detail, ev.p, ev.offset, ev.ts)


# --- wire decoding (sections 1, 2) -----------------------------------------------------

class _Reader:
    def __init__(self, data, pos):
        self.data, self.pos = data, pos

    def byte(self, what):
        if self.pos >= len(self.data):
            raise TraceError("truncated %s at offset 0x%x" % (what, self.pos))
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uvarint(self, what="value"):
        start, v = self.pos, 0
        for i in range(10):
            if self.pos >= len(self.data):
                raise TraceError("truncated varint (%s) at offset 0x%x" % (what, start))
            b = self.data[self.pos]
            self.pos += 1
            v |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if v > U64_MAX:
                    raise TraceError("bad varint (%s) at offset 0x%x: more than 64 bits"
                                     % (what, start))
                return v
        raise TraceError("bad varint (%s) at offset 0x%x: more than 10 bytes" % (what, start))

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise TraceError("truncated %s at offset 0x%x: want %d bytes, have %d"
                             % (what, self.pos, n, len(self.data) - self.pos))
        b = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return b


def parse(data):
    """Decode a whole trace (bytes) into a Trace. Raises TraceError on a bad header, a bad
    or truncated varint, an unknown event type, a wrong argument count or block length,
    EvString rules (id 0, duplicate id, length 0 or > 1e6) and EvStack arity."""
    data = bytes(data)
    if data[:len(HEADER)] != HEADER:
        raise TraceError("bad header %r: want exactly %r (16 bytes)" % (data[:16], HEADER))
    tr = Trace()
    r = _Reader(data, len(HEADER))
    cur_chunk = None
    cur_p, cur_ts, cur_g = 0, 0, 0
    last_g = {}                  # P -> goroutine running there (kept across chunks)
    while r.pos < len(data):
        off = r.pos
        hdr = r.byte("record")
        typ, nbits = hdr & 0x3F, hdr >> 6
        if typ not in EVENTS:
            hint = ""
            if typ == 0 and off == len(HEADER):
                hint = " (header longer than 16 bytes? it must end with exactly 3 NULs)"
            raise TraceError("unknown event type %d at offset 0x%x%s" % (typ, off, hint))
        name, want, has_stack, timed = EVENTS[typ]
        if typ == EV_STRING:
            _parse_string(r, tr, off)
            continue
        if nbits < 3:
            form, block_len = "inline", None
            raw = [r.uvarint(name + " argument") for _ in range(nbits + 1)]
        else:
            form = "prefixed"
            block_len = r.uvarint(name + " length")
            end = r.pos + block_len
            if end > len(data):
                raise TraceError("truncated %s at offset 0x%x: argument block of %d bytes "
                                 "runs past the end of the file" % (name, off, block_len))
            raw = []
            while r.pos < end:
                raw.append(r.uvarint(name + " argument"))
            if r.pos != end:
                raise TraceError("%s at offset 0x%x has wrong length: block of %d bytes, "
                                 "varints use %d" % (name, off, block_len, r.pos - end + block_len))
        rec = Record(typ, off, form, block_len, raw)
        if name == "UserLog":
            n = r.uvarint("UserLog message length")
            if n > MAX_STRING_LEN:
                raise TraceError("UserLog at offset 0x%x: message length %d > 1e6" % (off, n))
            rec.value = r.take(n, "UserLog message")
        if name == "Stack":
            _parse_stack(rec, tr)
        elif len(raw) != want:
            raise TraceError("%s has wrong number of arguments at offset 0x%x: want %d, got %d%s"
                             % (name, off, want, len(raw), " (events with 4 or more arguments "
                                "must be length-prefixed)" if want >= 4 else ""))
        tr.records.append(rec)

        if name == "Batch":
            last_g[cur_p] = cur_g
            cur_p, cur_ts = signed_p(raw[0]), raw[1]
            cur_g = last_g.get(cur_p, 0)
            cur_chunk = Chunk(cur_p, cur_ts, off)
            tr.chunks.append(cur_chunk)
            tr.ps.add(cur_p)
            rec.args = [cur_p, cur_ts]
            continue
        if name == "Frequency":
            tr.frequency = raw[0]
            tr.frequencies.append(rec)
            rec.args = list(raw)
            continue
        if not timed:                       # TimerGoroutine, Stack
            if name != "Stack":
                rec.args = list(raw)
            continue

        rec.timed = True
        rec.p = cur_p
        rec.chunk = len(tr.chunks) - 1 if cur_chunk is not None else None
        cur_ts += raw[0]
        rec.ts = cur_ts
        if has_stack:
            rec.stk, rec.args = raw[-1], raw[1:-1]
        else:
            rec.args = raw[1:]
        rec.g = cur_g
        if name in STARTS:
            cur_g = rec.g = rec.args[0]
        elif name in STOPS:
            cur_g = 0
        elif name in ("GoSysExit", "GoSysExitLocal", "GoWaiting", "GoInSyscall"):
            rec.g = rec.args[0]
        elif name in ("GCStart", "GCDone", "GCSTWStart", "GCSTWDone"):
            rec.g = 0
        elif name == "CPUSample":
            rec.g = rec.args[2]
        if cur_chunk is not None:
            cur_chunk.events.append(rec)
        tr.events.append(rec)
    _resolve_frames(tr)
    return tr


def _parse_string(r, tr, off):
    sid = r.uvarint("EvString id")
    n = r.uvarint("EvString length")
    if sid == 0:
        raise TraceError("EvString at offset 0x%x has invalid id 0" % off)
    if sid in tr.strings:
        raise TraceError("EvString at offset 0x%x has duplicate id %d (first at 0x%x)"
                         % (off, sid, tr.string_offsets[sid]))
    if n == 0:
        raise TraceError("EvString id %d at offset 0x%x is empty (length 0; refer to the "
                         "empty string with id 0)" % (sid, off))
    if n > MAX_STRING_LEN:
        raise TraceError("EvString id %d at offset 0x%x too long (%d > 1e6)" % (sid, off, n))
    b = r.take(n, "EvString bytes")
    tr.strings[sid] = b.decode("utf-8", "replace")
    tr.string_offsets[sid] = off
    rec = Record(EV_STRING, off, "string", None, [sid, n])
    rec.args, rec.value = [sid, n], b
    tr.records.append(rec)


def _parse_stack(rec, tr):
    raw, off = rec.raw, rec.offset
    if len(raw) < 2:
        raise TraceError("EvStack at offset 0x%x has %d arguments: want at least 2 (id, n)"
                         % (off, len(raw)))
    sid, n = raw[0], raw[1]
    if n > MAX_STACK_FRAMES:
        raise TraceError("EvStack id %d at offset 0x%x: bad number of frames %d (> 1000)"
                         % (sid, off, n))
    if len(raw) != 2 + 4 * n:
        raise TraceError("EvStack id %d at offset 0x%x has wrong number of arguments: want "
                         "2+4*%d = %d, got %d" % (sid, off, n, 2 + 4 * n, len(raw)))
    rec.args = list(raw)
    if sid == 0:
        return
    if sid in tr.stacks:
        tr.stack_dups.append((sid, tr.stacks[sid].offset, off))
        return
    frames = [tuple(raw[2 + 4 * i:6 + 4 * i]) for i in range(n)]
    # names are resolved after the whole file is read (strings may come later)
    tr.stacks[sid] = Stack(sid, frames, off)


def _resolve_frames(tr):
    for st in tr.stacks.values():
        st.frames = [Frame(pc, fn, file, line, tr.strings) for pc, fn, file, line in st.frames]



# --- rule families ---------------------------------------------------------------------

def _check_layout(tr):
    v = []
    first = next((r for r in tr.records if r.type != EV_STRING), None)
    if first is not None and first.name != "Batch":
        v.append("first record after the header (other than EvString) is %s at offset 0x%x, "
                 "not EvBatch (1.23+ readers: 'P has no batches yet')" % (first.name, first.offset))
    for rec in tr.records:
        if rec.name == "Batch" and rec.form != "inline":
            v.append("EvBatch at offset 0x%x is length-prefixed (must be inline, header byte "
                     "0x41)" % rec.offset)
        if rec.form == "prefixed" and rec.block_len > MAX_PREFIXED_BLOCK:
            v.append("%s at offset 0x%x: length-prefixed block of %d bytes > %d (1.23+ "
                     "limit)" % (rec.name, rec.offset, rec.block_len, MAX_PREFIXED_BLOCK))
    if not tr.events:
        v.append("trace is empty (no timed events)")
    return v


def _check_frequency(tr, producer_rules):
    if not tr.frequencies:
        return ["no EvFrequency record"]
    v = []
    for rec in tr.frequencies:
        if rec.args[0] == 0 or rec.args[0] >= 1 << 63:
            v.append("EvFrequency at offset 0x%x: bad frequency %d (must be > 0 and fit "
                     "int64)" % (rec.offset, rec.args[0]))
    if producer_rules and len(tr.frequencies) > 1:
        v.append("%d EvFrequency records (want exactly one; offsets %s)" % (
            len(tr.frequencies), ", ".join("0x%x" % r.offset for r in tr.frequencies)))
    return v


def _check_event_types(tr, producer_rules):
    if not producer_rules:
        return []
    v = []
    for ev in tr.events:
        if ev.name == "GoInSyscall":
            v.append("%s: do not write EvGoInSyscall (1.23+ viewers crash unless the P stops "
                     "before its GoSysExit); dump blocked threads with GoWaiting" % describe(ev))
    other = Counter()
    first = {}
    for rec in tr.records:
        if rec.name in RUNTIME_ONLY:
            other[rec.name] += 1
            first.setdefault(rec.name, rec.offset)
    for name in sorted(other):
        v.append("Ev%s at offset 0x%x (%d in all): runtime-only event type, not for a "
                 "non-Go producer" % (name, first[name], other[name]))
    return v


def _check_strings(tr):
    """Every non-zero string id used by a stack frame, task name, region name, log key or
    goroutine label is defined. One message per undefined id."""
    uses = defaultdict(list)        # id -> ["file name in stack 3 frame 0", ...]
    for st in tr.stacks.values():
        for i, fr in enumerate(st.frames):
            if fr.fn_id and fr.fn_id not in tr.strings:
                uses[fr.fn_id].append("function name in stack %d frame %d" % (st.id, i))
            if fr.file_id and fr.file_id not in tr.strings:
                uses[fr.file_id].append("file name in stack %d frame %d" % (st.id, i))
    for ev in tr.events:
        sid, what = None, None
        if ev.name in ("UserTaskCreate", "UserRegion"):
            sid, what = ev.args[2], "name of " + describe(ev)
        elif ev.name == "UserLog":
            sid, what = ev.args[1], "key of " + describe(ev)
        elif ev.name == "GoStartLabel":
            sid, what = ev.args[2], "label of " + describe(ev)
        if sid and sid not in tr.strings:
            uses[sid].append(what)
    return ["string id %d undefined (used %d times, first as %s)" % (sid, len(u), u[0])
            for sid, u in sorted(uses.items())]


def _check_stacks(tr):
    v = []
    for sid, first, dup in tr.stack_dups:
        v.append("stack id %d defined twice (offsets 0x%x and 0x%x)" % (sid, first, dup))
    undefined = defaultdict(list)
    for ev in tr.events:
        if ev.stk and ev.stk not in tr.stacks:
            undefined[ev.stk].append(ev)
    for sid, evs in sorted(undefined.items()):
        v.append("stack id %d undefined (referenced %d times, first by %s)"
                 % (sid, len(evs), describe(evs[0])))
    # one (function, file, line) per PC across the whole file (1.23+ keep one frame per PC)
    seen = {}
    reported = set()
    for st in sorted(tr.stacks.values(), key=lambda s: s.offset):
        for fr in st.frames:
            key = (fr.fn if fr.fn is not None else fr.fn_id,
                   fr.file if fr.file is not None else fr.file_id, fr.line)
            if fr.pc not in seen:
                seen[fr.pc] = (key, st.id)
            elif seen[fr.pc][0] != key and fr.pc not in reported:
                reported.add(fr.pc)
                (fn0, file0, line0), sid0 = seen[fr.pc]
                v.append("PC 0x%x names two frames: %s %s:%s (stack %d) and %s %s:%s (stack %d)"
                         % (fr.pc, fn0, file0, line0, sid0, key[0], key[1], key[2], st.id))
    return v


def _check_goroutine_stacks(tr):
    """GoCreate's "new stack" names the goroutine (section 9): non-zero, defined,
    non-empty, no PC 0."""
    v = []
    for ev in tr.events:
        if ev.name != "GoCreate":
            continue
        g, sid = ev.args
        where = "GoCreate g=%d at offset 0x%x" % (g, ev.offset)
        if sid == 0:
            v.append("%s: start stack 0 (missing; 1.19 viewer: 'missing stack information')"
                     % where)
        elif sid not in tr.stacks:
            v.append("%s: start stack %d undefined" % (where, sid))
        elif not tr.stacks[sid].frames:
            v.append("%s: start stack %d is empty" % (where, sid))
        else:
            for i, fr in enumerate(tr.stacks[sid].frames):
                if fr.pc == 0:
                    v.append("%s: start stack %d frame %d has PC 0" % (where, sid, i))
    return v


def _check_per_p_time(tr, strict_ts):
    """A P's events (its chunks concatenated in file order) must not go back in time."""
    v = []
    for p, evs in sorted(tr.by_p().items()):
        for prev, ev in zip(evs, evs[1:]):
            if ev.ts < prev.ts:
                v.append("P %d: timestamps go backwards at offset 0x%x (%s, ts %d < %d of %s at "
                         "0x%x; a P's chunks must be in time order)"
                         % (p, ev.offset, ev.name, ev.ts, prev.ts, prev.name, prev.offset))
            elif strict_ts and ev.ts == prev.ts:
                v.append("P %d: timestamps not increasing at offset 0x%x (%s, same ts %d as %s "
                         "at 0x%x)" % (p, ev.offset, ev.name, ev.ts, prev.name, prev.offset))
    return v


def _check_sysblock(tr):
    """GoSysBlock must be followed directly by ProcStop on that P (section 12.3.5). A P
    that has no ProcStart/ProcStop at all is exempt (variant no-procstart: accepted by
    every reader, the 1.23+ crash comes from a later ProcStop of that P)."""
    v = []
    for p, evs in sorted(tr.by_p().items()):
        if not any(e.name in ("ProcStart", "ProcStop") for e in evs):
            continue
        for i, ev in enumerate(evs):
            if ev.name != "GoSysBlock":
                continue
            nxt = evs[i + 1] if i + 1 < len(evs) else None
            if nxt is None or nxt.name != "ProcStop":
                v.append("P %d: GoSysBlock (g %d) at offset 0x%x not followed by ProcStop "
                         "(next: %s)" % (p, ev.g, ev.offset,
                                         describe(nxt) if nxt else "end of trace"))
    return v


def _check_cpu_samples(tr, producer_rules):
    """Sample P: -1 or a P with a batch. Producer rule: sample g is 0 or a created
    goroutine. (A sample naming g before g's GoCreate is caught in _check_states.)"""
    v = []
    created = {e.args[0] for e in tr.events if e.name == "GoCreate"}
    for ev in tr.events:
        if ev.name == "CPUSample":
            p = signed_p(ev.args[1])
            if p != NO_P and p not in tr.ps:
                v.append("CPUSample at offset 0x%x: P %d has no batch (use a P id seen in an "
                         "EvBatch or 2^64-1 for none)" % (ev.offset, p))
            if producer_rules and ev.g and ev.g not in created:
                v.append("CPUSample at offset 0x%x: g %d is never created" % (ev.offset, ev.g))
    return v


# --- merge (section 7) -----------------------------------------------------------------

ANY, INC = "any", "inc"     # seq wildcards: any current seq / current seq + 1


def _order_rule(ev):
    """(key, (need seq, need state), (next seq, next state)) or None (no constraint)."""
    n, a = ev.name, ev.args
    if n == "GoCreate":
        return ("g", a[0]), (0, DEAD), (1, RUNNABLE)
    if n in ("GoWaiting", "GoInSyscall"):
        return ("g", ev.g), (1, RUNNABLE), (2, WAITING)
    if n in ("GoStart", "GoStartLabel"):
        return ("g", ev.g), (a[1], RUNNABLE), (a[1] + 1, RUNNING)
    if n == "GoStartLocal":
        return ("g", ev.g), (ANY, RUNNABLE), (INC, RUNNING)
    if n in BLOCKING or n == "GoSysBlock":
        return ("g", ev.g), (ANY, RUNNING), (ANY, WAITING)
    if n in ("GoSched", "GoPreempt"):
        return ("g", ev.g), (ANY, RUNNING), (ANY, RUNNABLE)
    if n in ("GoUnblock", "GoSysExit"):
        return ("g", a[0]), (a[1], WAITING), (a[1] + 1, RUNNABLE)
    if n in ("GoUnblockLocal", "GoSysExitLocal"):
        return ("g", a[0]), (ANY, WAITING), (INC, RUNNABLE)
    if n == "GCStart":
        return ("gc",), (a[0], DEAD), (a[0] + 1, DEAD)
    return None


def _ready(rule, gs):
    if rule is None:
        return True
    key, (seq, state), _ = rule
    cur_seq, cur_state = gs.get(key, (0, DEAD))
    return (seq == ANY or seq == cur_seq) and state == cur_state


def _apply(rule, gs):
    if rule is None:
        return
    key, _, (seq, state) = rule
    cur_seq = gs.get(key, (0, DEAD))[0]
    gs[key] = (cur_seq if seq == ANY else cur_seq + 1 if seq == INC else seq, state)


def _key_text(key):
    return "g%d" % key[1] if key[0] == "g" else "GC"


def _merge_time(ev):
    return ev.args[0] if ev.name == "CPUSample" else ev.ts


def _merge(tr):
    """Simulate the 1.19 merge. Returns (merged events or None, violations). The merged
    list is re-sorted after moving GoSysExit events to their real ticks, like 1.19.

    Same result as 1.19's loop (scan every queue head, add the ready ones to the
    frontier, take the frontier event with the smallest time), but a head is only
    re-examined when it can have become ready: its queue advanced, or the goroutine it
    waits for changed state. The frontier is a heap."""
    queues = {("P", p): deque(evs) for p, evs in sorted(tr.by_p().items())}
    samples = sorted((e for e in tr.events if e.name == "CPUSample"), key=_merge_time)
    if samples:
        queues[("samples",)] = deque(samples)
    total = sum(len(q) for q in queues.values())
    gs = {}
    frontier = []               # heap of (time, order, queue id, event, rule)
    waiting = defaultdict(set)  # goroutine key -> queue ids whose head waits for it
    dirty = set(queues)         # queue ids to examine
    merged = []
    order = 0
    for _ in range(total):
        for qid in sorted(dirty):
            q = queues[qid]
            if not q:
                continue
            rule = _order_rule(q[0])
            if _ready(rule, gs):
                ev = q.popleft()
                heapq.heappush(frontier, (_merge_time(ev), order, qid, ev, rule))
                order += 1
            else:
                waiting[rule[0]].add(qid)
        dirty = set()
        if not frontier:
            return None, [_stuck(queues, gs)]
        _, _, qid, ev, rule = heapq.heappop(frontier)
        if not _ready(rule, gs):
            key, (seq, state), _ = rule
            cur = gs.get(key, (0, DEAD))
            return None, ["event sequences are broken: %s needs %s (seq %s, %s) but it is "
                          "(seq %d, %s) (the same transition written twice?)"
                          % (describe(ev), _key_text(key), seq, state, cur[0], cur[1])]
        _apply(rule, gs)
        merged.append(ev)
        dirty.add(qid)
        if rule is not None:
            dirty |= waiting.pop(rule[0], set())

    v = []
    for prev, ev in zip(merged, merged[1:]):
        if _merge_time(ev) < _merge_time(prev):
            v.append("time stamps out of order: %s is merged after %s (a cause must not carry "
                     "a later timestamp than its effect)" % (describe(ev), describe(prev)))
            # 1.19 stops here; later checks walk the (consistent) merge order as it is
            return merged, v
    moves, errs = _sysexit_moves(merged)
    v += errs
    merged.sort(key=lambda e: moves.get(id(e), _merge_time(e)))       # stable, like 1.19
    return merged, v


def _sysexit_moves(merged):
    """1.19 moves each GoSysExit with non-zero real ticks to those ticks. They need an
    earlier GoSysBlock/GoInSyscall of that goroutine and must not precede it; also they
    must not pass g's next start (else the exit lands behind it). Returns
    ({id(event): real ticks} for the exits that may move, violations)."""
    v, moves, last_block = [], {}, {}
    next_start, following = [None] * len(merged), {}
    for i in range(len(merged) - 1, -1, -1):        # index of g's next start after i
        ev = merged[i]
        next_start[i] = following.get(ev.g)
        if ev.name in STARTS:
            following[ev.g] = ev
    for i, ev in enumerate(merged):
        if ev.name in ("GoSysBlock", "GoInSyscall"):
            last_block[ev.g] = ev.ts
            continue
        if ev.name not in ("GoSysExit", "GoSysExitLocal"):
            continue
        t = ev.args[2] if ev.name == "GoSysExit" else ev.args[1]
        if t == 0:
            continue
        if ev.g not in last_block:
            v.append("stray syscall exit: %s has real ticks %d but g%d has no earlier "
                     "GoSysBlock/GoInSyscall" % (describe(ev), t, ev.g))
            continue
        if t < last_block[ev.g]:
            v.append("time stamps out of order: %s real ticks %d before its GoSysBlock at "
                     "ts %d" % (describe(ev), t, last_block[ev.g]))
            continue
        nxt = next_start[i]
        if nxt is not None and t > nxt.ts:
            v.append("%s: real ticks %d after g%d's next start %s"
                     % (describe(ev), t, ev.g, describe(nxt)))
            continue
        moves[id(ev)] = t
    return moves, v


def _stuck(queues, gs):
    heads = []
    for qid, q in queues.items():
        if not q:
            continue
        rule = _order_rule(q[0])
        if rule is None:
            continue
        key, (seq, state), _ = rule
        cur = gs.get(key, (0, DEAD))
        heads.append("%s needs %s (seq %s, %s), has (seq %d, %s)"
                     % (describe(q[0]), _key_text(key), seq, state, cur[0], cur[1]))
    return "no consistent ordering of events possible: " + "; ".join(heads)


# --- consistency after merging (sections 8, 9) -----------------------------------------

def _check_states(tr, merged, producer_rules):
    v = []
    gstate = {0: RUNNING}            # g 0 (no goroutine) counts as running
    last_start = {}
    pruns = defaultdict(bool)        # P -> between ProcStart and ProcStop
    pg = defaultdict(int)            # P -> goroutine running on it
    tasks = {}                       # open task id -> create event
    regions = defaultdict(list)      # g -> stack of open region starts
    gc = {"GC": None, "STW": None}
    sweep, assist = {}, {}
    sampled_early = {}               # g -> CPU sample naming g before g's GoCreate

    def emitter(ev, allow_g0):
        if gstate.get(ev.g, DEAD) != RUNNING:
            v.append("g %d is not running while %s" % (ev.g, describe(ev)))
        elif pg[ev.p] != ev.g:
            v.append("P %d is not running g %d while %s" % (ev.p, ev.g, describe(ev)))
        elif not allow_g0 and ev.g == 0:
            v.append("g 0 did %s (no goroutine running)" % describe(ev))

    def stop_running(ev, new_state):
        emitter(ev, False)
        gstate[ev.g] = new_state
        if ev.g:
            last_start.pop(ev.g, None)
        pg[ev.p] = 0

    for ev in merged:
        n, a, p = ev.name, ev.args, ev.p
        if n == "ProcStart":
            if pruns[p]:
                v.append("P %d: ProcStart while already running, %s" % (p, describe(ev)))
            pruns[p] = True
        elif n == "ProcStop":
            if not pruns[p]:
                v.append("P %d: ProcStop without ProcStart, %s" % (p, describe(ev)))
            if pg[p]:
                v.append("P %d: ProcStop while g %d runs on it, %s" % (p, pg[p], describe(ev)))
            else:
                pruns[p] = False
        elif n == "CPUSample":
            if ev.g and ev.g not in gstate:
                sampled_early.setdefault(ev.g, ev)
        elif n == "GoCreate":
            emitter(ev, True)
            if a[0] in sampled_early:
                v.append("%s comes after %s naming g%d (real ticks %d; 1.19: 'g %d already "
                         "exists')" % (describe(ev), describe(sampled_early[a[0]]), a[0],
                                       sampled_early[a[0]].args[0], a[0]))
            elif a[0] in gstate:
                v.append("g %d already exists: %s" % (a[0], describe(ev)))
            gstate[a[0]] = RUNNABLE
        elif n in STARTS:
            if gstate.get(ev.g, DEAD) != RUNNABLE:
                v.append("g %d is not runnable before %s" % (ev.g, describe(ev)))
            if pg[p]:
                v.append("P %d: %s while g %d still runs there" % (p, describe(ev), pg[p]))
            gstate[ev.g] = RUNNING
            last_start[ev.g] = ev
            pg[p] = ev.g
        elif n in ("GoEnd", "GoStop"):
            stop_running(ev, DEAD)
            if n == "GoEnd":
                regions.pop(ev.g, None)
        elif n in ("GoSched", "GoPreempt"):
            stop_running(ev, RUNNABLE)
        elif n in BLOCKING or n == "GoSysBlock":
            stop_running(ev, WAITING)
        elif n == "GoSysCall":
            emitter(ev, False)
        elif n in ("GoUnblock", "GoUnblockLocal"):
            emitter(ev, True)
            if gstate.get(a[0], DEAD) != WAITING:
                v.append("g %d is not waiting before %s" % (a[0], describe(ev)))
            gstate[a[0]] = RUNNABLE
        elif n in ("GoSysExit", "GoSysExitLocal"):
            if gstate.get(ev.g, DEAD) != WAITING:
                v.append("g %d is not waiting during %s" % (ev.g, describe(ev)))
            gstate[ev.g] = RUNNABLE
        elif n in ("GoWaiting", "GoInSyscall"):
            if gstate.get(ev.g, DEAD) != RUNNABLE:
                v.append("g %d is not runnable before %s" % (ev.g, describe(ev)))
            gstate[ev.g] = WAITING
        elif n in ANNOTATIONS:
            _check_annotation(ev, tr, gstate, pg, tasks, regions, producer_rules, v)
        elif n in GC_EVENTS:
            _check_gc(ev, gc, sweep, assist, v)
    for g in sorted(last_start):
        if g and gstate.get(g) == RUNNING:
            v.append("g %d still running at end of trace (last start: %s; it needs GoEnd/"
                     "GoStop/GoSched/GoPreempt/GoBlock*/GoSysBlock)" % (g, describe(last_start[g])))
    return v


def _check_annotation(ev, tr, gstate, pg, tasks, regions, producer_rules, v):
    n, a = ev.name, ev.args
    if ev.g == 0:
        v.append("%s emitted with no goroutine running on P %d (g 0)" % (describe(ev), ev.p))
    elif gstate.get(ev.g) != RUNNING or pg[ev.p] != ev.g:
        v.append("%s emitted by g %d, which is not running on P %d" % (describe(ev), ev.g, ev.p))
    if n == "UserTaskCreate":
        if a[0] == 0:
            v.append("%s: task id 0" % describe(ev))
        elif a[0] in tasks:
            v.append("task id conflicts (id:%d): %s while the task created by %s is open"
                     % (a[0], describe(ev), describe(tasks[a[0]])))
        else:
            tasks[a[0]] = ev
    elif n == "UserTaskEnd":
        tasks.pop(a[0], None)
    elif n == "UserRegion":
        if ev.stk == 0:
            v.append("%s: stack 0 (regions need a non-zero stack)" % describe(ev))
        elif ev.stk in tr.stacks and not tr.stacks[ev.stk].frames:
            v.append("%s: stack %d is empty" % (describe(ev), ev.stk))
        task, mode, name = a
        open_ = regions[ev.g]
        if mode == 0:
            open_.append(ev)
        elif mode == 1:
            if open_:
                start = open_[-1]
                if start.args[0] != task or start.args[2] != name:
                    v.append("misuse of region in g %d: end %r (task %d, name id %d) %s does "
                             "not match innermost open start %r (task %d, name id %d) at "
                             "0x%x" % (ev.g, tr.strings.get(name), task, name, describe(ev),
                                       tr.strings.get(start.args[2]), start.args[0],
                                       start.args[2], start.offset))
                open_.pop()
            elif producer_rules:
                v.append("%s: region end %r without an open start on g %d"
                         % (describe(ev), tr.strings.get(name), ev.g))
        else:
            v.append("invalid user region mode %d: %s" % (mode, describe(ev)))


def _check_gc(ev, gc, sweep, assist, v):
    n = ev.name
    pairs = {"GCStart": ("GC", True), "GCDone": ("GC", False),
             "GCSTWStart": ("STW", True), "GCSTWDone": ("STW", False)}
    if n in pairs:
        what, begin = pairs[n]
        if begin and gc[what] is not None:
            v.append("previous %s is not ended before %s" % (what, describe(ev)))
        elif not begin and gc[what] is None:
            v.append("bogus %s end: %s" % (what, describe(ev)))
        gc[what] = ev if begin else None
        if n == "GCSTWStart" and ev.args[0] not in (0, 1):
            v.append("unknown STW kind %d: %s" % (ev.args[0], describe(ev)))
    elif n == "GCSweepStart":
        if sweep.get(ev.p):
            v.append("previous sweeping is not ended before %s" % describe(ev))
        sweep[ev.p] = ev
    elif n == "GCSweepDone":
        if not sweep.get(ev.p):
            v.append("bogus sweeping end: %s" % describe(ev))
        sweep[ev.p] = None
    elif n == "GCMarkAssistStart":
        if assist.get(ev.g):
            v.append("previous mark assist is not ended before %s" % describe(ev))
        assist[ev.g] = ev
    elif n == "GCMarkAssistDone":
        assist[ev.g] = None


def _check_gomaxprocs(merged, producer_rules):
    gm = [e for e in merged if e.name == "Gomaxprocs"]
    if not gm:
        return ["no EvGomaxprocs (1.23+ readers need one, after the initial GoCreate/"
                "GoWaiting dump)"]
    v = []
    if producer_rules and len(gm) > 1:
        v.append("%d EvGomaxprocs events (want exactly one): %s"
                 % (len(gm), ", ".join(describe(e) for e in gm)))
    # 1.23+: goroutines created before the first EvGomaxprocs are the initial state; any
    # of them not given a status (GoWaiting/GoInSyscall/GoStart) before it is declared
    # runnable there, so their GoWaiting must come before it.
    created_before = set()
    seen_gm = False
    for ev in merged:
        if ev is gm[0]:
            seen_gm = True
        elif ev.name == "GoCreate" and not seen_gm:
            created_before.add(ev.args[0])
        elif ev.name in ("GoWaiting", "GoInSyscall") and seen_gm and ev.g in created_before:
            v.append("%s comes after EvGomaxprocs %s although g%d was created before it (the "
                     "initial dump must end before EvGomaxprocs)" % (describe(ev), describe(gm[0]),
                                                                     ev.g))
    return v


def _check_insyscall(merged):
    """A GoInSyscall's P must stop (ProcStop) before that goroutine's GoSysExit (12.3.5),
    unless the P never stops at all."""
    v = []
    for i, ev in enumerate(merged):
        if ev.name != "GoInSyscall":
            continue
        if not any(e.name == "ProcStop" and e.p == ev.p for e in merged):
            continue
        for nxt in merged[i + 1:]:
            if nxt.name == "ProcStop" and nxt.p == ev.p:
                break
            if nxt.name in ("GoSysExit", "GoSysExitLocal") and nxt.g == ev.g:
                v.append("%s: P %d does not stop before g%d's %s (1.23+ viewers crash)"
                         % (describe(ev), ev.p, ev.g, describe(nxt)))
                break
    return v


# --- what Go 1.23+ make of the initial dump (section 12.3) -----------------------------

def _dump(merged):
    """(index of the first EvGomaxprocs in merged, {g: status in the dump}) for the
    goroutines created before it, as the 1.23+ converter sees them: "running" (GoStart),
    "waiting" (GoWaiting), "syscall" (GoInSyscall) or "runnable" (no status: declared at
    EvGomaxprocs). (None, {}) without EvGomaxprocs."""
    gm = next((i for i, e in enumerate(merged) if e.name == "Gomaxprocs"), None)
    if gm is None:
        return None, {}
    status = {}
    for ev in merged[:gm]:
        if ev.name == "GoCreate":
            status[ev.args[0]] = ("runnable", ev)
        elif ev.g in status and ev.name in STARTS:
            status[ev.g] = ("running", ev)
        elif ev.g in status and ev.name == "GoWaiting":
            status[ev.g] = ("waiting", ev)
        elif ev.g in status and ev.name == "GoInSyscall":
            status[ev.g] = ("syscall", ev)
    return gm, status


def _first_kept(merged, gm, status):
    """The first event the 1.23+ converter keeps: it drops the dump's GoCreates, the first
    EvGomaxprocs (unless goroutines without a status are declared runnable at its time)
    and GoSysBlock. Its time is the start of the trace in their viewer."""
    no_status = any(st == "runnable" for st, _ in status.values())
    for i, ev in enumerate(merged):
        if i < gm and ev.name == "GoCreate":
            continue
        if i == gm and not no_status:
            continue
        if ev.name == "GoSysBlock":
            continue
        return ev
    return None


def _ns_since_start(tr, merged, ev):
    """ev's time in ns as the 1.23+ old-format parser computes it: ticks since the first
    merged event, times 1e9/frequency in floating point, truncated to an integer."""
    freq = 1e9 / float(tr.frequency)
    return int(float(_merge_time(ev) - _merge_time(merged[0])) * freq)


def _check_start_time(tr, merged, strict_start):
    """12.3 items 9 and 12. Go 1.23+ back-date a goroutine that the dump shows running
    (or in a syscall on a P) to the start of the trace, the time of the first event they
    keep; at 0 their viewer panics at its first stop ('silently broken trace or generator
    invariant (startRunningTime != 0) not held'); -d still parses."""
    v = []
    gm, status = _dump(merged)
    if gm is None or not tr.frequency:
        return v
    first = _first_kept(merged, gm, status)
    if first is not None and _ns_since_start(tr, merged, first) == 0:
        for g in sorted(status):
            st, ev = status[g]
            if st == "running":
                v.append("g %d is running in the initial dump (%s before EvGomaxprocs) and the "
                         "first event Go 1.23+ keep, %s, is at the trace's time 0: their "
                         "viewer panics (startRunningTime != 0); only the dump's GoCreates may "
                         "be on the earliest tick (12.3.9)" % (g, describe(ev), describe(first)))
            elif st == "syscall":
                v.append("g %d is in a syscall in the initial dump (%s) and the first event Go "
                         "1.23+ keep, %s, is at the trace's time 0: their viewer panics "
                         "(startRunningTime != 0) even when the P stops before its GoSysExit "
                         "(12.3.12)" % (g, describe(ev), describe(first)))
    if strict_start:
        creates = [e for e in merged[:gm] if e.name == "GoCreate"]
        if creates:
            t0 = min(e.ts for e in creates)
            per_tick = 1e9 / float(tr.frequency)
            early = [e for e in merged if not (e.name == "GoCreate" and e in creates) and
                     (_merge_time(e) <= t0 or int((_merge_time(e) - t0) * per_tick) == 0)]
            if early:
                v.append("%d events not 1 ns after the dump's earliest GoCreate (ts %d), first "
                         "%s (time %d): only the dump's GoCreates may be on the trace's "
                         "earliest tick (12.3.9)" % (len(early), t0, describe(early[0]),
                                                     _merge_time(early[0])))
    return v


# state changes whose stack names a goroutine of the dump in 1.23+ (GoEnd and GoSysExit
# carry none, GoSysBlock is dropped, GoUnblock's names the unblocker)
NAMING = (STOPS - {"GoEnd", "GoSysBlock"}) | {"GoSysCall"}


def _outermost(tr, sid):
    st = tr.stacks.get(sid)
    return st.frames[-1].fn if st and st.frames else None


def _check_names(tr, merged):
    """12.3 item 10 (producer rule). Go 1.19 names a goroutine by frame 0 of its GoCreate's
    start stack. Go 1.23+ drop the dump's GoCreates and name such a goroutine by the
    outermost frame of the first stack of its state changes (one created later: of its
    start stack). With no stack on any of them they list it as '(Inactive, no stack trace
    sampled)': not flagged, minimal.trace does that and real Go traces of idle goroutines
    too."""
    gm, _ = _dump(merged)
    if gm is None:
        return []
    v = []
    start_fn, named = {}, {}
    for i, ev in enumerate(merged):
        if ev.name == "GoCreate":
            g = ev.args[0]
            st = tr.stacks.get(ev.args[1])
            start_fn[g] = st.frames[0].fn if st and st.frames else None
            if i > gm:
                named.setdefault(g, (_outermost(tr, ev.args[1]), ev))
        elif ev.name in NAMING and ev.g and ev.g not in named and _outermost(tr, ev.stk):
            named[ev.g] = (_outermost(tr, ev.stk), ev)     # (undefined stacks: reported)
    for g in sorted(start_fn):
        if start_fn[g] is None:
            continue                # no start stack: _check_goroutine_stacks says so
        if g in named:
            name, ev = named[g]
            if name != start_fn[g]:
                v.append("g %d: Go 1.23+ name it %r (outermost frame of the stack of %s), Go "
                         "1.19 %r (its start function): end every stack of a state change "
                         "with the start function (12.3.10)" % (g, name, describe(ev),
                                                                start_fn[g]))
    return v


def _check_threads(tr):
    """12.3 item 11 (producer rule): ProcStart's argument is the M (thread) of newer
    viewers; thread 0 is no thread of a non-Go producer (Ps on it share one row)."""
    zero = [e for e in tr.events if e.name == "ProcStart" and e.args[0] == 0]
    if not zero:
        return []
    return ["%d ProcStart events on thread 0, first %s: write the real thread id (the M of "
            "Go 1.23+, 12.3.11)" % (len(zero), describe(zero[0]))]


# --- public entry points ---------------------------------------------------------------

def check(data, producer_rules=True, strict_ts=False, strict_start=False):
    """Every rule violation found in the trace `data` (bytes), as short messages; [] means
    the trace avoids every known trap. A malformed file gives one message (the TraceError).
    producer_rules=False skips the rules that only a non-Go producer must follow (see the
    module docstring); strict_ts=True demands strictly increasing per-P timestamps;
    strict_start=True the dump's GoCreates alone on the earliest tick."""
    try:
        tr = parse(data)
    except TraceError as e:
        return [str(e)]
    v = []
    v += _check_layout(tr)
    v += _check_frequency(tr, producer_rules)
    v += _check_event_types(tr, producer_rules)
    v += _check_strings(tr)
    v += _check_stacks(tr)
    v += _check_goroutine_stacks(tr)
    v += _check_per_p_time(tr, strict_ts)
    v += _check_sysblock(tr)
    v += _check_cpu_samples(tr, producer_rules)
    if producer_rules:
        v += _check_threads(tr)
    if not tr.events:
        return v
    merged, errs = _merge(tr)
    v += errs
    if merged is None:
        if not any(e.name == "Gomaxprocs" for e in tr.events):
            v += _check_gomaxprocs([], producer_rules)
        return v
    v += _check_states(tr, merged, producer_rules)
    v += _check_gomaxprocs(merged, producer_rules)
    v += _check_insyscall(merged)
    v += _check_start_time(tr, merged, strict_start)
    if producer_rules:
        v += _check_names(tr, merged)
    return v


def summary(data):
    """Counts for tests, from the records in file order (raises TraceError if malformed):

    goroutines                 number of GoCreate events
    goroutine_start_functions  {g: function name of frame 0 of its start stack (or None)}
    tasks                      {task id: {"name", "parent", "start", "end"}}; start/end are
                               ticks (end None if never ended; a reused id keeps the last)
    regions                    {region name: number of region starts}
    logs                       [(task id, key, value)] in file order (value decoded UTF-8)
    cpu_samples                number of EvCPUSample
    ps                         sorted P ids that have an EvBatch (-1 = no P)
    frequency                  last EvFrequency value (None if absent)
    events                     number of timed events
    strings, stacks            number of defined strings / stacks
    """
    tr = parse(data)
    out = {"goroutines": 0, "goroutine_start_functions": {}, "tasks": {}, "regions": {},
           "logs": [], "cpu_samples": 0, "ps": sorted(tr.ps), "frequency": tr.frequency,
           "events": len(tr.events), "strings": len(tr.strings), "stacks": len(tr.stacks)}
    regions = Counter()
    for ev in tr.events:
        n, a = ev.name, ev.args
        if n == "GoCreate":
            out["goroutines"] += 1
            st = tr.stacks.get(a[1])
            out["goroutine_start_functions"][a[0]] = st.frames[0].fn if st and st.frames else None
        elif n == "UserTaskCreate":
            out["tasks"][a[0]] = {"name": tr.strings.get(a[2], ""), "parent": a[1],
                                  "start": ev.ts, "end": None}
        elif n == "UserTaskEnd" and a[0] in out["tasks"]:
            out["tasks"][a[0]]["end"] = ev.ts
        elif n == "UserRegion" and a[1] == 0:
            regions[tr.strings.get(a[2], "")] += 1
        elif n == "UserLog":
            out["logs"].append((a[0], tr.strings.get(a[1], ""),
                                ev.value.decode("utf-8", "replace")))
        elif n == "CPUSample":
            out["cpu_samples"] += 1
    out["regions"] = dict(regions)
    return out


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Check Go 1.19 execution-trace files.")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--no-producer-rules", action="store_true",
                    help="skip rules only a non-Go producer must follow (for real Go traces)")
    ap.add_argument("--strict-ts", action="store_true",
                    help="require strictly increasing per-P timestamps")
    ap.add_argument("--strict-start", action="store_true",
                    help="require the dump's GoCreates alone on the earliest tick")
    ap.add_argument("--summary", action="store_true", help="also print summary()")
    a = ap.parse_args(argv)
    bad = 0
    for path in a.files:
        with open(path, "rb") as f:
            data = f.read()
        msgs = check(data, producer_rules=not a.no_producer_rules, strict_ts=a.strict_ts,
                     strict_start=a.strict_start)
        for m in msgs:
            print("%s: %s" % (path, m))
        if not msgs:
            print("%s: OK" % path)
        if a.summary:
            try:
                print("%s: summary %r" % (path, summary(data)))
            except TraceError as e:
                print("%s: %s" % (path, e))
        bad += bool(msgs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
