"""What the command modules share: remote and catalog options, selections as text, JSON output,
and the one place where errors become one line on stderr and an exit code."""

from __future__ import annotations

import json
import sys

import numpy as np

from ..errors import ActiveZarrError

DEFAULT_CATALOG = "indexes"


def remote_options(sp) -> None:
    """``--storage-options``, ``--endpoint-url``, ``--anon``, ``--profile``."""
    sp.add_argument("--storage-options", help="fsspec storage options as JSON")
    sp.add_argument("--endpoint-url", help="S3 endpoint URL (S3-compatible stores)")
    sp.add_argument("--anon", action="store_true", help="anonymous S3 access")
    sp.add_argument("--profile", help="AWS profile name for S3 credentials")


def index_options(sp) -> None:
    """``--no-check-stale`` and ``--allow-path`` for commands that open an index."""
    sp.add_argument(
        "--no-check-stale",
        action="store_true",
        help="do not check that the sources are unchanged since indexing",
    )
    sp.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="also let the index read local files under DIR (repeatable)",
    )


def storage_options(args) -> dict | None:
    """The fsspec options the remote options of ``args`` give."""
    options = json.loads(args.storage_options) if getattr(args, "storage_options", None) else {}
    if getattr(args, "endpoint_url", None):
        options.setdefault("client_kwargs", {})["endpoint_url"] = args.endpoint_url
    if getattr(args, "anon", False):
        options["anon"] = True
    if getattr(args, "profile", None):
        options["profile"] = args.profile
    return options or None


def catalog_option(sp, select: bool = True) -> None:
    """``--catalog`` (and ``--path``/``--attr`` to select entries), plus the remote options."""
    sp.add_argument(
        "--catalog",
        default=DEFAULT_CATALOG,
        help=f"index directory holding the catalog (default: {DEFAULT_CATALOG})",
    )
    if select:
        sp.add_argument(
            "terms",
            nargs="*",
            metavar="FACET=VALUE",
            help="only files matching these facets (source_id=IPSL* experiment_id=historical "
            "variable_id=tas; globs, VALUE1,VALUE2 for any)",
        )
        sp.add_argument("--path", help="only sources matching this glob")
        sp.add_argument(
            "--attr", action="append", help="only files whose global attribute NAME=VALUE"
        )
    remote_options(sp)


def open_catalog(args):
    """The ``Catalog`` of ``--catalog``, narrowed by FACET=VALUE terms, ``--path``, ``--attr``."""
    from ..catalog import Catalog
    from ..catalog.search import parse_terms

    cat = Catalog(args.catalog, storage_options=storage_options(args))
    if getattr(args, "terms", None):
        cat = cat.search(**parse_terms(args.terms))
    if getattr(args, "path", None) or getattr(args, "attr", None):
        cat = cat.select(path=args.path, attrs=_attrs(args.attr))
    return cat


def _attrs(items: list[str] | None) -> dict[str, str] | None:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ActiveZarrError(f"bad --attr {item!r}; use NAME=VALUE (VALUE may be a glob)")
        out[key] = value
    return out or None


def parse_selection(text: str | None):
    """``"0:2,4:6,::-1,3,..."`` → a tuple of slices, ints and Ellipsis."""
    if not text:
        return ()
    parts = []
    for item in text.split(","):
        item = item.strip()
        if item in ("...", "Ellipsis"):
            parts.append(Ellipsis)
        elif ":" in item:
            bits = [b.strip() for b in item.split(":")]
            if len(bits) > 3:
                raise ActiveZarrError(f"bad slice {item!r} in --select")
            try:
                parts.append(slice(*[int(b) if b else None for b in bits]))
            except ValueError:
                raise ActiveZarrError(
                    f"bad slice {item!r} in --select; use start:stop:step"
                ) from None
        else:
            try:
                parts.append(int(item))
            except ValueError:
                raise ActiveZarrError(
                    f"bad index {item!r} in --select; use integers, slices and ..."
                ) from None
    return tuple(parts)


def parse_axis(text: str | None):
    if text is None or text == "":
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ActiveZarrError(f"bad --axis {text!r}; use e.g. 0 or 0,2") from None
    return values[0] if len(values) == 1 else tuple(values)


def to_jsonable(value):
    """A (masked) array as JSON: numbers, with null for masked elements."""
    arr = np.ma.asarray(value)
    if arr.ndim == 0:
        return None if arr.mask is not np.ma.nomask and bool(arr.mask) else arr.item()
    filled = arr.astype(object).filled(None) if np.ma.is_masked(arr) else arr.data.astype(object)
    return filled.tolist()


def value_of(op: str, parts: dict):
    """The answer of ``op`` from its components (mean = sum / count)."""
    if op != "mean":
        return parts[op]
    count = np.asarray(parts["count"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(parts["sum"], dtype=np.float64) / np.where(count == 0, 1, count)
    return np.ma.masked_array(mean, mask=count == 0)


def run(func, args) -> int:
    """Run a command; an ``ActiveZarrError`` is one line on stderr and exit code 1."""
    try:
        return func(args)
    except ActiveZarrError as exc:
        print(f"activezarr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("activezarr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0
