"""The catalog as an intake-esm collection: ``<name>.json`` + ``<name>.csv.gz``.

One row per indexed file and data variable (``variable_id``), the facets as columns, the
file's time range (``time_start``, ``time_end``, ISO dates), the original ``source``, the
catalog directory's name (``catalog``) and, in
``path``, the absolute path of its kerchunk index, with ``format: reference`` so that
``intake.open_esm_datastore(json).to_dataset_dict()`` opens each file through its index
(xarray's zarr engine over fsspec's ``reference://``). Datasets are grouped by the facets that
every row has, variables merged (``union``) and files joined along ``time``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..index.atomic import write_atomic
from . import store
from .facets import FACETS
from .search import where

if TYPE_CHECKING:
    from .catalog import Catalog

# facets that describe a dataset (rows with equal values are one dataset); the others vary
# within one (variable_id is merged, time is joined) or are bookkeeping
_NOT_GROUPING = {"variable_id", "version", "time_start", "time_end"}


def to_intake_esm(catalog: Catalog, directory: Path, name: str | None = None) -> Path:
    """Write the collection of ``catalog``'s entries into ``directory``; return the JSON path.

    Rows stream from SQLite through the CSV writer and gzip into the table's temporary file
    (memory stays flat however many files the catalog holds); which columns are present and
    which facets every row has come from one counting query first.
    """
    name = name or "activezarr"
    directory.mkdir(parents=True, exist_ok=True)
    facets = [f for f in FACETS if f != "variable_id"]
    # what each column is read from; "?" is the catalog's name, the same on every row
    selected = ["f.index_name", "f.source", "v.name", "?", *("f." + c for c in facets),
                "f.time_start", "f.time_end"]  # fmt: skip
    columns = ["path", "source", "variable_id", "catalog", *facets, "time_start", "time_end"]
    clause, args = where(catalog._conditions)
    rows_sql = (
        "FROM files f JOIN variables v ON v.source = f.source WHERE v.role = 'data' "
        f"AND f.source IN (SELECT source FROM files{clause})"
    )
    label = catalog.directory.resolve().name
    counts = catalog._query(
        f"SELECT COUNT(*), {', '.join(f'COUNT({c})' for c in selected)} {rows_sql}",
        [label, *args],
    )[0]
    total, counts = counts[0], counts[1:]
    present = [c for c, n in zip(columns, counts, strict=True) if n]
    everywhere = [c for c, n in zip(columns, counts, strict=True)
                  if c in facets and c not in _NOT_GROUPING and total and n == total]  # fmt: skip
    sql = f"SELECT {', '.join(selected)} {rows_sql} ORDER BY v.name, f.time_start, f.source"
    table = directory / f"{name}.csv.gz"
    root = f"{catalog.directory.resolve()}{os.sep}"  # joined as text: 100,000 Paths cost 0.5 s
    keep = [columns.index(c) for c in present]
    with store.opened(catalog.directory) as con:
        lines = _csv_lines(con.execute(sql, [label, *args]), present, keep, root)
        # whole or not at all (a full disk leaves no half table): written, then renamed
        write_atomic(table, _gzipped(lines))
    spec = {
        "esmcat_version": "0.1.0",
        "id": name,
        "description": f"activezarr kerchunk indexes of {total} file variables "
        f"({catalog.directory})",
        "catalog_file": table.name,
        "attributes": [
            {"column_name": c, "vocabulary": ""} for c in present if c not in ("path", "source")
        ],
        "assets": {"column_name": "path", "format": "reference"},
        "aggregation_control": {
            "variable_column_name": "variable_id",
            # the catalog's name leads: intake-esm (with pandas >= 2) cannot group by one
            # column; without any facet, each variable is its own dataset
            "groupby_attrs": ["catalog", *everywhere] if everywhere else ["catalog", "variable_id"],
            "aggregations": [
                {"type": "union", "attribute_name": "variable_id"},
                *(
                    [
                        {
                            "type": "join_existing",
                            "attribute_name": "time_start",
                            "options": {"dim": "time", "coords": "minimal", "compat": "override"},
                        }
                    ]
                    if "time_start" in present
                    else []
                ),
            ],
        },
    }
    target = directory / f"{name}.json"
    write_atomic(target, json.dumps(spec, indent=1) + "\n")
    return target


def _csv_lines(rows, present: list[str], keep: list[int], root: str):
    """The table's CSV text, a block of rows at a time: the header, then each row with the
    index's absolute path."""
    text = io.StringIO(newline="")
    out = csv.writer(text)
    out.writerow(present)
    for n, r in enumerate(rows, 1):
        values = ["" if r[i] is None else r[i] for i in keep]
        values[0] = root + r[0]
        out.writerow(values)
        if n % 10_000 == 0:
            yield text.getvalue()
            text.seek(0)
            text.truncate()
    yield text.getvalue()


def _gzipped(pieces) -> Iterator[bytes]:
    """``pieces`` of text as one gzip stream (level 1, no timestamp: the same rows give the
    same bytes)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
    for piece in pieces:
        yield packer.compress(piece.encode())
    yield packer.flush()
