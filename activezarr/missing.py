"""CF missing-data and packing rules, applied the way netCDF4-python applies them.

One unit per rule, as netCDF4-python's ``Variable._toma`` and its unpacking step do:

* ``_Unsigned = "true"`` on a signed integer variable: values are read as unsigned.
* ``_FillValue`` (or the netCDF default fill when absent): elements equal to it are missing
  (NaN fill: NaN elements are missing).
* ``missing_value`` (scalar or vector): elements equal to any of them are missing.
* ``valid_range`` (takes precedence) or ``valid_min`` / ``valid_max``: elements outside are
  missing. Bounds and missing values are cast to the variable's dtype first.
* ``scale_factor`` / ``add_offset``: applied after masking and, for reductions, after reducing
  (``sum = scale * sum_raw + offset * count``; min and max swap when scale is negative).

Masks are computed on the stored values, so a chunk is masked and reduced before unpacking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# netCDF-C's default fill values (netcdf.h NC_FILL_*), by numpy dtype kind and size.
DEFAULT_FILLVALS: dict[str, Any] = {
    "i1": -127,
    "u1": 255,
    "i2": -32767,
    "u2": 65535,
    "i4": -2147483647,
    "u4": 4294967295,
    "i8": -9223372036854775806,
    "u8": 18446744073709551614,
    "f2": 9.969209968386869e36,
    "f4": 9.969209968386869e36,
    "f8": 9.969209968386869e36,
}


def default_fill(dtype: np.dtype) -> Any:
    """The netCDF default fill value of ``dtype``, or None for types netCDF has none for."""
    return DEFAULT_FILLVALS.get(f"{dtype.kind}{dtype.itemsize}")


def _as_dtype(value: Any, dtype: np.dtype) -> np.ndarray | None:
    """``value`` cast to ``dtype`` as netCDF4-python does, or None if it does not fit."""
    try:
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and dtype.kind in "iu" and not np.all(np.isfinite(arr)):
            return None
        with np.errstate(all="ignore"):
            return arr.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        return None


def is_unsigned(attrs: dict, dtype: np.dtype) -> bool:
    """True when ``_Unsigned`` asks for a signed integer variable to be read as unsigned."""
    return dtype.kind == "i" and str(attrs.get("_Unsigned", "")).lower() == "true"


def storage_dtype(raw: np.dtype, attrs: dict) -> np.dtype:
    """The native-order dtype values are compared and reduced in (unsigned view applied)."""
    native = raw.newbyteorder("=")
    if is_unsigned(attrs, raw):
        return np.dtype(f"u{raw.itemsize}")
    return native


@dataclass(frozen=True)
class MissingRule:
    """Which stored values are missing. Values are in the storage dtype."""

    fill: np.ndarray | None
    missing_values: tuple[np.ndarray, ...]
    valid_min: np.ndarray | None
    valid_max: np.ndarray | None

    @classmethod
    def from_metadata(cls, raw: np.dtype, fill_value: Any, attrs: dict) -> MissingRule:
        """Build the rule from the zarr ``fill_value`` and the CF attributes."""
        sdt = storage_dtype(raw, attrs)
        native = raw.newbyteorder("=")

        def cast(value: Any) -> np.ndarray | None:
            arr = _as_dtype(value, native)
            return None if arr is None else arr.view(sdt)

        fill = attrs.get("_FillValue", fill_value)
        if fill is None:
            fill = default_fill(native)
        fill_arr = None if fill is None else cast(_decode_json_float(fill))
        if is_unsigned(attrs, raw) and fill is not None and fill == default_fill(native):
            # netCDF4-python compares unsigned data with the *signed* default fill, which
            # never matches: a default fill is not masked on _Unsigned variables.
            fill_arr = None
        mv = attrs.get("missing_value")
        mvals: tuple[np.ndarray, ...] = ()
        if mv is not None:
            arr = cast(np.atleast_1d(_decode_json_float(mv)))
            mvals = tuple(np.asarray(v) for v in arr) if arr is not None else ()
        vmin, vmax = _valid_bounds(attrs, cast)
        return cls(fill_arr, mvals, vmin, vmax)

    def equality_values(self) -> list[np.ndarray]:
        """Every value that marks an element as missing by equality (NaN included)."""
        values = list(self.missing_values)
        if self.fill is not None:
            values.append(self.fill)
        return values

    def clean_test(self) -> tuple[str, Any, Any] | None:
        """How one scalar pass can prove a block has nothing to mask, or None.

        ``("max", limit, valid_max)``: nothing is missing when the block's maximum is below
        ``limit`` (every missing value) and at most ``valid_max``. ``("min", limit,
        valid_min)``: the mirror image, for missing values below the data (fills like -999).
        None when neither fits (bounds on both sides, a NaN missing value, values on both
        sides of the data).
        """
        values = self.equality_values()
        if any(_isnan(v) for v in values):
            return None
        if self.valid_min is None and all(v > 0 for v in values):
            return "max", (min(values) if values else None), self.valid_max
        if self.valid_max is None and all(v < 0 for v in values):
            return "min", (max(values) if values else None), self.valid_min
        return None

    def mask(self, data: np.ndarray) -> np.ndarray | None:
        """Boolean mask of missing elements of ``data``, or None when none can be missing."""
        mask = None
        for value in self.equality_values():
            hit = np.isnan(data) if _isnan(value) else data == value
            mask = hit if mask is None else mask | hit
        if self.valid_min is not None:
            hit = data < self.valid_min
            mask = hit if mask is None else mask | hit
        if self.valid_max is not None:
            hit = data > self.valid_max
            mask = hit if mask is None else mask | hit
        return mask


def _isnan(value: np.ndarray) -> bool:
    return value.dtype.kind == "f" and bool(np.isnan(value))


def _decode_json_float(value: Any) -> Any:
    """Undo zarr's JSON spelling of non-finite floats ("NaN", "Infinity")."""
    names = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [names.get(v, v) if isinstance(v, str) else v for v in value]
    return value


