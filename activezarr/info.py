"""``activezarr info``: a readable description of the variables of an index."""

from __future__ import annotations

import numpy as np

from .index.freshness import check_variable_fresh
from .index.load import INLINE, list_variables, load_variable, read_index

CF_ATTRS = (
    "_FillValue",
    "missing_value",
    "valid_min",
    "valid_max",
    "valid_range",
    "scale_factor",
    "add_offset",
    "_Unsigned",
    "units",
)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _codecs(codecs: list[dict]) -> str:
    if not codecs:
        return "none"
    return " -> ".join(
        c["id"] + "".join(f" {k}={v}" for k, v in c.items() if k != "id") for c in codecs
    )


def describe(
    index,
    variable: str | None = None,
    storage_options: dict | None = None,
    *,
    check_stale: bool = True,
    allow_paths=(),
) -> str:
    """Text describing each variable (or one) of ``index``; ``StaleIndexError`` when a source
    changed since it was indexed (unless ``check_stale=False``)."""
    doc = read_index(index, storage_options)
    names = [variable] if variable else list_variables(doc.refs)
    lines = [f"index: {index}"]
    total = 0
    for name in names:
        var = load_variable(doc, name, allow_paths=allow_paths)
        if check_stale:
            check_variable_fresh(doc.location, var, storage_options)
        stored = var.n_stored
        nbytes = var.stored_bytes + sum(len(b) for b in var.inline.values())
        total += nbytes
        dims = ", ".join(f"{d}={n}" for d, n in zip(var.dims, var.shape, strict=False))
        cf = {k: var.attrs[k] for k in CF_ATTRS if k in var.attrs}
        if var.fill_attr is not None:
            cf.setdefault("_FillValue", var.fill_attr)
        lines += [
            f"{name}({dims})",
            f"  shape {var.shape}  dtype {var.dtype}  chunks {var.chunks}",
            f"  chunks: {var.n_chunks} ({stored} stored, {var.n_chunks - stored} fill"
            + (f", {int(np.count_nonzero(var.url_ids == INLINE))} inline)" if var.inline else ")"),
            f"  codecs: {_codecs(var.codecs)}",
            f"  CF attributes: {cf if cf else 'none'}",
            f"  stored bytes: {_size(nbytes)}",
        ]
    lines.append(f"total stored bytes: {_size(total)}")
    return "\n".join(lines)
