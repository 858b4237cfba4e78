"""Hostile and broken indexes: every claim is checked, every failure is one IndexLoadError.

* crafted indexes (each class the reliability review found) end in ``IndexLoadError`` naming
  the index, the key and what is wrong, through ``Active`` and through the CLI;
* local chunk URLs are confined: ``/etc/passwd``, ``file://``, ``..`` and symlinks leading out
  are refused; ``allow_paths`` admits a directory on purpose;
* kerchunk v1 ``templates`` and ``gen`` are read as the specification defines them;
* a hypothesis fuzzer mutates valid indexes and fails on any exception that is not an
  ``ActiveZarrError``.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import activezarr
from activezarr import ActiveZarrError, IndexLoadError
from tests.cli_run import run_cli
from tests.generate import write_variable
from tests.oracle import oracle_read


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A zlib variable ``v`` (4x6 in 2x3 chunks) and its index."""
    base = tmp_path_factory.mktemp("validation")
    (base / "data").mkdir()
    data = np.arange(24, dtype="f4").reshape(4, 6)
    source = write_variable(
        base / "data" / "v.nc", data, chunks=(2, 3), zlib=True, fill_value=np.float32(-1)
    )
    index = activezarr.build_index(source, out=base / "idx", catalog=False)
    return {"base": base, "source": source, "index": index, "doc": json.loads(index.read_text())}


_counter = itertools.count()


def write(good, doc, name: str | None = None) -> Path:
    """``doc`` as a new index file beside the good one (a new name: no stale cache)."""
    path = good["index"].parent / (name or f"crafted_{next(_counter)}.json")
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def mutated(good, refs: dict | None = None, **short) -> dict:
    """The good index with references replaced (``v__0_1=`` stands for ``"v/0.1"``)."""
    doc = copy.deepcopy(good["doc"])
    refs = {**(refs or {}), **{k.replace("__", "/").replace("_", "."): v for k, v in short.items()}}
    for key, value in refs.items():
        if value is None:
            doc["refs"].pop(key, None)
        else:
            doc["refs"][key] = value
    return doc


def with_zarray(good, **changes) -> dict:
    doc = copy.deepcopy(good["doc"])
    zarray = json.loads(doc["refs"]["v/.zarray"])
    zarray.update(changes)
    doc["refs"]["v/.zarray"] = json.dumps(zarray)
    return doc


def refused(path: Path, match: str, **kwargs) -> IndexLoadError:
    with (
        pytest.raises(IndexLoadError, match=match) as info,
        activezarr.Active(path, "v", **kwargs) as a,
    ):
        a.mean[...]
    assert str(path) in str(info.value), info.value
    return info.value


# -------------------------------------------------------------------------- local files


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "/etc/passwd", "{dir}/../../../../etc/passwd", "relative.nc"],
)
def test_chunk_urls_outside_the_sources_are_refused(good, url):
    url = url.format(dir=good["source"].parent)
    doc = copy.deepcopy(good["doc"])
    doc["refs"]["v/0.0"] = [url, 0, 24]
    message = str(refused(write(good, doc), r"v/0\.0|outside|\.\.|absolute"))
    assert "etc/passwd" in message or "relative.nc" in message


def test_symlink_out_of_the_source_directory_is_refused(good, tmp_path):
    link = good["source"].parent / "innocent.nc"
    if not link.exists():
        link.symlink_to("/etc/passwd")
    doc = copy.deepcopy(good["doc"])
    doc["refs"]["v/0.0"] = [str(link), 0, 24]
    refused(write(good, doc), "outside")


def test_member_naming_another_directory_does_not_widen_it(good):
    """A source recorded in the member must match its fingerprint to count (staleness)."""
    doc = copy.deepcopy(good["doc"])
    doc["activezarr"]["sources"]["/etc/passwd"] = {"size": 1, "mtime": 0.0}
    doc["refs"]["v/0.0"] = ["/etc/passwd", 0, 1]
    with pytest.raises(ActiveZarrError, match="etc/passwd"):
        activezarr.Active(write(good, doc), "v").mean[...]


def test_allow_paths_admits_a_directory(good, tmp_path):
    moved = tmp_path / "elsewhere.nc"
    moved.write_bytes(good["source"].read_bytes())
    text = good["index"].read_text().replace(str(good["source"]), str(moved))
    doc = json.loads(text)
    doc["activezarr"]["sources"] = {}
    index = write(good, doc)
    refused(index, "outside")
    with activezarr.Active(index, "v", allow_paths=[tmp_path]) as a:
        assert float(a.mean[...]) == pytest.approx(11.5)