def _valid_bounds(attrs: dict, cast) -> tuple[np.ndarray | None, np.ndarray | None]:
    vrange = attrs.get("valid_range")
    if vrange is not None and np.size(vrange) == 2:
        lo, hi = np.ravel(vrange)
        return cast(lo), cast(hi)
    vmin = attrs.get("valid_min")
    vmax = attrs.get("valid_max")
    return (None if vmin is None else cast(vmin)), (None if vmax is None else cast(vmax))


@dataclass(frozen=True)
class Packing:
    """CF ``scale_factor`` / ``add_offset`` unpacking, as netCDF4-python applies it."""

    scale_factor: np.generic | None
    add_offset: np.generic | None

    @classmethod
    def from_attrs(cls, attrs: dict, raw: np.dtype) -> Packing:
        return cls(
            _attr_scalar(attrs.get("scale_factor"), raw),
            _attr_scalar(attrs.get("add_offset"), raw),
        )

    @property
    def active(self) -> bool:
        return self.scale_factor is not None or self.add_offset is not None

    def decode(self, values: np.ndarray) -> np.ndarray:
        """Unpack stored values (array or 0-d) exactly as netCDF4-python does."""
        s, o = self.scale_factor, self.add_offset
        if s is not None and o is not None:
            if o != 0.0 or s != 1.0:
                return values * s + o
            return values.astype(s.dtype)
        if s is not None and s != 1.0:
            return values * s
        if o is not None and o != 0.0:
            return values + o
        return values

    def decoded_dtype(self, stored: np.dtype) -> np.dtype:
        return self.decode(np.zeros((), stored)).dtype

    @property
    def scale(self) -> float:
        return 1.0 if self.scale_factor is None else float(self.scale_factor)

    @property
    def offset(self) -> float:
        return 0.0 if self.add_offset is None else float(self.add_offset)


def _attr_scalar(value: Any, raw: np.dtype) -> np.generic | None:
    """A packing attribute as a numpy scalar of the dtype it most likely had in the file.

    JSON keeps only the number. A float32 attribute written as its exact float64 expansion
    (0.009999999776482582) round-trips through float32; a float64 one (0.01) does not. Exact
    binary fractions (0.5) are ambiguous: CF packing of small integers uses float32 for them.
    """
    if value is None:
        return None
    if isinstance(value, np.generic):
        return value
    value = np.ravel(value)[0] if isinstance(value, list | tuple | np.ndarray) else value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return np.float64(value) if raw.kind == "f" and raw.itemsize == 8 else np.float32(value)
    if float(np.float32(value)) != value:
        return np.float64(value)
    small = raw.itemsize <= 2 or (raw.kind == "f" and raw.itemsize == 4)
    return np.float32(value) if small else np.float64(value)
