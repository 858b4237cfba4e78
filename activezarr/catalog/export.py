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
import gzip
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..index.atomic import write_atomic
from .facets import FACETS
from .search import where

if TYPE_CHECKING:
    from .catalog import Catalog

# facets that describe a dataset (rows with equal values are one dataset); the others vary
# within one (variable_id is merged, time is joined) or are bookkeeping
_NOT_GROUPING = {"variable_id", "version", "time_start", "time_end"}


def to_intake_esm(catalog: Catalog, directory: Path, name: str | None = None) -> Path:
    """Write the collection of ``catalog``'s entries into ``directory``; return the JSON path."""
    name = name or "activezarr"
    directory.mkdir(parents=True, exist_ok=True)
    facets = [f for f in FACETS if f != "variable_id"]
    clause, args = where(catalog._conditions)
    sql = (
        f"SELECT f.index_name, f.source, v.name, {', '.join('f.' + c for c in facets)}, "
        f"f.time_start, f.time_end FROM files f JOIN variables v ON v.source = f.source "
        f"WHERE v.role = 'data' AND f.source IN (SELECT source FROM files{clause}) "
        f"ORDER BY v.name, f.time_start, f.source"
    )
    rows = catalog._query(sql, args)
    columns = ["path", "source", "variable_id", "catalog", *facets, "time_start", "time_end"]
    label = catalog.directory.resolve().name
    rows = [(r[0], r[1], r[2], label, *r[3:]) for r in rows]
    present = [c for i, c in enumerate(columns) if any(r[i] is not None for r in rows)]
    keep = [columns.index(c) for c in present]
    root = f"{catalog.directory.resolve()}{os.sep}"  # joined as text: 100,000 Paths cost 0.5 s
    table = directory / f"{name}.csv.gz"
    text = io.StringIO(newline="")
    out = csv.writer(text)
    out.writerow(present)
    for r in rows:
        values = ["" if r[i] is None else r[i] for i in keep]
        values[0] = root + r[0]
        out.writerow(values)
    # whole or not at all (a full disk leaves no half table): compressed here, then renamed
    write_atomic(table, gzip.compress(text.getvalue().encode(), compresslevel=1, mtime=0))
    everywhere = [
        c
        for i, c in enumerate(columns)
        if c in facets and c not in _NOT_GROUPING and rows and all(r[i] is not None for r in rows)
    ]
    spec = {
        "esmcat_version": "0.1.0",
        "id": name,
        "description": f"activezarr kerchunk indexes of {len(rows)} file variables "
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
