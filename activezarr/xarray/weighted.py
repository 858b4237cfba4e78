"""``da.active.weighted(w)``: weighted mean and sum from per-cell partials.

The dimensions the weights vary along stay in the active reduction (kept, not reduced), so
chunks are still reduced where the data lives over every other reduced dimension; the
weighting is then a small numpy sum over the kept cells: ``sum(w * S) / sum(w * C)`` where
``S`` and ``C`` are the per-cell sums and counts of valid values. That equals xarray's
``da.weighted(w).mean(dim)`` with missing values skipped.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from ..errors import ActiveZarrError
from .accessor import _dims, _keep_attrs, append_cell_methods

if TYPE_CHECKING:
    from .accessor import ActiveDataArrayAccessor


class ActiveWeightsWarning(UserWarning):
    """The weights vary along every reduced dimension, so nothing is reduced actively."""


class ActiveWeighted:
    """Weighted ``mean`` and ``sum`` of an ``.active`` DataArray.

    Parameters
    ----------
    accessor : ActiveDataArrayAccessor
        ``da.active`` (with its options).
    weights : xarray.DataArray
        Weights without missing values, over dimensions of ``da`` (e.g. ``cos(lat)``).

    Examples
    --------
    >>> w = np.cos(np.deg2rad(ds.lat))  # doctest: +SKIP
    >>> ds.tas.active.weighted(w).mean(["lat", "lon"])  # area-weighted series  # doctest: +SKIP
    """

    def __init__(self, accessor: ActiveDataArrayAccessor, weights: xr.DataArray) -> None:
        if not isinstance(weights, xr.DataArray):
            raise TypeError("weights must be an xarray.DataArray (e.g. np.cos(np.deg2rad(ds.lat)))")
        if weights.isnull().any():
            raise ValueError(
                "`weights` cannot contain missing values. Missing values can be replaced "
                "by `weights.fillna(0)`."
            )
        da = accessor._da
        extra = [d for d in weights.dims if d not in da.dims]
        if extra:
            raise ActiveZarrError(
                f"weights have dimensions {extra} that the data {da.dims} does not; "
                "select or reduce them away first"
            )
        self._accessor = accessor
        self.weights = weights

    def mean(self, dim=None, *, keep_attrs: bool | None = None) -> xr.DataArray:
        """Weighted mean over ``dim``: ``sum(w * x) / sum(w)`` over valid values."""
        return self._reduce("mean", dim, keep_attrs)

    def sum(self, dim=None, *, keep_attrs: bool | None = None) -> xr.DataArray:
        """Weighted sum over ``dim``; NaN where nothing valid was seen."""
        return self._reduce("sum", dim, keep_attrs)

    def sum_of_weights(self, dim=None) -> xr.DataArray:
        """``sum(w)`` over the valid values along ``dim`` (0 where none)."""
        _, den, _ = self._weighted_sums(dim)
        return den

    def _weighted_sums(self, dim):
        da = self._accessor._da
        reduced = _dims(da.dims, dim)
        wdims = [d for d in self.weights.dims if d in reduced]
        active_reduced = [d for d in reduced if d not in wdims]
        if wdims and not active_reduced:
            size = int(np.prod([da.sizes[d] for d in da.dims]))
            warnings.warn(
                f"the weights vary along every reduced dimension {reduced}, so no chunk is "
                f"reduced where it lives: all {size} values travel as partials. "
                "xarray's da.weighted(w) reads the same amount",
                ActiveWeightsWarning,
                stacklevel=4,
            )
        target = self._accessor._target()
        part = target.partials(active_reduced, "mean")
        kept = [d for d in da.dims if d in part.dims]
        perm = [part.dims.index(d) for d in kept]
        coords = {n: c.variable for n, c in da.coords.items() if set(c.dims) <= set(kept)}
        total = xr.DataArray(np.transpose(part.value, perm), dims=kept, coords=coords)
        count = xr.DataArray(np.transpose(part.count, perm), dims=kept, coords=coords)
        w = self.weights
        if not wdims:
            return total * w, count * w, count
        # einsum: the weighted sums without a product array the size of the partials
        return xr.dot(total, w, dim=wdims), xr.dot(count, w, dim=wdims), count.sum(wdims)

    def _reduce(self, op: str, dim, keep_attrs: bool | None) -> xr.DataArray:
        da = self._accessor._da
        reduced = _dims(da.dims, dim)
        num, den, n = self._weighted_sums(dim)
        if op == "mean":
            result = (num / den.where(den != 0)).where(n > 0)
        else:
            result = num.where(n > 0)
        result = result.transpose(*[d for d in da.dims if d in result.dims])
        if da.dtype.kind == "f":  # xarray's dtype: boolean weights count as integers
            wdtype = self.weights.dtype if self.weights.dtype.kind != "b" else np.dtype(np.int64)
            result = result.astype(np.promote_types(da.dtype, wdtype))
        attrs = append_cell_methods(dict(da.attrs), reduced, op) if _keep_attrs(keep_attrs) else {}
        gone = set(reduced)
        coords = {n: c for n, c in da.coords.items() if not set(c.dims) & gone}
        result = result.assign_coords({k: v for k, v in coords.items() if k not in result.coords})
        result.attrs = attrs
        result.name = da.name
        return result
