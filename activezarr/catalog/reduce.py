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
import itertools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..active import Active, _normalize_axis
from ..errors import ActiveZarrError, StaleIndexError
from ..index.freshness import fingerprints, refresh_command, unchecked
from ..index.load import VariableIndex, open_variables
from ..index.sources import is_remote
from ..plan import DimSelection, normalize_selection
from ..reduction.partials import OPS
from .concat import Layout, Part, concatenate, layout, narrowing_error, to_coordinate, window
from .members import members
from .progress import on_terminal

if TYPE_CHECKING:
    from .catalog import Catalog, Entry

log = logging.getLogger(__name__)


JOIN_FILES = 512  # files reduced together as one concatenated variable, at most


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
    lay = layout(_chosen(catalog, var, concat_dim, where), var, concat_dim)
    shape = _common_shape(lay)
    windows = _windows(lay, where or {}, options["storage_options"])
    _note_overlaps(lay, [part for part, _, _ in windows])
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


def _chosen(catalog: Catalog, var: str, dim: str | None, where: dict | None) -> list[Entry]:
    """The entries holding ``var`` whose recorded range meets ``where`` (chosen in the
    store); when none does, the earliest entry holding ``var``, which gives the empty
    answer its dtype and shape (or the error about ``where`` itself)."""
    return list(members(catalog, var, dim, where)) or list(
        members(catalog, var, dim, earliest=True)
    )


def _common_shape(lay: Layout) -> list[int]:
    var, ax = lay.variable, lay.parts[0].axis
    first = list(lay.parts[0].entry.variables[var]["shape"])
    for p in lay.parts[1:]:
        shape = list(p.entry.variables[var]["shape"])
        if [n for i, n in enumerate(shape) if i != ax] != [
            n for i, n in enumerate(first) if i != ax
        ]:
            raise narrowing_error(
                f"'{var}' has shape {shape} in {p.name} but {first} in {lay.parts[0].name}: "
                f"only '{lay.dim}' may differ between the files reduced together",
                [p.name],
                [q.name for q in lay.parts],
            )
    return first


def _note_overlaps(lay: Layout, parts: list[Part]) -> None:
    """Files that cover the same coordinate values are laid end to end like any others (an
    ensemble along time, say), so their shared steps all count: say so, naming them."""
    for before, after in itertools.pairwise(parts):
        if before.hi is not None and after.lo is not None and after.lo <= before.hi:
            log.warning(
                "%s (%s..%s) and %s (%s..%s) overlap in '%s': the reduction of '%s' counts the "
                "steps of both; to leave one out, narrow the catalog by path (--path GLOB) or "
                "by facets (FACET=VALUE terms)",
                before.name, lay.label(before.lo), lay.label(before.hi),
                after.name, lay.label(after.lo), lay.label(after.hi), lay.dim, lay.variable,
            )  # fmt: skip
            return


