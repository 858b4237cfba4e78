"""Session fixtures for the data the tests read: generated netCDF4 files and their indexes.

Import them into a test module (or conftest) with ``from tests.fixtures_data import *``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.generate import GENERATED_CASES, GENERATED_FILES, write_all

REAL_DIR = Path(__file__).parents[2] / "shared/data/real"

# Tests that read the project's real files skip, naming the folder, when the repository is
# checked out without ../shared beside it; everything else runs on generated files.
needs_real_files = pytest.mark.skipif(
    not REAL_DIR.is_dir(), reason=f"{REAL_DIR} is missing (the shared real netCDF files)"
)

__all__ = [
    "GENERATED_CASES",
    "GENERATED_FILES",
    "REAL_DIR",
    "generated_dir",
    "generated_index",
    "needs_real_files",
    "real_index",
]


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory) -> Path:
    """A directory holding every generated file, written once per session (per worker)."""
    return write_all(tmp_path_factory.mktemp("generated"))


class _IndexCache:
    """Builds the index of a file on first use and returns the same path afterwards."""

    def __init__(self, source_dir: Path, out: Path) -> None:
        self.source_dir = source_dir
        self.out = out
        self._built: dict[str, Path] = {}
        self._failed: dict[str, BaseException] = {}

    def __call__(self, filename: str) -> Path:
        if filename in self._failed:
            raise self._failed[filename]
        if filename not in self._built:
            import activezarr

            try:
                self._built[filename] = Path(
                    activezarr.build_index(self.source_dir / filename, out=self.out)
                )
            except BaseException as exc:
                self._failed[filename] = exc
                raise
        return self._built[filename]


@pytest.fixture(scope="session")
def generated_index(generated_dir, tmp_path_factory) -> _IndexCache:
    """``generated_index(filename)`` → the index path of a generated file (built lazily)."""
    return _IndexCache(generated_dir, tmp_path_factory.mktemp("generated_indexes"))


@pytest.fixture(scope="session")
def real_index(tmp_path_factory) -> _IndexCache:
    """``real_index(filename)`` → the index path of a file in ../shared/data/real."""
    return _IndexCache(REAL_DIR, tmp_path_factory.mktemp("real_indexes"))


_ACTIVE: dict = {}


def active_for(index, var: str):
    """One ``Active`` per (index, variable) for the whole session (per worker): the oracle
    matrices reduce each variable many times, and opening it is not what they test."""
    import activezarr

    key = (str(index), var)
    if key not in _ACTIVE:
        _ACTIVE[key] = activezarr.Active(index, var)
    return _ACTIVE[key]
