"""Reductions across the files of a catalog, file by file, combined into one answer.

``reduce_across`` gives what one ``Active`` over the concatenation of the files along a
dimension would give, without needing one chunk grid: each file is reduced with its own
``Active(..., components=True)`` and the partials are combined (sums and counts added, minima
and maxima folded; along a kept concatenated dimension they are laid end to end). A ``where``
range in coordinate values picks the files to read from the catalog's recorded ranges; a file
that overlaps the range only partly has its coordinate read to find the indices.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..active import Active, _normalize_axis
from ..errors import ActiveZarrError, StaleIndexError
from ..index.freshness import fingerprints, refresh_command
from ..plan import DimSelection, normalize_selection
from ..reduction.partials import OPS
from .concat import Layout, Part, layout, to_coordinate, window
from .progress import on_terminal

if TYPE_CHECKING:
    from .catalog import Catalog


@dataclass(frozen=True)
class FileTask:
    """One file's reduction: its part of the layout and the selection inside it."""

    part: Part
    selection: tuple


def reduce_across(
    catalog: Catalog,
    var: str,
    op: str,
    *,
    where: dict[str, slice] | None,
    axis,
    selection,
    concat_dim: str | None,
    components: bool,
    jobs: int,
    active_options: dict[str, Any],
):
    """See ``Catalog.reduce``."""
    if op not in OPS:
        raise ActiveZarrError(f"unknown operation {op!r}; use one of {', '.join(OPS)}")
    options = {"storage_options": catalog.storage_options, **active_options}
    lay = layout(catalog.entries, var, concat_dim)
    shape = _common_shape(lay)
    windows = _windows(lay, where or {}, options["storage_options"])
    shape[lay.parts[0].axis] = sum(hi - lo for _, lo, hi in windows)
    sel = normalize_selection(selection, tuple(shape), lay.dims)
    kept = [d for d, s in enumerate(sel) if not s.drop]
    axes = _normalize_axis(axis, len(kept))
    ax = lay.parts[0].axis
    tasks = _file_tasks(windows, sel, ax)
    catalog.files_read = [t.part.name for t in tasks]
    _check_fresh(tasks, catalog, options["storage_options"])
    if not tasks:  # nothing selected: an empty selection of one file gives dtypes and shape
        empty = list(sel)
        empty[ax] = DimSelection(0, 0, 1, 0)
        tasks = [FileTask(lay.parts[0], _as_selection(empty))]
    partials = _run(tasks, var, op, axes, options, jobs)
    reduced = axes is None or sel[ax].drop or kept.index(ax) in axes
    if reduced:
        parts = _fold(partials, op)
    else:
        out_axis = sum(1 for i, d in enumerate(kept) if d < ax and i not in (axes or ()))
        parts = {k: np.ma.concatenate([p[k] for p in partials], axis=out_axis) for k in partials[0]}
    out_kept = [d for i, d in enumerate(kept) if axes is None or i not in axes]
    flips = tuple(i for i, d in enumerate(out_kept) if sel[d].reverse)
    if flips:
        parts = {k: np.flip(v, axis=flips) for k, v in parts.items()}
    return parts if components else _answer(op, parts)


def _common_shape(lay: Layout) -> list[int]:
    var, ax = lay.variable, lay.parts[0].axis
    first = list(lay.parts[0].entry.variables[var]["shape"])
    for p in lay.parts[1:]:
        shape = list(p.entry.variables[var]["shape"])
        if [n for i, n in enumerate(shape) if i != ax] != [
            n for i, n in enumerate(first) if i != ax
        ]:
            raise ActiveZarrError(
                f"'{var}' has shape {shape} in {p.name} but {first} in {lay.parts[0].name}: "
                f"only '{lay.dim}' may differ between the files reduced together"
            )
    return first


def _windows(lay: Layout, where: dict, storage_options) -> list[tuple[Part, int, int]]:
    """Each file's index range after ``where``, for the files it keeps, in order."""
    unknown = set(where) - {lay.dim}
    if unknown:
        raise ActiveZarrError(
            f"where can only restrict the concatenated dimension '{lay.dim}', not "
            f"{sorted(unknown)}; select other dimensions by index with --select (selection= in "
            "Python)"
        )
    if lay.dim not in where:
        return [(p, 0, p.length) for p in lay.parts]
    bounds = where[lay.dim]
    if not isinstance(bounds, slice) or bounds.step is not None:
        raise ActiveZarrError(
            f"--where {lay.dim}=FIRST..LAST (where={{'{lay.dim}': slice(first, last)}} in "
            f"Python) takes coordinate values, both included, without a step; got {bounds!r}"
        )
    lo = -np.inf if bounds.start is None else to_coordinate(bounds.start, lay.units, lay.calendar)
    hi = np.inf if bounds.stop is None else to_coordinate(bounds.stop, lay.units, lay.calendar)
    out = []
    for p in lay.parts:
        start, stop = window(lay, p, lo, hi, storage_options)
        if stop > start:
            out.append((p, start, stop))
    return out