def test_plain_kerchunk_index_reads_beside_itself(good):
    doc = copy.deepcopy(good["doc"])
    del doc["activezarr"]
    index = good["source"].parent / "plain.json"  # beside the data
    index.write_text(json.dumps(doc))
    with activezarr.Active(index, "v") as a:
        assert float(a.mean[...]) == pytest.approx(11.5)
    refused(write(good, doc), "outside")  # elsewhere: outside its directory


# ----------------------------------------------------------------------- crafted claims

CRAFTED = {
    # name: (how to change the good index, what the message must say)
    "length 2e9": (lambda g: mutated(g, v__0_0=[str(g["source"]), 0, 2 * 10**9]), "0.0|bytes"),
    "length 1e15": (lambda g: mutated(g, v__0_0=[str(g["source"]), 0, 10**15]), "bytes"),
    "offset beyond file": (lambda g: mutated(g, v__0_0=[str(g["source"]), 10**12, 10]), "beyond"),
    "float offset": (lambda g: mutated(g, v__0_0=[str(g["source"]), 1.5, 10]), "integers"),
    "string length": (lambda g: mutated(g, v__0_0=[str(g["source"]), 0, "10"]), "integers"),
    "negative offset": (lambda g: mutated(g, v__0_0=[str(g["source"]), -5, 10]), "negative"),
    # (orjson reads 10**30 as a float, json as an int: either way one IndexLoadError)
    "huge offset": (
        lambda g: mutated(g, v__0_0=[str(g["source"]), 10**30, 10]),
        "negative|2|integers",
    ),
    "bad ref list": (lambda g: mutated(g, v__0_0=[str(g["source"]), 0]), r"url, offset"),
    "ref not a list": (lambda g: mutated(g, v__0_0=12), "reference"),
    "bad base64": (lambda g: mutated(g, v__0_0="base64:@@@"), "base64"),
    "non-numeric key": (lambda g: mutated(g, v__a_b=[str(g["source"]), 0, 1]), "a.b"),
    "signed key": (lambda g: mutated(g, **{"v__+1_0": [str(g["source"]), 0, 1]}), r"\+1"),
    "10^9 chunks": (lambda g: with_zarray(g, shape=[10**9, 10**9], chunks=[1, 1]), "chunks"),
    "chunk of 1e12 bytes": (lambda g: with_zarray(g, chunks=[10**6, 10**6]), "bytes"),
    "order F": (lambda g: with_zarray(g, order="F"), "order"),
    "zarr v3": (lambda g: with_zarray(g, zarr_format=3), "zarr_format"),
    "unknown codec": (lambda g: with_zarray(g, filters=[{"id": "nonesuch"}]), "codec"),
    "codec without id": (lambda g: with_zarray(g, filters=[{"level": 1}]), "codec"),
    "bad codec args": (lambda g: with_zarray(g, filters=[{"id": "zlib", "nonsense": 1}]), "codec"),
    "struct dtype": (lambda g: with_zarray(g, dtype=[["a", "<f4"]]), "dtype"),
    "bad dtype": (lambda g: with_zarray(g, dtype="<f4x"), "dtype"),
    "negative shape": (lambda g: with_zarray(g, shape=[-4, 6]), "shape"),
    "zero chunk": (lambda g: with_zarray(g, chunks=[0, 3]), "chunks"),
    "bool shape": (lambda g: with_zarray(g, shape=[True, 6]), "shape"),
    "chunks/shape mismatch": (lambda g: with_zarray(g, chunks=[2]), "chunks"),
    "fill not a number": (lambda g: with_zarray(g, fill_value="abc"), "fill_value"),
    "separator": (lambda g: with_zarray(g, dimension_separator="-"), "separator"),
    "zarray not JSON": (lambda g: mutated(g, {"v/.zarray": "{"}), "JSON"),
    "zarray a list": (lambda g: mutated(g, {"v/.zarray": "[1]"}), "object"),
    "scale_factor abc": (
        lambda g: _attr(g, "scale_factor", "abc"),
        "scale_factor",
    ),
    "dims mismatch": (lambda g: _attr(g, "_ARRAY_DIMENSIONS", ["x"]), "_ARRAY_DIMENSIONS"),
    "version 2": (lambda g: {**g["doc"], "version": 2}, "version"),
    "refs a list": (lambda g: {**g["doc"], "refs": []}, "refs"),
    "member format 2": (lambda g: {**g["doc"], "activezarr": {"format": 2}}, "format"),
    "member a list": (lambda g: {**g["doc"], "activezarr": []}, "activezarr"),
    "bad type name": (
        lambda g: {
            **g["doc"],
            "activezarr": {**g["doc"]["activezarr"], "attribute_types": {"v": {"x": "O"}}},
        },
        "attribute_types",
    ),
    "template jinja": (
        lambda g: {
            **mutated(g, v__0_0=["{{ u | upper }}", 0, 1]),
            "templates": {"u": str(g["source"])},
        },
        "template",
    ),
    "undefined template": (
        lambda g: {**mutated(g, v__0_0=["{{nope}}", 0, 1]), "templates": {"u": "x"}},
        "template",
    ),
    "gen attribute access": (
        lambda g: {
            **g["doc"],
            "gen": [
                {
                    "key": "v/{{i.__class__}}.0",
                    "url": "x",
                    "dimensions": {"i": {"stop": 2}},
                }
            ],
        },
        "syntax",
    ),
    "gen too many": (
        lambda g: {
            **g["doc"],
            "gen": [{"key": "v/{{i}}", "url": "x", "dimensions": {"i": {"stop": 10**12}}}],
        },
        "references",
    ),
    "gen offset only": (
        lambda g: {
            **g["doc"],
            "gen": [{"key": "k", "url": "x", "offset": "1", "dimensions": {"i": [1]}}],
        },
        "offset",
    ),
    "not JSON": (lambda g: "{not json", "JSON"),
    "null": (lambda g: "null", "object"),
    "a list": (lambda g: "[1, 2]", "object"),
    "deep nesting": (lambda g: "[" * 100_000 + "]" * 100_000, "parsed|JSON|object"),
    "huge integer": (lambda g: '{"version": 1, "refs": {"x": ' + "9" * 5000 + "}}", "parsed"),
}


