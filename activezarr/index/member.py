"""The ``activezarr`` member of an index: what activezarr records that kerchunk has no place for.

It sits at the top level next to ``refs``, where kerchunk readers (fsspec's
ReferenceFileSystem, kerchunk, VirtualiZarr, zarr and xarray through them) never look::

    {"version": 1,
     "refs": {...},
     "activezarr": {
       "format": 1,
       "sources": {"/data/tas.nc": {"size": 1234, "mtime": 1700000000.5,
                                    "sha256": "<hex>", "sample": 4096}},
       "attribute_types": {"tas": {"scale_factor": "<f4", "valid_range": "|u1",
                                   "units": "str"}},
       "variables": {"tas": {"fill": 1e20, "_FillValue": 1e20, "no_fill": false}},
       "skipped": {"flags": "'flags' has string type |S1, which activezarr cannot reduce"}}}

``sources`` holds each source's fingerprint (``freshness.py`` checks it; local chunk URLs must
lie under a recorded source's directory). ``attribute_types`` holds, per variable, the HDF5
type of each attribute as a numpy dtype string (``"str"`` for strings), because JSON keeps only
the number: ``0.5`` may have been float32 or float64, and netCDF4-python's CF rules depend on
it. ``.zattrs`` keeps plain JSON values for other readers; ``typed_attrs`` turns them back into
numpy values of the recorded type. ``variables`` holds per-variable fill facts (what unwritten
chunks hold, the ``_FillValue`` attribute as stored, whether the variable was created without
fill) and, for a record variable shorter than its unlimited dimension, its own ``extent`` and
which axes are ``unlimited``; ``load.fill_fields`` reads them. ``skipped`` names the source's variables that were not
indexed and why (a string or compound type, a filter activezarr cannot decode), so that
``info`` lists them and asking for one says why it is not there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import IndexLoadError

FORMAT = 1
STRING = "str"
NUMERIC_KINDS = "biuf"
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
MAX_SOURCES = 100_000


def type_name(dtype: np.dtype) -> str | None:
    """The recorded name of an attribute's HDF5 type, or None for types not recorded."""
    import h5py

    if dtype.kind in "SU" or h5py.check_string_dtype(dtype) is not None:
        return STRING
    if dtype.kind in NUMERIC_KINDS and dtype.fields is None:
        return dtype.str
    return None


@dataclass
class Member:
    """The parsed ``activezarr`` member (empty when an index has none)."""

    format: int = FORMAT
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    attribute_types: dict[str, dict[str, str]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)  # fill facts
    present: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # variable -> why not indexed

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": self.format,
            "sources": self.sources,
            "attribute_types": self.attribute_types,
            "variables": self.variables,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def parse_member(value: Any, where: str) -> Member:
    """Check the structure of an ``activezarr`` member; ``IndexLoadError`` names what is wrong."""
    if value is None:
        return Member()
    if not isinstance(value, dict):
        raise IndexLoadError(f"{where}: 'activezarr' must be an object, not {_kind(value)}")
    fmt = value.get("format")
    if fmt != FORMAT or isinstance(fmt, bool):
        raise IndexLoadError(
            f"{where}: 'activezarr.format' is {fmt!r}; this activezarr reads format {FORMAT} "
            "(upgrade activezarr, or re-index the sources)"
        )
    sources = value.get("sources", {})
    if not isinstance(sources, dict) or len(sources) > MAX_SOURCES:
        raise IndexLoadError(f"{where}: 'activezarr.sources' must be an object of fingerprints")
    for url, fp in sources.items():
        if not isinstance(fp, dict) or not url:
            raise IndexLoadError(
                f"{where}: 'activezarr.sources[{url!r}]' must be an object (a fingerprint)"
            )
    types = value.get("attribute_types", {})
    if not isinstance(types, dict):
        raise IndexLoadError(f"{where}: 'activezarr.attribute_types' must be an object")
    for var, attrs in types.items():
        if not isinstance(attrs, dict):
            raise IndexLoadError(
                f"{where}: 'activezarr.attribute_types[{var!r}]' must be an object"
            )
        for attr, name in attrs.items():
            _check_type_name(name, f"{where}: 'activezarr.attribute_types[{var!r}][{attr!r}]'")
    variables = value.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, dict) for v in variables.values()):
        raise IndexLoadError(f"{where}: 'activezarr.variables' must map names to objects")
    skipped = value.get("skipped", {})
    if not isinstance(skipped, dict) or not all(isinstance(v, str) for v in skipped.values()):
        raise IndexLoadError(f"{where}: 'activezarr.skipped' must map names to reasons")
    return Member(FORMAT, sources, types, variables, present=True, skipped=skipped)


def _check_type_name(name: Any, where: str) -> None:
    if name == STRING:
        return
    try:
        dtype = np.dtype(name) if isinstance(name, str) and len(name) < 8 else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in NUMERIC_KINDS or dtype.str != name:
        raise IndexLoadError(f"{where} is {name!r}, not a numeric dtype string or 'str'")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), repr(value))


def typed_attrs(attrs: dict[str, Any], types: dict[str, str], where: str) -> dict[str, Any]:
    """``attrs`` with each attribute that has a recorded type as a numpy value of that type.

    A single value becomes a numpy scalar (``np.float32(0.01)``), several an array
    (``np.array([0, 255], dtype=np.uint8)``), as netCDF4-python returns attributes; strings
    stay ``str``. A value that does not fit its type raises ``IndexLoadError``.
    """
    out = dict(attrs)
    for key, name in types.items():
        if key in attrs:
            out[key] = typed_value(attrs[key], name, f"{where}: attribute '{key}'")
    return out


def typed_value(value: Any, name: str, where: str) -> Any:
    """One JSON attribute value as the numpy value of type ``name`` (see ``typed_attrs``)."""
    if name == STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value[0] if len(value) == 1 else value  # one string: str, as netCDF4
        raise IndexLoadError(f"{where} is recorded as a string but holds {value!r:.60}")
    dtype = np.dtype(name)
    items = value if isinstance(value, list) else [value]
    numbers = [_number(v, dtype, where) for v in items]
    try:
        arr = np.array(numbers, dtype=dtype)
    except (OverflowError, ValueError, TypeError) as exc:
        raise IndexLoadError(f"{where}: {value!r:.60} does not fit type {name} ({exc})") from None
    if dtype.kind in "iu" and any(int(a) != n for a, n in zip(arr.tolist(), numbers, strict=True)):
        raise IndexLoadError(f"{where}: {value!r:.60} does not fit type {name}")
    return arr if isinstance(value, list) and len(arr) != 1 else arr[0]


def _number(value: Any, dtype: np.dtype, where: str) -> Any:
    if dtype.kind == "b":
        if isinstance(value, bool):
            return value
    elif dtype.kind in "iu":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise IndexLoadError(f"{where} is {value!r:.60}, which is not a value of type {dtype.str}")


def combined_member(members: list[Member], names: set[str]) -> Member | None:
    """The member of an index combined from ``members``' indexes: the attribute types and fill
    facts of the variables ``names`` (the files agree on them: ``catalog.combine`` checks),
    and no sources, so that staleness and confinement go through the catalog's combined
    record, which knows how to rebuild it. None when no part has a member."""
    first = next((m for m in members if m.present), None)
    if first is None:
        return None
    return Member(
        attribute_types={n: t for n, t in first.attribute_types.items() if n in names},
        variables={n: f for n, f in first.variables.items() if n in names},
        present=True,
    )