def _file_tasks(windows, sel: tuple[DimSelection, ...], ax: int) -> list[FileTask]:
    """Split the selection along the concatenated dimension into per-file selections."""
    d = sel[ax]
    tasks = []
    offset = 0
    for part, lo, hi in windows:
        end = min(d.stop, offset + hi - lo)
        first = (
            d.start if offset <= d.start else d.start + -(-(offset - d.start) // d.step) * d.step
        )
        if d.size and first < end:
            n = -(-(end - first) // d.step)
            start = lo + first - offset
            local = DimSelection(start, start + (n - 1) * d.step + 1, d.step, n, drop=d.drop)
            tasks.append(FileTask(part, _as_selection([*sel[:ax], local, *sel[ax + 1 :]])))
        offset += hi - lo
    return tasks


def _as_selection(dims) -> tuple:
    """``DimSelection``s back to ints and ascending slices (reversal is applied at the end)."""
    return tuple(s.start if s.drop else slice(s.start, s.stop, s.step) for s in dims)


def _check_fresh(tasks: list[FileTask], catalog: Catalog, storage_options) -> None:
    """One stat or HEAD per file about to be read; a changed one stops the reduction."""
    recorded = {t.part.name: t.part.entry.fingerprint for t in tasks}
    for url, now in fingerprints(list(recorded), storage_options).items():
        if isinstance(now, Exception) or now != recorded[url]:
            what = f"cannot be checked ({now})" if isinstance(now, Exception) else "changed"
            raise StaleIndexError(
                f"{url} {what} since it was indexed into {catalog.directory}; refresh with "
                f"`{refresh_command(url, catalog.directory)}`"
            )


def _run(tasks: list[FileTask], var: str, op: str, axes, options, jobs: int) -> list[dict]:
    def one(task: FileTask) -> dict:
        with Active(task.part.entry.index, var, check_stale=False, **options) as a:
            return a.reduce(op, task.selection, axes, components=True)

    bar = on_terminal(len(tasks))
    try:
        if len(tasks) == 1 or jobs <= 1:
            out = []
            for t in tasks:
                out.append(one(t))
                bar.step()
            return out
        with cf.ThreadPoolExecutor(min(jobs, len(tasks)), "activezarr-files") as pool:
            out = []
            for partial in pool.map(one, tasks):
                out.append(partial)
                bar.step()
            return out
    finally:
        bar.close()


def _fold(partials: list[dict], op: str) -> dict:
    """Combine the partials of files that cover the same output cells."""
    count = sum(np.asarray(p["count"]) for p in partials)
    out = {"count": np.ma.masked_array(count)}
    empty = count == 0
    if op in ("mean", "sum"):
        total = sum(
            np.where(np.asarray(p["count"]) > 0, np.ma.getdata(p["sum"]), 0) for p in partials
        )
        out["sum"] = np.ma.masked_array(
            np.asarray(total, dtype=np.ma.getdata(partials[0]["sum"]).dtype), mask=empty
        )
    elif op in ("min", "max"):
        better = np.minimum if op == "min" else np.maximum
        value, seen = np.ma.getdata(partials[0][op]), np.asarray(partials[0]["count"]) > 0
        for p in partials[1:]:
            v, c = np.ma.getdata(p[op]), np.asarray(p["count"]) > 0
            value = np.where(seen & c, better(value, v), np.where(c, v, value))
            seen = seen | c
        out[op] = np.ma.masked_array(value, mask=empty)
    return out


def _answer(op: str, parts: dict) -> np.ma.MaskedArray:
    """The result of ``op`` from its combined partials, as ``Active`` gives it."""
    count = np.asarray(np.ma.getdata(parts["count"]))
    if op == "count":
        return np.ma.masked_array(count)
    empty = count == 0
    if op == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.true_divide(
                np.ma.getdata(parts["sum"]), np.where(empty, 1, count), dtype=np.float64
            )
        return np.ma.masked_array(mean, mask=empty)
    return np.ma.masked_array(np.ma.getdata(parts[op]), mask=empty)