def _attr(good, key, value) -> dict:
    doc = copy.deepcopy(good["doc"])
    zattrs = json.loads(doc["refs"]["v/.zattrs"])
    zattrs[key] = value
    doc["refs"]["v/.zattrs"] = json.dumps(zattrs)
    doc["activezarr"]["attribute_types"].get("v", {}).pop(key, None)
    return doc


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_index_is_one_index_load_error(good, case):
    make, match = CRAFTED[case]
    refused(write(good, make(good)), match)


def test_message_names_file_key_and_problem(good):
    index = write(good, mutated(good, v__0_1=[str(good["source"]), 0, 1.5]))
    message = str(refused(index, "integers"))
    assert str(index) in message and "v/0.1" in message and "variable 'v'" in message


@pytest.mark.parametrize("case", ["length 1e15", "non-numeric key", "order F", "null"])
@pytest.mark.parametrize("command", ["info", "reduce"])
def test_cli_reports_one_line(good, case, command):
    make, _ = CRAFTED[case]
    index = write(good, make(good))
    argv = [str(index)] + (["v", "--op", "mean"] if command == "reduce" else [])
    done = run_cli(command, *argv)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(index) in lines[0], done.stderr


# ------------------------------------------------------------------ templates and gen


def test_templates_are_substituted(good):
    doc = copy.deepcopy(good["doc"])
    doc["templates"] = {"src": str(good["source"])}
    for value in doc["refs"].values():
        if isinstance(value, list):
            value[0] = "{{src}}"
    with activezarr.Active(write(good, doc), "v") as a:
        assert float(a.mean[...]) == pytest.approx(11.5)


def test_gen_is_expanded_as_the_spec_defines(good):
    """The chunk references of ``v`` rewritten as one ``gen`` over a list of offsets."""
    doc = copy.deepcopy(good["doc"])
    keys = sorted(k for k in doc["refs"] if k.startswith("v/") and "/." not in k)
    refs = [doc["refs"].pop(k) for k in keys]
    doc["templates"] = {"u": str(good["source"])}
    offsets = {tuple(map(int, k[2:].split("."))): r[1:] for k, r in zip(keys, refs, strict=True)}
    # one generator per chunk row, with arithmetic on the index to pick the reference
    doc["gen"] = [
        {
            "key": "v/{{row}}.{{j}}",
            "url": "{{u}}",
            "offset": str(offsets[(row, j)][0]),
            "length": str(offsets[(row, j)][1]),
            "dimensions": {"row": [row], "j": {"start": j, "stop": j + 1}},
        }
        for row, j in offsets
    ]
    with activezarr.Active(write(good, doc), "v") as a:
        assert float(a.mean[...]) == pytest.approx(11.5)
        np.testing.assert_array_equal(np.ma.getdata(a[...]), oracle_read(good["source"], "v"))


