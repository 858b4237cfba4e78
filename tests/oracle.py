"""The test oracle: netCDF4-python + numpy.ma on the same selection, as the API contract says.

``oracle_read`` is ``ncvar[sel]`` normalised to a MaskedArray of the decoded dtype (netCDF4
returns numpy scalars for unmasked 0-d results and ``np.ma.masked``, a float64 constant, for
masked ones). ``oracle_reduce`` applies the contract's reduction rules to it, and
``assert_same`` compares a result with the oracle: shape, dtype, mask and values.

Two deliberate choices beyond "call numpy.ma":

* cells that saw no valid element (count 0) are masked for mean/sum/min/max, also for empty
  selections, where numpy.ma would give 0 (sum) or raise (min/max) — the contract says "an
  empty selection gives count 0 and masked results";
* dtypes are compared without byte order: netCDF4 returns ``>f4`` for big-endian variables,
  and an implementation that returns native-endian values of the same type is conforming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

OPS = ("mean", "sum", "min", "max", "count")

# Relative tolerances for float64 accumulators (sum/mean of float data). Our implementation
# sums chunk partials in float64 while numpy.ma sums pairwise, so only rounding differs.
RTOL_FLOAT64 = 1e-10
# Locally, CF-scaled data are unpacked element by element before they are summed, exactly as
# netCDF4 unpacks them, so they are compared like any other data. A Reductionist server sums
# the stored integers and the client unpacks the sum (scale * sum + offset * count): there the
# result may differ from summing the unpacked float32 values by a few float32 ulps.
RTOL_SERVER_SCALED = 1e-6


def nc_variable(ds: netCDF4.Dataset, name: str) -> netCDF4.Variable:
    """Variable ``name`` of ``ds``: ``group/sub/name`` inside groups, as activezarr names it."""
    group, _, leaf = name.rpartition("/")
    return (ds[group] if group else ds).variables[leaf]


def decoded_dtype(ncvar: netCDF4.Variable) -> np.dtype:
    """The dtype netCDF4-python gives ``ncvar[...]`` (after _Unsigned and scale/offset).

    Follows ``Variable.__getitem__`` step by step: packing attributes that ``float()`` refuses
    (a vector ``scale_factor``) leave the data packed; ``scale_factor`` 1 with ``add_offset``
    0 converts to the scale's dtype; a lone 1 or 0 changes nothing.
    """
    dtype = np.dtype(ncvar.dtype)
    attrs = set(ncvar.ncattrs())
    if dtype.kind == "i" and getattr(ncvar, "_Unsigned", "false") in ("true", "True"):
        dtype = np.dtype(f"u{dtype.itemsize}")
    scale = ncvar.scale_factor if "scale_factor" in attrs else None
    offset = ncvar.add_offset if "add_offset" in attrs else None
    try:
        for value in (scale, offset):
            if value is not None:
                float(value)
    except (TypeError, ValueError):
        return dtype
    sample = np.zeros(1, dtype)
    if scale is not None and offset is not None:
        if offset != 0.0 or scale != 1.0:
            sample = sample * scale + offset
        else:
            sample = sample.astype(np.asarray(scale).dtype)
    elif scale is not None and scale != 1.0:
        sample = sample * scale
    elif offset is not None and offset != 0.0:
        sample = sample + offset
    return sample.dtype


def is_scaled(ncvar: netCDF4.Variable) -> bool:
    return bool({"scale_factor", "add_offset"} & set(ncvar.ncattrs()))


def _as_masked(value: Any, dtype: np.dtype) -> np.ma.MaskedArray:
    """``value`` (array, numpy scalar or np.ma.masked) as a MaskedArray of ``dtype``."""
    if value is np.ma.masked:
        return np.ma.masked_array(np.zeros((), dtype), mask=True)
    out = np.ma.masked_array(value)
    if out.dtype.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        out = out.astype(dtype)
    # a full mask array, so that callers can index it like the data
    return np.ma.masked_array(out.data, mask=np.ma.getmaskarray(out))


def oracle_read(nc_path: str | Path, var: str, selection: Any = Ellipsis) -> np.ma.MaskedArray:
    """``netCDF4.Dataset(nc_path)[var][selection]`` as a MaskedArray of the decoded dtype."""
    with netCDF4.Dataset(nc_path) as ds:
        ncvar = nc_variable(ds, var)
        ncvar.set_auto_maskandscale(True)
        dtype = decoded_dtype(ncvar)
        return _as_masked(ncvar[selection], dtype)


def oracle_info(nc_path: str | Path, var: str) -> dict[str, Any]:
    """Shape, decoded dtype and whether CF scale/offset applies."""
    with netCDF4.Dataset(nc_path) as ds:
        ncvar = nc_variable(ds, var)
        return {
            "shape": tuple(ncvar.shape),
            "dtype": decoded_dtype(ncvar),
            "scaled": is_scaled(ncvar),
            "dimensions": tuple(ncvar.dimensions),
        }


def sum_dtype(dtype: np.dtype) -> np.dtype:
    """The contract's widened sum dtype: int64, uint64 or float64."""
    kind = np.dtype(dtype).kind
    if kind == "u":
        return np.dtype(np.uint64)
    if kind in "ib":
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def result_dtype(op: str, dtype: np.dtype) -> np.dtype:
    if op == "mean":
        return np.dtype(np.float64)
    if op == "sum":
        return sum_dtype(dtype)
    if op == "count":
        return np.dtype(np.int64)
    return np.dtype(dtype).newbyteorder("=")


