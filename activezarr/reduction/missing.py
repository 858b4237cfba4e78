"""CF missing-data and packing rules, applied the way netCDF4-python applies them.

One unit per rule, as netCDF4-python's ``Variable._toma`` and its unpacking step do:

* ``_Unsigned`` exactly ``"true"``/``"True"`` on a signed integer variable: values are read as
  unsigned.
* Every attribute below is used only if it casts safely to the variable's type (netCDF4's
  ``_check_safecast``); one that does not is ignored with netCDF4's warning.
* ``_FillValue``: elements equal to it are missing (NaN fill: NaN elements are missing).
  Without a usable one, netCDF's default fill is missing, except on byte variables created
  without fill; a plain HDF5 dataset's own fill value is not a ``_FillValue``.
* ``missing_value`` (scalar or vector): elements equal to any of them are missing.
* ``valid_range`` (takes precedence when it has two values) or ``valid_min`` /
  ``valid_max``: elements outside are missing.
* ``scale_factor`` / ``add_offset``: applied after masking, element by element, in the dtype
  numpy's promotion of the stored values and the attributes gives (min and max swap when
  scale is negative); attributes that are not one number leave the data packed.

Masks are computed on the stored values, so a chunk is masked before it is unpacked."""

from __future__ import annotations

import warnings
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
    "f4": 9.969209968386869e36,
    "f8": 9.969209968386869e36,
}


def default_fill(dtype: np.dtype) -> Any:
    """The netCDF default fill value of ``dtype``, or None for types netCDF has none for."""
    return DEFAULT_FILLVALS.get(f"{dtype.kind}{dtype.itemsize}")


SAFECAST_WARNING = "WARNING: %s not used since it\ncannot be safely cast to variable data type"


def safe_cast(attrs: dict, name: str, dtype: np.dtype) -> np.ndarray | None:
    """Attribute ``name`` cast to ``dtype`` if netCDF4-python would use it, else None.

    netCDF4's ``_check_safecast``: the attribute is used only when casting it to the
    variable's type keeps its value (a string, 1.5 on an int32 variable, 40000 on int16,
    a float64 0.1 on float32 are not used), with the same warning when it is not.
    """
    if name not in attrs:
        return None
    try:
        att = np.array(attrs[name])
        with np.errstate(all="ignore"):
            cast = np.array(att, dtype)
    except (TypeError, ValueError, OverflowError):
        cast = None
    if cast is None or not _same_values(att, cast):
        warnings.warn(SAFECAST_WARNING % name, stacklevel=3)
        return None
    return cast if cast.size else None  # an empty attribute marks nothing


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """netCDF4's ``_safecast``: equal element by element, NaN equal to NaN."""
    try:
        with np.errstate(all="ignore"):
            return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())
    except Exception:  # noqa: BLE001 - strings and mixed types, as netCDF4 tries them
        try:
            return bool(np.asarray(a == b).all())
        except Exception:  # noqa: BLE001
            return False


def is_unsigned(attrs: dict, dtype: np.dtype) -> bool:
    """True when ``_Unsigned`` asks for a signed integer variable to be read as unsigned.

    netCDF4-python honours exactly ``"true"`` and ``"True"``; any other spelling (``"TRUE"``,
    ``1``) leaves the variable signed.
    """
    return dtype.kind == "i" and attrs.get("_Unsigned") in ("true", "True")


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
    def from_metadata(
        cls,
        raw: np.dtype,
        fill_attr: Any,
        attrs: dict,
        no_fill: bool = False,
        *,
        one_element: bool = False,
    ) -> MissingRule:
        """The rule of netCDF4-python's ``_toma`` for a variable of stored dtype ``raw``.

        ``fill_attr`` is the ``_FillValue`` attribute (None when the file has none);
        ``no_fill`` says the variable was created without fill (HDF5 fill time NEVER), in
        which case byte variables do not mask the default fill. ``one_element``: the rule
        for a read of one element (see ``swaps_one_element``).
        """
        native = raw.newbyteorder("=")
        sdt = storage_dtype(raw, attrs)
        swap = one_element and swaps_one_element(raw, attrs)
        view = lambda arr: None if arr is None else _unsigned_view(arr, sdt, swap)
        cf = {k: v for k, v in attrs.items() if k in CF_MISSING_ATTRS}
        if fill_attr is not None:
            cf["_FillValue"] = decode_json_float(fill_attr)
        mv = view(safe_cast(cf, "missing_value", native))
        mvals = tuple(np.asarray(v) for v in mv.reshape(-1)) if mv is not None else ()
        fill = view(safe_cast(cf, "_FillValue", native))
        if fill is None and not (no_fill and native.itemsize == 1):
            fill = _default_fill_mask(native, sdt)
        vmin, vmax = _valid_bounds(cf, native)
        fill = None if fill is None else fill.reshape(-1)[:1].reshape(())
        return cls(fill, mvals, view(_one(vmin)), view(_one(vmax)))

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


