"""Stale indexes: each index records its sources' fingerprints and is checked wherever it is.

* the fingerprint (size, mtime, SHA-256 of the first and last 4 KB) lives in the index's
  ``activezarr`` member, so an index copied away from its catalog, or opened as a file:// URL
  or as a dict, is still checked, by ``Active`` and by ``activezarr info``/``reduce``;
* a source rewritten with the same size and mtime but other bytes is caught by the digest;
* ``check_stale=False`` / ``--no-check-stale`` skip the check;
* the message names the source and the command that refreshes the index.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

import activezarr
from activezarr import StaleIndexError
from tests.cli_run import run_cli


def write_source(path: Path, order: tuple[str, str] = ("a", "b")) -> Path:
    """Two variables; ``order`` decides which is written first (and so where chunks sit)."""
    values = {"a": np.full((50, 40), 99.94, "f8"), "b": np.full((50, 40), -4999.49, "f8")}
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 50)
        ds.createDimension("x", 40)
        for name in order:
            ds.createVariable(name, "f8", ("y", "x"), chunksizes=(10, 40))[:] = values[name]
    return path


@pytest.fixture
def indexed(tmp_path):
    (tmp_path / "src").mkdir()
    source = write_source(tmp_path / "src" / "data.nc")
    index = activezarr.build_index(source, out=tmp_path / "idx")
    copied = tmp_path / "elsewhere" / "copy.json"  # no catalog beside it
    copied.parent.mkdir()
    shutil.copy(index, copied)
    return source, index, copied


def rewrite_same_name(source: Path) -> None:
    stat = source.stat()
    source.unlink()
    write_source(source, order=("b", "a"))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the mtime is restored


def test_copied_index_is_checked_without_a_catalog(indexed):
    source, _, copied = indexed
    with activezarr.Active(copied, "a") as a:
        assert float(a.mean[...]) == pytest.approx(99.94)
    rewrite_same_name(source)
    with pytest.raises(StaleIndexError) as info:
        activezarr.Active(copied, "a")
    message = str(info.value)
    assert str(source) in message and "activezarr index" in message and "--force" in message


@pytest.mark.parametrize("form", ["file_url", "dict"])
def test_other_forms_of_the_index_are_checked(indexed, form):
    source, index, _ = indexed
    rewrite_same_name(source)
    target = f"file://{index}" if form == "file_url" else json.loads(index.read_text())
    with pytest.raises(StaleIndexError, match="data.nc"):
        activezarr.Active(target, "a")


def test_same_size_and_mtime_other_bytes_is_caught_by_the_digest(indexed):
    source, _, copied = indexed
    stat = source.stat()
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF  # in the last 4 KB
    source.write_bytes(bytes(data))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.stat().st_size == stat.st_size
    with pytest.raises(StaleIndexError, match="bytes differ"):
        activezarr.Active(copied, "a")


def test_check_stale_false_skips_the_check(indexed):
    source, _, copied = indexed
    source.touch()  # a new mtime
    os.utime(source, (1, 1))
    with pytest.raises(StaleIndexError, match="mtime"):
        activezarr.Active(copied, "a")
    with activezarr.Active(copied, "a", check_stale=False) as a:
        assert float(a.mean[...]) == pytest.approx(99.94)


def test_one_open_fingerprints_each_source_once(indexed, caplog):
    """Opening an index with check_stale on takes each source's fingerprint once: the check
    that a recorded source vouches for its directory (made while the index loads) and the
    freshness check share it, and the next open takes its own. Counted through the DEBUG line
    ``activezarr.index.freshness`` writes for each fingerprint it takes (a small counter hook
    in the code: a file's digest is cached per process while its stat is unchanged, so its
    real opens would count one either way; what was taken twice was the fingerprint)."""
    source, _, copied = indexed

    def taken(**options) -> int:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="activezarr.index.freshness"):
            activezarr.Active(copied, "a", **options).close()
        return sum(str(source) in r.getMessage() for r in caplog.records)

    assert [taken(), taken(), taken(check_stale=False)] == [1, 1, 1]
    os.utime(source, (1, 1))  # the record taken by the previous open is not reused
    with pytest.raises(StaleIndexError, match="mtime"):
        activezarr.Active(copied, "a")


def test_removed_source_is_reported(indexed):
    source, _, copied = indexed
    source.unlink()
    with pytest.raises(StaleIndexError, match="no longer exists; restore it"):
        activezarr.Active(copied, "a")


def test_cli_info_and_reduce_check_and_can_skip(indexed):
    source, _, copied = indexed
    rewrite_same_name(source)
    for argv in (["info", str(copied)], ["reduce", str(copied), "a", "--op", "mean"]):
        done = run_cli(*argv)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "changed since it was indexed" in done.stderr and "--force" in done.stderr
        # a rewritten source no longer vouches for its directory, check or not: --allow-path
        skipped = run_cli(*argv, "--no-check-stale")
        assert skipped.returncode == 1 and "Traceback" not in skipped.stderr, skipped.stderr
        assert f"--allow-path {source.parent}" in skipped.stderr, skipped.stderr
        allowed = run_cli(*argv, "--no-check-stale", "--allow-path", str(source.parent))
        assert allowed.returncode == 0, allowed.stderr


def test_a_source_that_is_gone_suggests_prune(tmp_path):
    """Re-indexing a file that no longer exists cannot help: the message says to prune."""
    import shutil

    import activezarr
    from activezarr.errors import StaleIndexError
    from tests.fixtures_data import REAL_DIR

    source = tmp_path / "data" / "test1.nc"
    source.parent.mkdir()
    shutil.copyfile(REAL_DIR / "test1.nc", source)
    index = activezarr.build_index(source, out=tmp_path / "indexes")
    source.unlink()
    with pytest.raises(StaleIndexError, match="no longer exists.*catalog prune --catalog"):
        activezarr.Active(index, "tas")