def _normalise_axis(axis: Any, ndim: int) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    return tuple(sorted(int(a) % ndim if ndim else int(a) for a in axes))


def reduce_masked(data: np.ma.MaskedArray, op: str, axis: Any = None) -> np.ma.MaskedArray:
    """Apply the contract's reduction ``op`` to already-decoded data."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    data = np.ma.masked_array(data.data, mask=np.ma.getmaskarray(data))
    axes = _normalise_axis(axis, data.ndim)
    dtype = result_dtype(op, data.dtype)
    count = np.ma.count(data, axis=axes)
    count = np.asarray(count, dtype=np.int64)
    if op == "count":
        return np.ma.masked_array(count, mask=np.zeros(count.shape, bool))
    if data.size == 0:
        # numpy.ma gives 0 (sum) or raises (min/max) here; the contract says masked.
        return np.ma.masked_array(np.zeros(count.shape, dtype), mask=np.ones(count.shape, bool))
    if op == "mean":
        value = np.ma.mean(data, axis=axes, dtype=np.float64)
        value = _nan_means_unmasked(value, data, axes, count)
    elif op == "sum":
        value = np.ma.sum(data, axis=axes, dtype=dtype)
    elif op == "min":
        value = np.ma.min(data, axis=axes)
    else:
        value = np.ma.max(data, axis=axes)
    if value is np.ma.masked:
        out = np.ma.masked_array(np.zeros((), dtype), mask=True)
    else:
        value = np.ma.masked_array(value)
        out = np.ma.masked_array(
            np.asarray(value.data).astype(dtype), mask=np.ma.getmaskarray(value)
        )
    mask = np.ma.getmaskarray(out) | (count == 0)
    return np.ma.masked_array(out.data, mask=mask)


def _nan_means_unmasked(value: Any, data: np.ma.MaskedArray, axes, count) -> Any:
    """numpy.ma masks a NaN mean when reducing along an axis (its division masks invalid
    results) but not a full mean: keep NaN means unmasked, as sum/count gives them."""
    if data.dtype.kind != "f" or axes is None or value is np.ma.masked:
        return value
    mask = np.ma.getmaskarray(value) & (count > 0)
    if not mask.any():
        return value
    total = np.ma.sum(data, axis=axes, dtype=np.float64)
    filled = np.asarray(np.ma.getdata(value), np.float64).copy()
    filled[mask] = np.asarray(np.ma.getdata(total))[mask] / count[mask]
    return np.ma.masked_array(filled, mask=np.ma.getmaskarray(value) & ~mask)


def oracle_reduce(
    nc_path: str | Path, var: str, op: str, selection: Any = Ellipsis, axis: Any = None
) -> np.ma.MaskedArray:
    """The contract's oracle for ``Active(index, var).<op>(axis=axis)[selection]``.

    ``d = ncvar[selection]`` (auto mask and scale on); mean = ``np.ma.mean(d, axis,
    dtype=float64)``, sum = ``np.ma.sum(d, axis, dtype=widened)``, min/max = ``np.ma.min/max``,
    count = ``np.ma.count``. Always a MaskedArray, 0-d when ``axis`` is None.
    """
    return reduce_masked(oracle_read(nc_path, var, selection), op, axis)


def oracle_atol(data: np.ma.MaskedArray, op: str, axis: Any = None) -> np.ndarray | float:
    """An absolute tolerance for float sums/means: rounding relative to sum(|d|).

    Needed where positive and negative values cancel (latitudes, anomalies): a relative
    tolerance on a sum near zero says nothing about the rounding of its terms. The mean of
    64-bit integers is a float64 accumulation too (``2**62 + 2**62 - 2**63 + 1`` depends on
    the order of the additions), so it gets the same tolerance; their sums are exact.
    """
    wide_int_mean = op == "mean" and data.dtype.kind in "iu" and data.dtype.itemsize == 8
    if op not in ("sum", "mean") or data.size == 0:
        return 0.0
    if data.dtype.kind != "f" and not wide_int_mean:
        return 0.0
    absolute = np.ma.masked_array(np.abs(data.data.astype(np.float64)), mask=data.mask)
    scale = reduce_masked(absolute, op, axis)
    scale = np.ma.filled(scale, 0.0)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(scale), scale, 0.0) * 1e-12


def tolerance(op: str, decoded: np.dtype, scaled: Any = False) -> float:
    """Relative tolerance for comparing ``op`` results of data of dtype ``decoded``.

    ``scaled`` (False, or the decoded dtype of CF-scaled data) no longer loosens anything:
    unpacked values are reduced as netCDF4 returns them. Callers comparing server-side sums
    of packed data pass ``rtol=RTOL_SERVER_SCALED`` themselves.
    """
    decoded = np.dtype(decoded)
    if op in ("count", "min", "max", "read") or decoded.kind in "iub":
        return 0.0
    return RTOL_FLOAT64


def assert_same(
    result: Any,
    expected: np.ma.MaskedArray,
    op: str,
    *,
    rtol: float | None = None,
    atol: Any = 0.0,
    scaled: Any = False,
    where: str = "",
) -> None:
    """Assert that ``result`` is the oracle's ``expected``: type, shape, dtype, mask, values.

    Integers, counts, min and max must match exactly (unless CF scaling is involved: pass
    ``scaled`` = the decoded dtype); float64 accumulators (sum, mean) within ``rtol`` (default
    per ``tolerance``) plus ``atol``.
    NaN matches NaN.
    """
    prefix = f"{where}: " if where else ""
    assert isinstance(result, np.ma.MaskedArray), (
        f"{prefix}{op} returned {type(result).__name__}, expected numpy.ma.MaskedArray"
    )
    assert result.shape == expected.shape, f"{prefix}{op} shape {result.shape} != {expected.shape}"
    got_dtype = np.dtype(result.dtype).newbyteorder("=")
    want_dtype = np.dtype(expected.dtype).newbyteorder("=")
    assert got_dtype == want_dtype, f"{prefix}{op} dtype {result.dtype} != {expected.dtype}"
    got_mask = np.ma.getmaskarray(result)
    want_mask = np.ma.getmaskarray(expected)
    if not np.array_equal(got_mask, want_mask):
        bad = np.argwhere(got_mask != want_mask)[:5].tolist()
        raise AssertionError(
            f"{prefix}{op} mask differs at {bad} (got {got_mask.sum()} masked, "
            f"expected {want_mask.sum()}) of shape {expected.shape}"
        )
    valid = ~want_mask
    got = np.asarray(result.data)[valid]
    want = np.asarray(expected.data)[valid]
    if rtol is None:
        rtol = tolerance(op, expected.dtype if op in ("min", "max") else want_dtype, scaled)
    if np.ndim(atol):
        atol = np.broadcast_to(atol, expected.shape)[valid]
    if rtol == 0 and not np.any(atol):
        same = (got == want) | (_isnan(got) & _isnan(want))
    else:
        same = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if not np.all(same):
        idx = np.flatnonzero(~np.asarray(same))[:5]
        raise AssertionError(
            f"{prefix}{op} values differ ({(~np.asarray(same)).sum()} of {same.size}, "
            f"rtol={rtol}): got {got[idx].tolist()} expected {want[idx].tolist()}"
        )


def assert_reduces_like(
    active: Any, expected: np.ma.MaskedArray, sel: Any, op: str, axis: Any, *, where: str = ""
) -> None:
    """Assert that ``active.op(axis=axis)[sel]`` is the oracle's reduction of ``expected`` (the
    oracle's read of ``sel``), within ``oracle_atol``."""
    assert_same(
        getattr(active, op)(axis=axis)[sel],
        reduce_masked(expected, op, axis),
        op,
        atol=oracle_atol(expected, op, axis),
        where=where,
    )


def _isnan(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "fc":
        return np.isnan(values)
    return np.zeros(values.shape, bool)


def assert_same_read(
    result: Any, expected: np.ma.MaskedArray, *, scaled: Any = False, where: str = ""
) -> None:
    """Assert that ``a[sel]`` is ``ncvar[sel]``: shape, dtype, mask and (valid) values.

    A 0-d result may also take netCDF4-python's own form: a numpy scalar of the decoded dtype
    when valid, ``np.ma.masked`` when masked.
    """
    if expected.shape == () and not isinstance(result, np.ma.MaskedArray):
        assert isinstance(result, np.generic), (
            f"{where}: read returned {type(result).__name__} for a 0-d selection"
        )
        result = np.ma.masked_array(result)
    elif result is np.ma.masked and expected.shape == ():
        assert bool(np.ma.getmaskarray(expected)), f"{where}: read is masked, netCDF4's is not"
        return
    rtol = tolerance("min", expected.dtype, expected.dtype if scaled else False)
    assert_same(result, expected, "read", rtol=rtol, where=where)