def _windows(lay: Layout, where: dict, storage_options) -> list[tuple[Part, int, int]]:
    """Each file's index range after ``where``, for the files it keeps, in order."""
    unknown = set(where) - {lay.dim}
    if unknown:
        what = (
            f"where can only restrict the concatenated dimension '{lay.dim}' (the one the files "
            f"follow each other along), not {', '.join(map(repr, sorted(unknown)))}"
        )
        raise ActiveZarrError(
            f"{what}; select other dimensions by position with selection=",
            cli=f"--{what}; select other dimensions by position with --select, e.g. "
            "--select ':,0:10'",
        )
    if lay.dim not in where:
        return [(p, 0, p.length) for p in lay.parts]
    bounds = where[lay.dim]
    if not isinstance(bounds, slice) or bounds.step is not None:
        raise ActiveZarrError(
            f"where={{'{lay.dim}': slice(first, last)}} takes coordinate values, both "
            f"included, without a step; got {bounds!r}",
            cli=f"--where {lay.dim}=FIRST..LAST takes coordinate values, both included",
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
        if isinstance(now, Exception):
            raise unchecked(
                url, str(catalog.directory), now, catalog.directory, skip=False
            ) from now
        if now != recorded[url]:
            raise StaleIndexError(
                f"{url} changed since it was indexed into {catalog.directory}; refresh with "
                f"`{refresh_command(url, catalog.directory)}`"
            )


def _run(tasks: list[FileTask], var: str, op: str, axes, options, jobs: int) -> list[dict]:
    """The partials of every task, in order: files that continue one another (same
    metadata, whole chunks along the dimension, one selection step across them) are reduced
    together as one concatenated variable, the others one ``Active`` each.

    Files are taken ``_limit()`` at a time; the next ones are opened (their sidecars read and
    checked) on another thread while these are reduced.
    """
    limit = _limit()
    spans = [tasks[a : a + limit] for a in range(0, len(tasks), limit)]
    bar = on_terminal(len(tasks))
    out: list[dict] = []
    try:
        with cf.ThreadPoolExecutor(1, "activezarr-open") as ahead:
            opening = ahead.submit(_open, spans[0], var, options)
            for k, span in enumerate(spans):
                variables = opening.result()
                if k + 1 < len(spans):
                    opening = ahead.submit(_open, spans[k + 1], var, options)
                out += _reduce_span(span, variables, var, op, axes, options, jobs, bar)
        return out
    finally:
        bar.close()


def _reduce_span(tasks, variables, var, op, axes, options, jobs, bar) -> list[dict]:
    groups = _groups(tasks, variables, len(tasks))

    def one(group: list[int]) -> dict:
        if len(group) == 1:
            t = tasks[group[0]]
            index, selection = variables[group[0]] or t.part.entry.index, t.selection
        else:
            index, selection = _joined([tasks[i] for i in group], [variables[i] for i in group])
        with Active(index, var, check_stale=False, **options) as a:
            return a.reduce(op, selection, axes, components=True)

    singles = [g for g in groups if len(g) == 1]
    if jobs <= 1 or len(singles) <= 1:
        pool = None
        results = map(one, groups)
    else:  # files one by one in parallel; joined groups use Active's own threads
        pool = cf.ThreadPoolExecutor(min(jobs, len(singles)), "activezarr-files")
        results = pool.map(one, groups)
    out = []
    try:
        for group, partial in zip(groups, results, strict=True):
            out.append(partial)
            bar.step(n=len(group))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


def _open(tasks: list[FileTask], var: str, options: dict) -> list[VariableIndex | None]:
    """Each task's variable, loaded and checked (None where the index is not a local file)."""
    local = [i for i, t in enumerate(tasks) if not is_remote(str(t.part.entry.index))]
    loaded = open_variables(
        [tasks[i].part.entry.index for i in local],
        [var],
        options.get("storage_options"),
        options.get("allow_paths", ()),
    )
    out: list[VariableIndex | None] = [None] * len(tasks)
    for i, (v,) in zip(local, loaded, strict=True):
        out[i] = v
    return out


def _limit() -> int:
    """Files reduced together at most: each keeps a file descriptor open meanwhile."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(2, min(JOIN_FILES, (soft if soft > 0 else 1024) // 4))


def _groups(tasks: list[FileTask], variables: list, limit: int) -> list[list[int]]:
    """Runs of consecutive tasks that reduce as one variable (see ``_continues``)."""
    groups: list[list[int]] = []
    for i, (task, var) in enumerate(zip(tasks, variables, strict=True)):
        last = groups[-1] if groups else None
        if (
            last is not None
            and len(last) < limit
            and _continues(tasks[last[-1]], variables[last[-1]], task, var)
        ):
            last.append(i)
        else:
            groups.append([i])
    return groups


def _continues(before: FileTask, prev, task: FileTask, var) -> bool:
    """Whether ``task`` reduces as the continuation of ``before`` in one variable."""
    if prev is None or var is None or prev.loader is not None or var.loader is not None:
        return False  # (a parquet index reads its rows lazily: it goes on its own)
    ax = task.part.axis
    a, b = before.selection[ax], task.selection[ax]
    if not isinstance(a, slice) or not isinstance(b, slice) or a.step != b.step:
        return False
    n = prev.shape[ax]
    if n % prev.chunks[ax] or a.stop > n:
        return False
    last = a.start + (-(-(a.stop - a.start) // a.step) - 1) * a.step
    if n + b.start != last + a.step:  # the step carries on across the boundary
        return False
    shape = lambda v: [s for d, s in enumerate(v.shape) if d != ax]
    return (
        shape(prev) == shape(var)
        and (prev.chunks, prev.dtype, prev.dims) == (var.chunks, var.dtype, var.dims)
        and prev.codecs == var.codecs
        and _same(prev.fill_value, var.fill_value)
        and _same(prev.fill_attr, var.fill_attr)
        and prev.no_fill == var.no_fill
        and prev.attribute_types == var.attribute_types
        and _same_attrs(prev.attrs, var.attrs)
    )


def _same_attrs(a: dict, b: dict) -> bool:
    return a is b or (a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a))


def _same(x, y) -> bool:
    """Equal values of equal types (numpy values by dtype and elements, NaN equal to NaN)."""
    if isinstance(x, np.ndarray | np.generic) or isinstance(y, np.ndarray | np.generic):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return type(x) is type(y) and x == y


def _joined(tasks: list[FileTask], variables: list[VariableIndex]) -> tuple[VariableIndex, tuple]:
    """The variables of consecutive tasks as one, and the selection of the tasks in it."""
    ax = tasks[0].part.axis
    source = f"{variables[0].source} .. {variables[-1].source} ({len(variables)} indexes)"
    joined = concatenate(variables, ax, source)
    before = sum(v.shape[ax] for v in variables[:-1])
    first, last = tasks[0].selection[ax], tasks[-1].selection[ax]
    selection = list(tasks[0].selection)
    selection[ax] = slice(first.start, before + last.stop, first.step)
    return joined, tuple(selection)


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