def test_gen_arithmetic():
    from activezarr.index.generators import expand

    gen = [
        {
            "key": "a/{{i}}",
            "url": "{{base}}/f{{i * 2 + 1}}.nc",
            "offset": "{{(i + 1) * 1000}}",
            "length": "{{ 10 // 3 }}",
            "dimensions": {"i": {"start": 0, "stop": 3}},
        }
    ]
    out = expand(gen, {"base": "s3://b"}, "test", 10)
    assert out == {
        "a/0": ["s3://b/f1.nc", 1000, 3],
        "a/1": ["s3://b/f3.nc", 2000, 3],
        "a/2": ["s3://b/f5.nc", 3000, 3],
    }


# --------------------------------------------------------------------------- the fuzzer

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["NaN", "base64:AAAA", "{{x}}", "../x", "/etc/passwd", "<f4", "zlib"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=8,
)
ZARRAY_FIELDS = ["shape", "chunks", "dtype", "fill_value", "order", "filters", "compressor",
                 "zarr_format", "dimension_separator"]  # fmt: skip


@st.composite
def mutations(draw):
    """A list of (where, what) edits of a valid index document."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                ["zarray", "zattrs", "chunk", "chunk_part", "key", "top", "member", "drop"]
            )
        )
        edits.append((kind, draw(st.sampled_from(ZARRAY_FIELDS)), draw(JSON_VALUES)))
    return edits


def apply(doc: dict, edits, source: str) -> dict:
    doc = copy.deepcopy(doc)
    for edit in edits:
        try:
            _edit(doc, *edit, source)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError, ZeroDivisionError):
            pass  # an earlier edit removed what this one changes: skip it
    return doc


def _edit(doc: dict, kind: str, field: str, value, source: str) -> None:
    refs = doc["refs"]
    chunk_keys = sorted(k for k in refs if k.startswith("v/") and "/." not in k)
    if kind == "zarray":
        zarray = json.loads(refs["v/.zarray"])
        zarray[field] = value
        refs["v/.zarray"] = json.dumps(zarray)
    elif kind == "zattrs":
        zattrs = json.loads(refs["v/.zattrs"])
        zattrs[["scale_factor", "add_offset", "missing_value", "valid_range",
                "_ARRAY_DIMENSIONS", "_Unsigned"][len(field) % 6]] = value  # fmt: skip
        refs["v/.zattrs"] = json.dumps(zattrs)
    elif kind == "chunk":
        refs[chunk_keys[len(field) % len(chunk_keys)]] = value
    elif kind == "chunk_part":
        ref = list(refs[chunk_keys[len(field) % len(chunk_keys)]])
        ref[len(field) % 3] = value
        refs[chunk_keys[len(field) % len(chunk_keys)]] = ref
    elif kind == "key":
        refs[f"v/{value}" if isinstance(value, str) else "v/x"] = [source, 0, 8]
    elif kind == "top":
        doc[["version", "refs", "templates", "gen", "activezarr"][len(field) % 5]] = value
    elif kind == "member":
        member = doc["activezarr"]
        member[["format", "sources", "attribute_types", "variables"][len(field) % 4]] = value
    elif kind == "drop":
        refs.pop(["v/.zarray", "v/.zattrs", chunk_keys[0], ".zgroup"][len(field) % 4], None)


@settings(
    max_examples=int(os.environ.get("ACTIVEZARR_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=mutations())
def test_fuzzed_indexes_raise_only_activezarr_errors(good, edits):
    doc = apply(good["doc"], edits, str(good["source"]))
    index = write(good, doc)
    try:
        with activezarr.Active(index, "v") as a:
            a.mean[...]
            a.max[0:1]
            a[...]
    except ActiveZarrError:
        pass
    try:
        from activezarr.info import describe

        describe(index)
    except ActiveZarrError:
        pass
    finally:
        index.unlink()


@pytest.mark.parametrize("claim", ["beyond the end", "over"])
def test_parquet_rows_read_late_are_checked(tmp_path, claim):
    """A parquet index's rows are read when a selection needs them; a row claiming bytes past
    its source's end, or a chunk too large to be one, is refused then, before any read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.generate import write_variable

    source = write_variable(tmp_path / "p.nc", np.arange(40.0).reshape(4, 10), chunks=(2, 5))
    index = activezarr.build_index(source, out=tmp_path / "idx", format="parquet")
    part = next((index / "v").glob("refs.*.parq"))
    table = pq.read_table(part)
    sizes = table.column("size").to_pylist()
    sizes[0] = 10**9 if claim == "beyond the end" else 2**40
    table = table.set_column(table.schema.get_field_index("size"), "size", pa.array(sizes))
    pq.write_table(table, part)
    with pytest.raises(IndexLoadError, match=claim):
        activezarr.Active(index, "v", check_stale=False).mean[...]
