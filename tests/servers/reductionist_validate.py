"""Validation of Reductionist v2 request bodies, following the JSON rules of the reference spec."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

DTYPES = ("int32", "int64", "uint32", "uint64", "float32", "float64")
OPERATIONS = ("count", "min", "max", "sum", "select")
COMPRESSIONS = ("gzip", "zlib")
UNSUPPORTED_COMPRESSIONS = ("blosc2",)
FILTERS = ("shuffle", "shuffle_simd")
MISSING_KINDS = ("missing_value", "missing_values", "valid_min", "valid_max", "valid_range")
REQUIRED = ("interface_type", "url", "dtype")
INVALID = "request data is not valid"


class ApiError(Exception):
    """An error answered as `{"error": {"message", "caused_by"}}` with an HTTP status."""

    def __init__(self, status: int, message: str, caused_by: list[str] | tuple = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.caused_by = list(dict.fromkeys(caused_by))

    def body(self) -> dict:
        error: dict = {"message": self.message}
        if self.caused_by:
            error["caused_by"] = self.caused_by
        return {"error": error}


class Invalid(ValueError):
    """One request field (or a combination of fields) failed validation."""


@dataclass(frozen=True)
class Request:
    """A validated request; numbers are normalised (slices, tuples, numpy scalars)."""

    interface_type: str
    url: str
    dtype: np.dtype
    byte_order: str | None = None
    offset: int | None = None
    size: int | None = None
    shape: tuple[int, ...] | None = None
    order: str = "C"
    selection: tuple[slice, ...] | None = None
    axis: tuple[int, ...] | None = None
    compression: str | None = None
    filters: tuple[tuple[str, int], ...] = ()
    missing: tuple[str, tuple] | None = None
    option_disable_chunk_cache: bool = False
    option_shape_as_bytes: bool = False
    option_count_as_bytes: bool = False


def parse_request(body: bytes, content_type: str | None) -> Request:
    """Parse and validate a request body; raise ApiError(400) when it is not valid."""
    try:
        _check_content_type(content_type)
        fields = _check_fields(_load_json(body))
        _check_consistency(fields)
        return Request(**fields)
    except Invalid as exc:
        raise ApiError(400, INVALID, [str(exc)]) from None


def check_length(nbytes: int, itemsize: int, shape: tuple[int, ...] | None) -> None:
    """Raise Invalid unless nbytes fits the shape (or is a whole number of items)."""
    if shape is not None and nbytes != math.prod(shape) * itemsize:
        raise Invalid(f"size {nbytes} does not match shape {list(shape)} x itemsize {itemsize}")
    if nbytes % itemsize:
        raise Invalid(f"size {nbytes} is not a multiple of the dtype size {itemsize}")


def _check_content_type(content_type: str | None) -> None:
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime != "application/json":
        raise Invalid("Expected request with `Content-Type: application/json`")


def _reject_constant(name: str) -> None:
    raise Invalid(f"invalid JSON number {name}")


def _load_json(body: bytes) -> dict:
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"failed to parse the request body as JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Invalid("invalid type: expected a JSON object")
    return doc


def _check_fields(doc: dict) -> dict:
    unknown = [key for key in doc if key not in _PARSERS]
    if unknown:
        raise Invalid(f"unknown field `{unknown[0]}`, expected one of {', '.join(_PARSERS)}")
    present = {key: value for key, value in doc.items() if value is not None}
    for key in REQUIRED:
        if key not in present:
            raise Invalid(f"missing field `{key}`")
    return {key: _PARSERS[key](value) for key, value in present.items()}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _uint(name: str, value, minimum: int = 0) -> int:
    if not _is_int(value) or value < minimum:
        raise Invalid(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _choice(name: str, value, choices: tuple) -> str:
    if not isinstance(value, str) or value not in choices:
        raise Invalid(f"{name}: unknown variant {value!r}, expected one of {list(choices)}")
    return value


def _interface_type(value) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid("interface_type: expected a non-empty string")
    return value


def _url(value) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or not parts.scheme or not parts.netloc:
        raise Invalid(f"url: expected an absolute URL, got {value!r}")
    return value


def _dtype(value) -> np.dtype:
    return np.dtype(_choice("dtype", value, DTYPES))


def _byte_order(value) -> str:
    return {"big": ">", "little": "<"}[_choice("byte_order", value, ("big", "little"))]


def _shape(value) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise Invalid("shape: expected a non-empty list of integers")
    return tuple(_uint("shape", dim, 1) for dim in value)


def _slice(item) -> slice:
    if isinstance(item, dict):
        if set(item) != {"start", "end", "stride"}:
            raise Invalid("selection: a slice object needs exactly start, end and stride")
        item = [item["start"], item["end"], item["stride"]]
    if not isinstance(item, list) or len(item) != 3 or not all(map(_is_int, item)):
        raise Invalid(f"selection: expected [start, end, stride] integers, got {item!r}")
    if item[2] == 0:
        raise Invalid("selection: stride must not be 0")
    return slice(*item)


def _selection(value) -> tuple[slice, ...]:
    if not isinstance(value, list) or not value:
        raise Invalid("selection: expected a non-empty list of slices")
    return tuple(_slice(item) for item in value)


def _axis(value) -> tuple[int, ...]:
    axes = [value] if _is_int(value) else value
    if not isinstance(axes, list):
        raise Invalid("axis: expected an integer or a list of integers")
    axes = tuple(_uint("axis", axis) for axis in axes)
    if any(b <= a for a, b in itertools.pairwise(axes)):
        raise Invalid("axis: values must be ascending and distinct")
    return axes


def _compression(value) -> str:
    if not isinstance(value, dict) or set(value) != {"id"}:
        raise Invalid('compression: expected {"id": <name>}')
    if value["id"] in UNSUPPORTED_COMPRESSIONS:
        raise Invalid(f"compression: {value['id']} is not supported by this test server")
    return _choice("compression id", value["id"], COMPRESSIONS)


def _filter(value) -> tuple[str, int]:
    if not isinstance(value, dict) or set(value) != {"id", "element_size"}:
        raise Invalid('filters: expected {"id": <name>, "element_size": <int>}')
    name = _choice("filter id", value["id"], FILTERS)
    return name, _uint("element_size", value["element_size"], 1)


def _filters(value) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list):
        raise Invalid("filters: expected a list")
    return tuple(_filter(item) for item in value)


def _numbers(name: str, value, count: int | None) -> tuple:
    values = value if isinstance(value, list) else None
    if values is None or not all(map(_is_number, values)):
        raise Invalid(f"missing: {name} expects a list of numbers")
    if count is not None and len(values) != count:
        raise Invalid(f"missing: {name} expects {count} numbers")
    return tuple(values)


def _missing(value) -> tuple[str, tuple]:
    if not isinstance(value, dict) or len(value) != 1:
        raise Invalid(f"missing: expected an object with exactly one of {list(MISSING_KINDS)}")
    kind, raw = next(iter(value.items()))
    _choice("missing", kind, MISSING_KINDS)
    if kind in ("missing_values", "valid_range"):
        return kind, _numbers(kind, raw, 2 if kind == "valid_range" else None)
    if not _is_number(raw):
        raise Invalid(f"missing: {kind} expects a number")
    return kind, (raw,)


def _flag(name: str):
    def parse(value) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"{name}: expected a boolean")
        return value

    return parse


_PARSERS = {
    "interface_type": _interface_type,
    "url": _url,
    "dtype": _dtype,
    "byte_order": _byte_order,
    "offset": lambda value: _uint("offset", value),
    "size": lambda value: _uint("size", value, 1),
    "shape": _shape,
    "order": lambda value: _choice("order", value, ("C", "F")),
    "selection": _selection,
    "axis": _axis,
    "compression": _compression,
    "filters": _filters,
    "missing": _missing,
    "option_disable_chunk_cache": _flag("option_disable_chunk_cache"),
    "option_shape_as_bytes": _flag("option_shape_as_bytes"),
    "option_count_as_bytes": _flag("option_count_as_bytes"),
}


def _check_consistency(fields: dict) -> None:
    shape = fields.get("shape")
    if "selection" in fields:
        _check_selection(fields["selection"], shape)
    if "axis" in fields:
        _check_axis(fields["axis"], shape)
    if "size" in fields and "compression" not in fields:
        check_length(fields["size"], fields["dtype"].itemsize, shape)
    if "missing" in fields:
        fields["missing"] = _cast_missing(fields["missing"], fields["dtype"])


def _check_selection(selection: tuple, shape: tuple | None) -> None:
    if shape is None:
        raise Invalid("selection requires shape to be specified")
    if len(selection) != len(shape):
        raise Invalid("shape and selection must have the same length")


def _check_axis(axes: tuple, shape: tuple | None) -> None:
    if shape is None:
        raise Invalid("axis requires shape to be specified")
    if len(axes) > len(shape) or any(axis >= len(shape) for axis in axes):
        raise Invalid(f"axis {list(axes)} out of range for {len(shape)} dimensions")


def _cast_missing(missing: tuple[str, tuple], dtype: np.dtype) -> tuple[str, tuple]:
    kind, values = missing
    cast = tuple(_cast_value(value, dtype) for value in values)
    if kind == "valid_range" and not cast[0] < cast[1]:
        raise Invalid(f"missing: valid_range minimum {values[0]} must be below {values[1]}")
    return kind, cast


def _cast_value(value, dtype: np.dtype):
    bad = Invalid(f"Incompatible value {value} for missing (dtype {dtype.name})")
    if dtype.kind in "iu":
        if isinstance(value, float) and not value.is_integer():
            raise bad
        info = np.iinfo(dtype)
        if not info.min <= int(value) <= info.max:
            raise bad
        return dtype.type(int(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cast = dtype.type(value)
    if not math.isfinite(value) or not np.isfinite(cast):
        raise bad
    return cast
