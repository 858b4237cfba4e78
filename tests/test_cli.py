"""The command line: index → info → reduce on a real file, errors, and atomic index writes.

Runs ``python -m activezarr`` in a subprocess, as a user would. ``reduce --json`` output is
compared with the oracle (netCDF4 + numpy.ma).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import run_cli
from tests.fixtures_data import REAL_DIR, needs_real_files
from tests.generate import write_variable
from tests.oracle import assert_same, oracle_atol, oracle_read, reduce_masked

TAS = REAL_DIR / "CMIP6_IPSL-CM6A-LR_tas.nc"
REPO = Path(__file__).parents[1]


run = run_cli


def parse_select(text: str | None):
    """The CLI's --select syntax ("0:2,4:6,7:9", "3,...,::2") as a Python selection."""
    if text is None:
        return Ellipsis
    items = []
    for part in text.split(","):
        part = part.strip()
        if part == "...":
            items.append(Ellipsis)
        elif ":" in part:
            bounds = [int(b) if b.strip() else None for b in part.split(":")]
            items.append(slice(*bounds))
        else:
            items.append(int(part))
    return tuple(items)


def from_json(payload: dict) -> tuple[np.ma.MaskedArray, np.ndarray]:
    """``reduce --json`` output → (result as MaskedArray, count)."""
    dtype = np.dtype(payload["dtype"])
    shape = tuple(payload["shape"])
    result = payload["result"]
    flat = list(np.array(result, dtype=object).reshape(-1)) if shape else [result]
    mask = np.array([v is None for v in flat], bool).reshape(shape)
    values = np.array([0 if v is None else v for v in flat], dtype=dtype).reshape(shape)
    count = np.array(payload["count"], dtype=np.int64).reshape(shape)
    return np.ma.masked_array(values, mask=mask), count


@pytest.fixture(scope="module")
def tas_index(tmp_path_factory) -> Path:
    if not REAL_DIR.is_dir():
        pytest.skip(f"{REAL_DIR} is missing (the shared real netCDF files)")
    out = tmp_path_factory.mktemp("cli_indexes")
    proc = run("index", TAS, "--out", out, check=True)
    assert TAS.name in proc.stdout + proc.stderr
    indexes = [p for p in out.glob("*.json") if p.name != "catalog.json"]
    assert len(indexes) == 1, sorted(out.iterdir())
    assert (out / "catalog.db").exists()
    return indexes[0]


@needs_real_files
def test_index_prints_one_line_per_file(tmp_path):
    proc = run("index", TAS, REAL_DIR / "zero_chunked.nc", "--out", tmp_path, check=True)
    for name in (TAS.name, "zero_chunked.nc"):
        lines = [line for line in proc.stdout.splitlines() if name in line]
        assert len(lines) == 1, proc.stdout


@needs_real_files
def test_index_quiet_prints_nothing_but_writes_the_index(tmp_path):
    proc = run("index", "-q", TAS, "--out", tmp_path, check=True)
    assert proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr
    assert (tmp_path / f"{TAS.stem}.json").exists()


def test_info_describes_the_index(tas_index):
    proc = run("info", tas_index, check=True)
    assert "tas" in proc.stdout
    proc = run("info", tas_index, "tas", check=True)
    assert "tas" in proc.stdout
    assert "time" in proc.stdout and "143" in proc.stdout and "144" in proc.stdout


CLI_CASES = [
    ("mean", None, None),
    ("sum", None, None),
    ("min", "0:2,4:6,7:9", None),
    ("max", "-3:,10:20,::7", None),
    ("count", "0:2,4:6,7:9", None),
    ("mean", "0:12,...,10:20", "0"),
    ("sum", "3,...,::2", None),
    ("mean", "0:4,100:110,0:3", "0,2"),
    ("max", "2,5:9,1:3", "1"),
    ("min", "5:5", None),
]


@pytest.mark.parametrize(("op", "select", "axis"), CLI_CASES)
def test_reduce_json_matches_oracle(tas_index, op, select, axis):
    args = ["reduce", tas_index, "tas", "--op", op, "--json"]
    if select is not None:
        args += [f"--select={select}"]  # "=": argparse would take "-3:" for an option
    if axis is not None:
        args += ["--axis", axis]
    proc = run(*args, check=True)
    payload = json.loads(proc.stdout)
    assert payload["op"] == op
    result, count = from_json(payload)
    sel = parse_select(select)
    data = oracle_read(TAS, "tas", sel)
    axes = None if axis is None else tuple(int(a) for a in axis.split(","))
    if axes is not None and len(axes) == 1:
        axes = axes[0]
    expected = reduce_masked(data, op, axes)
    assert list(payload["shape"]) == list(expected.shape)
    assert np.dtype(payload["dtype"]) == expected.dtype
    assert_same(result, expected, op, atol=oracle_atol(data, op, axes), where=f"cli {args}")
    assert np.array_equal(count, reduce_masked(data, "count", axes).data)


