"""What the command modules share: remote and catalog options, selections as text, JSON output,
and the one place where errors become one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..errors import ActiveZarrError

DEFAULT_CATALOG = "indexes"
# Descriptions and epilogs (examples) are printed as written.
FORMATTER = argparse.RawDescriptionHelpFormatter


def verbose_parent() -> argparse.ArgumentParser:
    """``-v`` on every subcommand too (``activezarr reduce -v ...``), not only before it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log progress and details to stderr (default: off)",
    )
    return parent


def remote_options(sp) -> None:
    """``--storage-options``, ``--endpoint-url``, ``--anon``, ``--profile``."""
    from ._inputs import json_object

    g = sp.add_argument_group("remote data (S3, HTTPS)")
    g.add_argument(
        "--storage-options",
        type=json_object,
        metavar="JSON",
        help='fsspec options as a JSON object, e.g. \'{"anon": true}\' or \'{"ssl": "ca.pem"}\' '
        "(default: none)",
    )
    g.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint URL (default: AWS)")
    g.add_argument("--anon", action="store_true", help="anonymous S3 access (default: off)")
    g.add_argument(
        "--profile", metavar="NAME", help="AWS profile for S3 credentials (default: AWS_* env)"
    )


def index_options(sp) -> None:
    """``--no-check-stale`` and ``--allow-path`` for commands that open an index."""
    sp.add_argument(
        "--no-check-stale",
        action="store_true",
        help="do not check that the sources are unchanged since indexing (default: check)",
    )
    sp.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="also let the index read local files under DIR; repeatable (default: only under "
        "the directories of the index's own sources)",
    )


def storage_options(args) -> dict | None:
    """The fsspec options the remote options of ``args`` give."""
    options = dict(getattr(args, "storage_options", None) or {})
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
        metavar="DIR",
        help=f"index directory holding the catalog (default: {DEFAULT_CATALOG})",
    )
    if select:
        sp.add_argument(
            "terms",
            nargs="*",
            metavar="FACET=VALUE",
            help="only files matching these facets (source_id=IPSL* experiment_id=historical "
            "variable_id=tas; globs, VALUE1,VALUE2 for any; default: all)",
        )
        sp.add_argument(
            "--path",
            metavar="GLOB",
            help="only sources matching this glob, as typed or as absolute paths (default: all)",
        )
        sp.add_argument(
            "--attr",
            action="append",
            metavar="NAME=VALUE",
            help="only files whose global attribute NAME matches VALUE (a glob); repeatable "
            "(default: all)",
        )
    remote_options(sp)


def open_catalog(args):
    """The ``Catalog`` of ``--catalog``, narrowed by FACET=VALUE terms, ``--path``, ``--attr``."""
    from ..catalog import Catalog
    from ..catalog.search import parse_terms
    from ._inputs import check_catalog

    check_catalog(args.catalog)
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


# Non-finite floats in --json output: JSON has no NaN or Infinity, so they are these strings.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _json_number(x):
    if isinstance(x, float) and not np.isfinite(x):
        return NON_FINITE[str(x)]
    return x


def to_jsonable(value):
    """A (masked) array as strict JSON: numbers, ``null`` where masked, and the strings
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` for non-finite values."""
    arr = np.ma.asarray(value)
    values = np.asarray(arr.data).reshape(-1).tolist()
    masked = np.ma.getmaskarray(arr).reshape(-1).tolist()
    flat = [None if m else _json_number(v) for v, m in zip(values, masked, strict=True)]
    if arr.ndim == 0:
        return flat[0]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape).tolist()


def dumps(payload: dict) -> str:
    """Strict JSON (``allow_nan=False``): what ``--json`` prints."""
    return json.dumps(payload, allow_nan=False)


def describe_value(op: str, name: str, value, count, where: str = "") -> str:
    """The text form of a result: says so when no valid value was seen."""
    count = np.asarray(count)
    label = f"{op} of {name}{where}"
    if count.ndim == 0:
        if int(count) == 0:
            return f"{label}: no valid value in the selection (count 0)\ncount: 0"
        return f"{label}: {np.ma.asarray(value).item()}\ncount: {int(count)}"
    empty = int(np.count_nonzero(count == 0))
    note = f" ({empty} of {count.size} cells have no valid value: shown as --)" if empty else ""
    return f"{label}{note}:\n{value}\ncount:\n{count}"


def value_of(op: str, parts: dict):
    """The answer of ``op`` from its components (mean = sum / count)."""
    if op != "mean":
        return parts[op]
    count = np.asarray(parts["count"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(parts["sum"], dtype=np.float64) / np.where(count == 0, 1, count)
    return np.ma.masked_array(mean, mask=count == 0)


def run(func, args) -> int:
    """Run a command: every error is one line on stderr; exit 1 (2 for a usage error).

    The specific messages come from the checks in ``_inputs`` and the library's own errors;
    the last ``except`` turns anything unforeseen into one line too (the traceback with -v).
    """
    from ._inputs import UsageError

    try:
        return func(args)
    except UsageError as exc:
        print(f"activezarr: error: {exc}", file=sys.stderr)
        return 2
    except ActiveZarrError as exc:
        print(f"activezarr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("activezarr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"activezarr: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, not a traceback
        if getattr(args, "verbose", False):
            import traceback

            traceback.print_exc()
        print(
            f"activezarr: error: unexpected {type(exc).__name__}: {exc} (a bug: please report "
            "it with the command and the output of `activezarr versions`; -v shows the traceback)",
            file=sys.stderr,
        )
        return 1
