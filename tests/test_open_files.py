"""A combined index of more files than the process may keep open reads right.

``Active`` over an index that points at thousands of files (``activezarr combine``) used to
keep one descriptor (and one memory map) per file: past ``ulimit -n`` every read failed.
``readers.LocalFiles`` now keeps a bounded number open and closes the least recently used.
The limit is real: the reduction runs in a child process whose descriptor limit is lowered
with ``resource.setrlimit``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from activezarr.catalog.indexing import index_many
from activezarr.readers import LocalFiles
from tests.catalog_files import oracle_concat, write_series
from tests.cli_run import cli_env
from tests.oracle import reduce_masked

FILES = 90
LIMIT = 40  # descriptors the child may hold: fewer than FILES, with room for Python itself

CHILD = """
import json, resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
from activezarr import Active
out = {{}}
for var, index in zip(("tas", "pr"), sys.argv[1:]):
    active = Active(index, var, max_workers=2)
    out[var] = {{
        "sum": float(active.sum[:]),
        "count": int(active.count[:]),
        "map": np.ma.filled(active.mean(axis=0)[:], np.nan).tolist(),
    }}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    base = tmp_path_factory.mktemp("many-open")
    paths = write_series(base / "data", FILES, length=2)
    report = index_many([str(p) for p in paths], base / "indexes", jobs=2, progress=False)
    assert not report.failed, report.failed
    from activezarr import Catalog

    cat = Catalog(base / "indexes")
    return paths, {var: cat.combine(var, "time", out=base / f"{var}.json") for var in ("tas", "pr")}


def test_combined_index_over_more_files_than_descriptors(combined):
    paths, indexes = combined
    child = CHILD.format(limit=LIMIT)
    args = [sys.executable, "-c", child, str(indexes["tas"]), str(indexes["pr"])]
    run = subprocess.run(args, capture_output=True, text=True, check=False, env=cli_env())
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    for var in ("tas", "pr"):
        data = oracle_concat(paths, var)
        want_sum = reduce_masked(data, "sum", None)
        assert got[var]["count"] == int(reduce_masked(data, "count", None))
        np.testing.assert_allclose(got[var]["sum"], float(want_sum), rtol=1e-12)
        want_map = np.ma.filled(reduce_masked(data, "mean", 0), np.nan)
        np.testing.assert_allclose(np.array(got[var]["map"]), want_map, rtol=1e-12)


def test_bounded_reader_under_threads_reads_every_byte(tmp_path):
    """Eight threads read 30 files through a reader that may keep 3 open: every read is the
    file's bytes, and no more than 3 descriptors and 3 maps stay open."""
    files = []
    for i in range(30):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(np.arange(i, i + 4096, dtype="<u4").tobytes())
        files.append(str(path))
    reader = LocalFiles(budget=3)

    def check(k: int) -> None:
        url = files[k % len(files)]
        want = Path(url).read_bytes()
        got = bytes(reader.read(url, 4 * (k % 100), 400))
        assert got == want[4 * (k % 100) : 4 * (k % 100) + 400]
        mm = reader.mapping(url)
        assert bytes(mm[:64]) == want[:64]

    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(check, range(600)))
    assert len(reader._fds) <= 3 + 8  # idle ones are closed; busy ones wait their turn
    assert len(reader._maps) <= 3
    reader.close()
