"""The index page at /debug/pprof/, its redirect, and HEAD."""
import re

INDEX_HEAD = (
    "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n"
    "\tdisplay:inline-block;\n\twidth:6rem;\n}\n</style>\n</head>\n<body>\n"
    "/debug/pprof/<br>\n<br>\nTypes of profiles available:\n<table>\n"
    "<thead><td>Count</td><td>Profile</td></thead>\n")
ROW_RE = re.compile(r"<tr><td>(\d+)</td><td><a href='([^']*)'>([^<]*)</a></td></tr>\n")
MIDDLE = ("</table>\n<a href=\"goroutine?debug=2\">full goroutine stack dump</a>\n<br>\n"
          "<p>\nProfile Descriptions:\n<ul>\n")
DESC_RE = re.compile(r"<li><div class=profile-name>([^<]*): </div> ([^<]*)</li>\n")
TAIL = "</ul>\n</p>\n</body>\n</html>"

# Endpoints whose plain GET would run for a default 30 s: ask for one second instead.
SLOW_DEFAULTS = {"profile": "?seconds=1", "trace": "?seconds=1"}


def parse_index(text):
    """(rows [(count, href, name)], descs [(name, desc)]) from Go's index layout."""
    assert text.startswith(INDEX_HEAD), text[:400]
    rest = text[len(INDEX_HEAD):]
    rows = []
    while True:
        m = ROW_RE.match(rest)
        if not m:
            break
        rows.append((int(m.group(1)), m.group(2), m.group(3)))
        rest = rest[m.end():]
    assert rest.startswith(MIDDLE), rest[:400]
    rest = rest[len(MIDDLE):]
    descs = []
    while True:
        m = DESC_RE.match(rest)
        if not m:
            break
        descs.append((m.group(1), m.group(2)))
        rest = rest[m.end():]
    assert rest == TAIL, rest[:400]
    return rows, descs


def test_index_headers_and_shape(httpd):
    r = httpd.get("/debug/pprof/")
    assert r.status == 200, r
    assert r.headers.get("content-type") == "text/html; charset=utf-8"
    assert r.headers.get("x-content-type-options") == "nosniff"
    text = r.body.decode("utf-8")
    assert "<title>/debug/pprof/</title>" in text
    assert "Types of profiles available:" in text
    assert "<td><a href='cmdline?debug=1'>cmdline</a></td></tr>" in text
    assert '<a href="goroutine?debug=2">full goroutine stack dump</a>' in text
    assert "Profile Descriptions:" in text
    rows, descs = parse_index(text)
    names = [n for _, _, n in rows]
    assert "cmdline" in names
    assert names == sorted(names), "Go sorts the index by name"
    assert len(set(names)) == len(names)
    for count, href, name in rows:
        assert href == name + "?debug=1", (href, name)
        assert count >= 0
    assert [n for n, _ in descs] == names
    assert all(d.strip() for _, d in descs), descs


def test_index_links_all_work(httpd):
    rows, _ = parse_index(httpd.get("/debug/pprof/").text)
    assert rows
    for _, href, name in rows:
        target = href[:-len("?debug=1")] if href.endswith("?debug=1") else href
        assert target == name
        r = httpd.get("/debug/pprof/" + target + SLOW_DEFAULTS.get(target, ""), timeout=60)
        assert r.status == 200, (name, r)
        assert r.headers.get("x-go-pprof") is None, (name, r)


def test_redirect_without_slash(httpd):
    r = httpd.get("/debug/pprof")
    assert r.status == 301, r
    loc = r.headers.get("location", "")
    assert loc.endswith("/debug/pprof/"), loc
    assert loc in ("/debug/pprof/", httpd.url("/debug/pprof/")), loc


def test_redirect_keeps_query(httpd):
    r = httpd.get("/debug/pprof?debug=1&x=a%20b")
    assert r.status == 301, r
    loc = r.headers.get("location", "")
    assert loc.endswith("/debug/pprof/?debug=1&x=a%20b"), loc


def test_head_index(httpd):
    r = httpd.head("/debug/pprof/")
    assert r.status == 200, r
    assert r.body == b""
    assert r.headers.get("content-type") == "text/html; charset=utf-8"
    assert r.headers.get("x-content-type-options") == "nosniff"