def test_reduce_plain_output(tas_index):
    proc = run("reduce", tas_index, "tas", "--op", "mean", "--select", "0:2", check=True)
    expected = float(reduce_masked(oracle_read(TAS, "tas", (slice(0, 2),)), "mean"))
    assert proc.stdout.strip()
    assert f"{expected:.3f}"[:6] in proc.stdout, proc.stdout


def _one_error_line(proc) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_reduce_bad_selection_is_one_line(tas_index):
    line = _one_error_line(run("reduce", tas_index, "tas", "--op", "mean", "--select", "20"))
    assert "time" in line or "0" in line, line


def test_reduce_unknown_variable_is_one_line(tas_index):
    line = _one_error_line(run("reduce", tas_index, "nosuchvar", "--op", "mean"))
    assert "nosuchvar" in line


def test_an_option_of_another_command_names_that_command(tas_index):
    proc = run("reduce", tas_index, "tas", "--op", "mean", "--scheduler", "tcp://x:1")
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "--scheduler is an option of `activezarr index`" in line, line
    line = _one_error_line(run("reduce", tas_index, "tas", "--op", "mean", "--no-such"))
    assert "--no-such" in line and "is an option of" not in line, line


def test_versions():
    proc = run("versions", check=True)
    assert "activezarr" in proc.stdout
    for name in ("numpy", "zarr"):
        assert name in proc.stdout


# ---------------------------------------------------------------- atomic index writes


def _good_file(directory: Path) -> Path:
    data = np.arange(60, dtype="f4").reshape(3, 4, 5)
    return write_variable(
        directory / "atomic.nc", data, chunks=(2, 2, 5), zlib=True, fill_value=np.float32(-1)
    )


def _break(path: Path) -> None:
    """Replace ``path`` by a truncated copy of itself: HDF5 signature, unreadable body."""
    content = path.read_bytes()
    path.unlink()
    path.write_bytes(content[: len(content) // 2])


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _catalog_entry(directory: Path, source: Path):
    from activezarr import Catalog

    return Catalog(directory)[str(source.resolve())]


def test_failed_cli_reindex_keeps_the_old_index(tmp_path):
    src = tmp_path / "src"
    out = tmp_path / "out"
    src.mkdir()
    good = _good_file(src)
    run("index", good, "--out", out, check=True)
    before = _snapshot(out)
    index = [name for name in before if name.endswith(".json")]
    assert index == ["atomic.json"], sorted(before)
    entry = _catalog_entry(out, good)

    _break(good)
    proc = run("index", good, "--out", out)
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr
    assert good.name in proc.stderr
    after = _snapshot(out)
    assert sorted(after) == sorted(before), "a failed run left files behind"
    assert after["atomic.json"] == before["atomic.json"], "the old index was changed"
    assert _catalog_entry(out, good) == entry
    # the old index is still a whole index (its source is now broken, so it is not reduced)
    assert json.loads(after["atomic.json"])["version"] == 1


def test_failed_library_reindex_keeps_the_old_index(tmp_path):
    import activezarr

    src = tmp_path / "src"
    out = tmp_path / "out"
    src.mkdir()
    good = _good_file(src)
    index = Path(activezarr.build_index(good, out=out))
    assert index.name == "atomic.json"
    before = _snapshot(out)
    _break(good)
    with pytest.raises(activezarr.IndexBuildError, match="atomic.nc"):
        activezarr.build_index(good, out=out)
    assert _snapshot(out) == before


def test_cli_index_into_fresh_nested_directory(tmp_path):
    out = tmp_path / "a" / "b"
    src = tmp_path / "src"
    src.mkdir()
    good = _good_file(src)
    run("index", good, "--out", out, check=True)
    assert (out / "atomic.json").exists()


@needs_real_files
def test_cli_index_copy_of_real_file_is_not_needed(tmp_path):
    """Indexing reads the real file in place: the index points at the shared path."""
    run("index", REAL_DIR / "zero_chunked.nc", "--out", tmp_path, check=True)
    refs = json.loads((tmp_path / "zero_chunked.json").read_text())["refs"]
    urls = {v[0] for k, v in refs.items() if isinstance(v, list)}
    where = os.path.abspath(REAL_DIR / "zero_chunked.nc")  # as given, symlinks kept
    assert urls and all(where in u for u in urls)
    assert not any(p.suffix == ".nc" for p in tmp_path.iterdir())
