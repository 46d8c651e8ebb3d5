"""Readers of what the real tools print, shared by the integration tests:
`go tool pprof -tags` and `protoc --decode` text."""
import ast
import re

TOP_ROW_RE = re.compile(
    r"^\s*(\S+)\s+([0-9.]+)%\s+([0-9.]+)%\s+(\S+)\s+([0-9.]+)%\s+(\S.*?)\s*$")

TAG_HEAD_RE = re.compile(r"^\s*(\S+): Total (\S+)\s*$")
TAG_ROW_RE = re.compile(r"^\s*(\S+)\s+\(\s*[0-9.]+%\):\s(.*?)\s*$")


def parse_tags(out, amount=str):
    """{tag: {value: amount}} from `go tool pprof -tags` output, each amount read with
    amount (kept as printed by default)."""
    tags = {}
    cur = None
    for line in out.splitlines():
        m = TAG_HEAD_RE.match(line)
        if m:
            cur = tags.setdefault(m.group(1), {})
            continue
        m = TAG_ROW_RE.match(line)
        if m and cur is not None:
            cur[m.group(2)] = amount(m.group(1))
    return tags


def parse_text_proto(text):
    """protoc's text format as nested dicts: field -> list of values or messages."""
    root = {}
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line == "}":
            stack.pop()
            continue
        if line.endswith(" {"):
            child = {}
            stack[-1].setdefault(line[:-2], []).append(child)
            stack.append(child)
            continue
        key, sep, val = line.partition(": ")
        assert sep, "unexpected protoc line %r" % raw
        if val.startswith('"'):
            val = ast.literal_eval("b" + val).decode("utf-8", "replace")
        elif val in ("true", "false"):
            val = val == "true"
        else:
            val = int(val)
        stack[-1].setdefault(key, []).append(val)
    assert len(stack) == 1, "unbalanced protoc output"
    return root


def parse_top(out, quantity=float):
    """{function: (flat, cum)} from `go tool pprof -top` output, each column read with
    quantity (durations, bytes or counts, as the profile's unit wants)."""
    rows = {}
    started = False
    for line in out.splitlines():
        if re.match(r"^\s*flat\s+flat%\s+sum%\s+cum\s+cum%\s*$", line):
            started = True
            continue
        if not started:
            continue
        m = TOP_ROW_RE.match(line)
        assert m, "unexpected -top row %r in:\n%s" % (line, out)
        rows[m.group(6)] = (quantity(m.group(1)), quantity(m.group(4)))
    assert started, "no -top table in:\n%s" % out
    return rows


class DecodedProfile:
    """A profile.proto as protoc --decode prints it, with the accessors every test needs;
    the tests of each profile add their own views of samples."""

    def __init__(self, gz, decode):
        assert gz[:2] == b"\x1f\x8b", "not gzip: %r" % gz[:20]
        self.m = parse_text_proto(decode(gz))
        self.strings = self.m.get("string_table", [])
        assert self.strings and self.strings[0] == "", "string_table[0] must be \"\""

    def s(self, i):
        return self.strings[i]

    def one(self, msg, field, default=0):
        v = msg.get(field, [default])
        assert len(v) == 1, "%s repeated: %r" % (field, v)
        return v[0]

    def value_types(self, field):
        return [(self.s(self.one(vt, "type")), self.s(self.one(vt, "unit")))
                for vt in self.m.get(field, [])]
