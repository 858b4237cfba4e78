"""The scanned first load of a JSON index (``index/scan.py``: plain references straight into
arrays) and the whole-text parse of short texts, against the plain parse (the whole text
through the JSON parser, then ``load_variable``): the same chunk table, the same refusals, on
generated reference texts with escapes, inline data, odd spacing, duplicate keys, metadata as
text or objects, version 0/1.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activezarr import IndexLoadError
from activezarr.errors import ActiveZarrError
from activezarr.index import scan
from activezarr.index.load import INLINE, MISSING, load_variable, read_index
from activezarr.index.scan import PAD, split

SPACES = ["", " ", "\n", "  ", "\t", "\r\n "]
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True, params=["scanned", "short"])
def route(request, monkeypatch):
    """Each test twice: every text through the scan, and short texts parsed whole (the
    default below ``scan.SMALL`` bytes)."""
    if request.param == "scanned":
        monkeypatch.setattr(scan, "SMALL", 0)
    return request.param


def text(value, escape: bool = False) -> str:
    """JSON text of a string, some characters escaped when ``escape`` (JSON reads the same)."""
    out = json.dumps(value)
    if escape and len(value) > 1:
        out = out[:2] + f"\\u{ord(value[1]):04x}" + out[3:] if value[1] != "\\" else out
        out = out.replace("/", "\\/", 1)
    return out


@st.composite
def documents(draw):
    """(JSON text, variable name, whether a key repeats) of a generated reference set."""
    name = draw(st.sampled_from(["v", "grp/v", "x y"]))
    ndim = draw(st.integers(1, 3))
    chunks = draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim))
    grid = draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim))
    shape = [g * c - draw(st.integers(0, c - 1)) for g, c in zip(grid, chunks, strict=True)]
    sep = draw(st.sampled_from([".", "/"]))
    zarray = {"zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": "<f4", "order": "C",
              "fill_value": None, "filters": None, "compressor": None}  # fmt: skip
    if sep == "/":
        zarray["dimension_separator"] = "/"
    meta = zarray if draw(st.booleans()) else json.dumps(zarray)
    items = [(".zgroup", '{"zarr_format":2}'), (f"{name}/.zarray", meta)]
    odd_urls = ["s3://b/k é.nc", "/d/c\\d.nc", '/d/q"x.nc', ""]
    urls = draw(st.lists(st.sampled_from(["/d/a.nc", "/d/b.nc"] * 6 + odd_urls), min_size=1,
                         max_size=3))  # fmt: skip
    nbytes = math.prod(chunks) * 4
    for coords in np.ndindex(*grid):
        if draw(st.integers(0, 9)) == 0:
            continue
        key = f"{name}/" + sep.join(map(str, coords))
        kind = draw(st.integers(0, 39))
        if kind == 0:
            value = "base64:" + "AAAA" * (nbytes // 3 + 1)
        elif kind == 1:
            value = [draw(st.sampled_from(urls))]
        elif kind == 2:
            value = [draw(st.sampled_from(urls)), draw(st.sampled_from([-1, 2**63, 1.5, "7"])), 4]
        else:
            value = [draw(st.sampled_from(urls)), draw(st.integers(0, 10**12)), nbytes]
        items.append((key, value))
    odd = draw(st.sampled_from(["", "orphan", "leading", "outside", "meta-list", "twice"]))
    odd = "" if odd == "twice" and len(items) < 3 else odd
    if odd == "orphan":
        items.append(("w/0.0", ["/d/a.nc", 0, 1]))
    elif odd == "leading":
        items.append((f"{name}/" + sep.join(["01"] + ["0"] * (ndim - 1)), ["/d/a.nc", 0, 4]))
    elif odd == "outside":
        items.append((f"{name}/" + sep.join(["9"] * ndim), ["/d/a.nc", 0, 4]))
    elif odd == "meta-list":
        items.append((f"{name}/.zattrs", ["/d/a.nc", 0, 4]))
    elif odd == "twice":
        key, value = draw(st.sampled_from(items[2:]))
        items.insert(draw(st.integers(2, len(items))), (key, draw(st.sampled_from([value, [
            "/d/z.nc", 1, 2]]))))  # fmt: skip
    items = draw(st.permutations(items)) if draw(st.integers(0, 4)) == 0 else items
    colon = draw(st.sampled_from([":", ": ", " : "]))
    comma = draw(st.sampled_from([",", ", ", ",\n"]))
    escape = draw(st.integers(0, 6)) == 0

    def member(key, value) -> str:
        if isinstance(value, list):
            inner = comma.join(text(v, escape) if isinstance(v, str) else json.dumps(v)
                               for v in value)  # fmt: skip
            value_text = "[" + draw(st.sampled_from(["", " "])) + inner + "]"
        else:
            value_text = json.dumps(value)
        return text(key, escape) + colon + value_text

    body = "{" + draw(st.sampled_from(SPACES)) + comma.join(member(k, v) for k, v in items) + "}"
    if draw(st.booleans()):
        body = '{"version": 1, "refs": ' + body + ', "activezarr": {"format": 1}}'
    return body, name, odd == "twice"


def outcome(load):
    """The chunk table a load gives (each chunk's url or MISSING/INLINE, offset, length,
    inline bytes), or the class of error it raises."""
    try:
        var = load()
    except ActiveZarrError as exc:
        return type(exc)
    urls = [var.urls[i] if i >= 0 else i for i in var.url_ids.tolist()]
    stored = var.url_ids >= 0
    return urls, var.offsets[stored].tolist(), var.sizes[stored].tolist(), var.inline


def scanned(tmp_path, body: str, name: str):
    path = tmp_path / "refs.json"
    path.write_text(body)
    return outcome(lambda: load_variable(read_index(path, tables=True), name, check=False))


@SETTINGS
@given(doc=documents())
def test_scanned_load_matches_the_parsed_load(tmp_path, doc):
    body, name, twice = doc
    new = scanned(tmp_path, body, name)
    if twice:
        assert new is IndexLoadError
        return
    old = outcome(lambda: load_variable(read_index(json.loads(body)), name, check=False))
    assert new == old
    if not isinstance(new, type):
        refs = read_index(tmp_path / "refs.json").refs  # the plain references put back
        parsed = json.loads(body)
        assert list(refs.items()) == list(parsed.get("refs", parsed).items())


class Parsed(dict):
    """A parsed JSON object that remembers whether a key appeared twice in it."""

    twice = False


def parsed_pairs(pairs):
    out = Parsed(pairs)
    out.twice = len(out) < len(pairs)
    return out


@SETTINGS
@given(doc=documents(), edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
    ['"', "\\", ",", "]", "}", "{", "[", ":", " ", "0", "-", "\x01", "é", "\n", ""])), min_size=1,
    max_size=3))  # fmt: skip
def test_edited_texts_load_as_the_parser_reads_them(tmp_path, doc, edits):
    """Bytes replaced, inserted or removed anywhere: valid JSON loads as the parser reads it,
    anything else is refused (never a reference the parser would not have read)."""
    body = doc[0]
    for at, char in edits:
        at %= len(body) + 1
        body = body[:at] + char + body[at + (at % 2) :]
    new = scanned(tmp_path, body, doc[1])
    try:
        parsed = json.loads(body, object_pairs_hook=parsed_pairs)
    except ValueError:
        assert new in (IndexLoadError,), body
        return
    refs = parsed.get("refs") if isinstance(parsed, dict) else None
    if getattr(parsed, "twice", False) or getattr(refs, "twice", False):
        assert new is IndexLoadError
        return
    assert new == outcome(lambda: load_variable(read_index(parsed), doc[1], check=False)), body


def test_a_large_index_is_scanned_into_arrays(tmp_path, monkeypatch):
    """Thousands of references in kerchunk's spacing, checked in blocks of 1,000: the scan
    takes all but the last."""
    monkeypatch.setattr(scan, "BLOCK", 1000)
    refs = {".zgroup": '{"zarr_format":2}', "v/.zarray": json.dumps(
        {"zarr_format": 2, "shape": [100, 100], "chunks": [1, 1], "dtype": "<f8", "order": "C",
         "fill_value": None, "filters": None, "compressor": None})}  # fmt: skip
    refs.update({f"v/{i}.{j}": [f"/d/f{i // 10 % 3}.nc", 8 * (100 * i + j), 8] for i in range(100)
                 for j in range(100)})  # fmt: skip
    body = json.dumps({"version": 1, "refs": refs}).encode()
    buf = np.zeros(len(body) + PAD, np.uint8)
    buf[: len(body)] = np.frombuffer(body, np.uint8)
    found = split(buf, len(body), "x")
    assert len(found.chunks.key_at) == 9_999 and list(found.data["refs"])[-1] == "v/99.99"
    path = tmp_path / "refs.json"
    path.write_bytes(body)
    var = load_variable(read_index(path, tables=True), "v", check=False)
    assert var.offsets.tolist() == list(range(0, 80_000, 8))
    assert [var.urls[i] for i in var.url_ids] == [refs[f"v/{i}.{j}"][0] for i in range(100)
                                                  for j in range(100)]  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        '{"version":1,"refs":{"v/0":["/a",0,4],"v/0":["/a",4,4]}}',
        '{"version":1,"refs":{"v/0":["/a",0,4],"v/1":["/a",4,4],"v/\\u0030":"x"}}',
        '{"version":1,"refs":{"v/0":["/a",0,4],"v/1":["/a",4,4]},"refs":{}}',
        '{"v/.zarray":"{}","v/0":["/a",0,4],"v/1":["/a",4,4],"v/.zarray":"{}"}',
    ],
)
def test_a_key_that_appears_twice_is_refused(tmp_path, body):
    path = tmp_path / "refs.json"
    path.write_text(body)
    with pytest.raises(IndexLoadError, match="appears twice"):
        read_index(path)


def test_references_outside_the_refs_object_are_not_taken(tmp_path):
    """Reference-shaped members in another top-level object or nested in a value stay there."""
    zarray = json.dumps({"zarr_format": 2, "shape": [2], "chunks": [1], "dtype": "<f4",
                         "order": "C", "fill_value": None, "filters": None, "compressor": None})  # fmt: skip
    body = (
        '{"version":1,"refs":{"v/.zarray":' + json.dumps(zarray) + ',"v/0":["/a",0,4],"v/1":'
        '["/a",4,4],"v/.zattrs":{"k":["/a",0,4],"j":1}},"x":{"v/1":["/b",0,4],"v/0":["/b",0,4],'
        '"y":2}}'
    )
    path = tmp_path / "refs.json"
    path.write_text(body)
    doc = read_index(path, tables=True)
    assert doc.refs["v/.zattrs"] == {"k": ["/a", 0, 4], "j": 1}
    var = load_variable(doc, "v", check=False)
    assert var.urls == ["/a"] and var.offsets.tolist() == [0, 4]
    assert MISSING not in var.url_ids and INLINE not in var.url_ids


@pytest.mark.parametrize("name", ["version", "refs", "gen", "templates", "activezarr"])
def test_a_version_0_reference_named_like_a_version_1_member(tmp_path, name):
    """``{"version": [...]}`` is a version 1 text with a bad version, not a reference."""
    zarray = json.dumps({"zarr_format": 2, "shape": [2], "chunks": [1], "dtype": "<f4",
                         "order": "C", "fill_value": None, "filters": None, "compressor": None})  # fmt: skip
    body = (f'{{"v/.zarray":{json.dumps(zarray)},"v/0":["/a",0,4],"{name}":["/a",4,4],'
            '"v/1":["/a",4,4]}')  # fmt: skip
    new = scanned(tmp_path, body, "v")
    assert new == outcome(lambda: load_variable(read_index(json.loads(body)), "v", check=False))