def swaps_one_element(raw: np.dtype, attrs: dict) -> bool:
    """netCDF4-python reads one element of a big-endian ``_Unsigned`` variable (of more than
    one byte) as a native numpy scalar, views it as unsigned in native order, but views the
    big-endian ``_FillValue``, ``missing_value`` and valid bounds in that same native order:
    they are compared byte-swapped. activezarr masks one-element reads the same way."""
    return raw.byteorder == ">" and raw.itemsize > 1 and is_unsigned(attrs, raw)


def _unsigned_view(arr: np.ndarray, sdt: np.dtype, swap: bool) -> np.ndarray:
    out = arr.view(sdt)
    return out.byteswap() if swap else out


def _isnan(value: np.ndarray) -> bool:
    return value.dtype.kind == "f" and bool(np.isnan(value))


def decode_json_float(value: Any) -> Any:
    """Undo zarr's JSON spelling of non-finite floats ("NaN", "Infinity")."""
    names = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [names.get(v, v) if isinstance(v, str) else v for v in value]
    return value


CF_MISSING_ATTRS = ("missing_value", "valid_range", "valid_min", "valid_max")


def _one(bound: np.ndarray | None) -> np.ndarray | None:
    """A bound of one value; a vector ``valid_min``/``valid_max`` bounds nothing."""
    return bound.reshape(()) if bound is not None and bound.size == 1 else None


def _default_fill_mask(native: np.dtype, sdt: np.dtype) -> np.ndarray | None:
    """The netCDF default fill as netCDF4 compares it with the (maybe unsigned) data.

    netCDF4 compares an ``_Unsigned`` variable's unsigned values with the *signed* default
    fill, which never matches: then no default fill is masked.
    """
    default = default_fill(native)
    if default is None or (sdt.kind == "u" and native.kind == "i" and default < 0):
        return None
    return np.array(default, native)


def _valid_bounds(cf: dict, native: np.dtype) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``valid_range`` when it is usable and has two values, else ``valid_min``/``valid_max``."""
    vrange = safe_cast(cf, "valid_range", native)
    vmin = safe_cast(cf, "valid_min", native)  # checked (and warned about) in any case,
    vmax = safe_cast(cf, "valid_max", native)  # as netCDF4 does
    if vrange is not None and vrange.size == 2:
        lo, hi = vrange.reshape(-1)
        return np.asarray(lo), np.asarray(hi)
    return vmin, vmax


@dataclass(frozen=True)
class Packing:
    """CF ``scale_factor`` / ``add_offset`` unpacking, as netCDF4-python applies it."""

    scale_factor: np.generic | None
    add_offset: np.generic | None

    @classmethod
    def from_attrs(cls, attrs: dict, raw: np.dtype) -> Packing:
        """The packing of a variable; none (with netCDF4's warning) when an attribute is not
        one number, as netCDF4-python skips unpacking then."""
        try:
            return cls(
                _attr_scalar(attrs.get("scale_factor"), raw),
                _attr_scalar(attrs.get("add_offset"), raw),
            )
        except ValueError:
            warnings.warn(
                "invalid scale_factor or add_offset attribute, no unpacking done...", stacklevel=3
            )
            return cls(None, None)

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
    """A packing attribute as a numpy scalar of the dtype it had in the file.

    An index that records attribute types gives numpy values: they are used as they are, so
    the decoded dtype follows numpy's promotion exactly as in netCDF4 (float64 attributes on
    int16 give float64, an integer scale on integers keeps an integer type). Plain JSON keeps
    only the number: a float32 attribute written as its exact float64 expansion
    (0.009999999776482582) round-trips through float32, a float64 one (0.01) does not; exact
    binary fractions (0.5) are ambiguous, and CF packing of small integers uses float32.
    Raises ValueError for anything that is not one number.
    """
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ValueError("not one number")
        value = value[0]
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError("not one number")
        value = value.reshape(-1)[0]
    if isinstance(value, np.generic):
        if value.dtype.kind not in "iuf":
            raise ValueError("not a number")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")  # noqa: TRY004 - one error for every bad attribute
    if isinstance(value, int):
        return np.float64(value) if raw.kind == "f" and raw.itemsize == 8 else np.float32(value)
    if float(np.float32(value)) != value:
        return np.float64(value)
    small = raw.itemsize <= 2 or (raw.kind == "f" and raw.itemsize == 4)
    return np.float32(value) if small else np.float64(value)
