"""``activezarr catalog ls|show|verify|prune|reduce``.

Thin commands over ``Catalog``: parse, call, print; problems go to stderr and set the exit code.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from ..errors import ActiveZarrError
from ._common import (
    catalog_option,
    open_catalog,
    parse_axis,
    parse_selection,
    to_jsonable,
    value_of,
)


def _span(entry) -> str:
    """The file's time range as dates (``1850-01-16..1850-12-16``), else the range of the
    dimension most variables lead with, e.g. ``depth 0..364``."""
    if entry.time_start is not None:
        return f"{entry.time_start}..{entry.time_end}"
    leading = Counter(
        v["dimensions"][0] for v in entry.variables.values() if len(v.get("dimensions") or ()) > 1
    )
    for dim, _ in leading.most_common():
        c = entry.coords.get(dim)
        if c and c.get("min") is not None:
            return f"{dim} {c['min']:g}..{c['max']:g}"
    return ""


def cmd_ls(args) -> int:
    cat = open_catalog(args)
    if args.var:
        cat = cat.select(var=args.var)
    if args.json:
        print(json.dumps([_record(e) for e in cat], indent=1))
        return 0
    for e in cat:
        size = e.fingerprint.get("size")
        names = ",".join(sorted(e.variables))
        facets = " ".join(e.facets[f] for f in SHOWN_FACETS if e.facets.get(f))
        print(f"{e.source}\t{e.index.name}\t{size} B\t{_span(e)}\t{names}\t{facets}".rstrip())
    narrowed = args.var or args.terms or args.path or args.attr
    for key, record in sorted({} if narrowed else cat.combined.items()):
        print(
            f"combined {key}: {record['variable']} along {record['concat_dim']} "
            f"{record.get('shape')} from {len(record['sources'])} files"
        )
    print(f"{len(cat)} entries in {cat.path}", file=sys.stderr)
    return 0


# the facets that tell CMIP/CORDEX datasets apart, shown by ``ls`` when a file has them
SHOWN_FACETS = ("source_id", "experiment_id", "member_id", "table_id", "grid_label", "domain")


def cmd_export(args) -> int:
    cat = open_catalog(args)
    target = cat.to_intake_esm(args.intake_esm, name=args.name)
    print(target)
    print(f"{len(cat)} files exported from {cat.path}", file=sys.stderr)
    return 0


def _record(entry) -> dict:
    return {
        "source": entry.source,
        "index": str(entry.index),
        "fingerprint": entry.fingerprint,
        "variables": entry.variables,
        "coords": entry.coords,
        "attrs": entry.attrs,
        "created_at": entry.created_at,
        "activezarr_version": entry.activezarr_version,
        "facets": entry.facets,
        "time_start": entry.time_start,
        "time_end": entry.time_end,
    }


def cmd_show(args) -> int:
    cat = open_catalog(args)
    if args.source in cat.combined:
        print(json.dumps(cat.combined[args.source], indent=1))
        return 0
    try:
        entry = cat[args.source]
    except KeyError as exc:
        raise ActiveZarrError(f"{exc.args[0]}; see `activezarr catalog ls`") from None
    print(json.dumps(_record(entry), indent=1))
    return 0


def cmd_verify(args) -> int:
    cat = open_catalog(args)
    problems = cat.verify()
    for p in problems:
        print(f"{p.kind}: {p.source}: {p.detail}; fix: {p.fix}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problems in {cat.path}", file=sys.stderr)
        return 1
    print(f"all {len(cat)} entries of {cat.path} are up to date")
    return 0


def cmd_prune(args) -> int:
    cat = open_catalog(args)
    gone = cat.prune(dry_run=args.dry_run)
    verb = "would prune" if args.dry_run else "pruned"
    for name in gone:
        print(f"{verb} {name}")
    print(f"{verb} {len(gone)} entries from {cat.path}", file=sys.stderr)
    return 0


def _where(text: str | None) -> dict | None:
    """``time=0..365`` or ``time=1850-01-01..2014-12-31`` → ``{"time": slice(a, b)}``."""
    if not text:
        return None
    name, sep, span = text.partition("=")
    first, dots, last = span.partition("..")
    if not sep or not dots:
        raise ActiveZarrError(f"bad --where {text!r}; use DIM=FIRST..LAST, e.g. time=0..365")
    return {name: slice(_number(first), _number(last))}


def _number(text: str):
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def cmd_reduce(args) -> int:
    cat = open_catalog(args)
    options = {"backend": "reductionist", "server": args.server} if args.server else {}
    parts = cat.reduce(
        args.var,
        args.op,
        where=_where(args.where),
        axis=parse_axis(args.axis),
        selection=parse_selection(args.select),
        concat_dim=args.concat_dim,
        components=True,
        **options,
    )
    value = value_of(args.op, parts)
    if args.json:
        print(
            json.dumps(
                {
                    "op": args.op,
                    "variable": args.var,
                    "result": to_jsonable(value),
                    "count": to_jsonable(parts["count"]),
                    "files": cat.files_read,
                }
            )
        )
    else:
        print(f"{args.op} of {args.var} over {len(cat.files_read)} files: {value}")
        print(f"count: {parts['count']}")
    return 0


def register(sub) -> None:
    """Register ``catalog ...`` on the main parser's subparsers."""
    cp = sub.add_parser("catalog", help="list, show, verify, prune or reduce over the catalog")
    csub = cp.add_subparsers(dest="catalog_command", required=True)

    for name, text in (
        ("ls", "one line per indexed file (optionally only those matching FACET=VALUE ...)"),
        ("search", "the files matching FACET=VALUE ... (globs; VALUE1,VALUE2 for any)"),
    ):
        sp = csub.add_parser(name, help=text)
        catalog_option(sp)
        sp.add_argument("--var", help="only files holding this variable")
        sp.add_argument("--json", action="store_true", help="print JSON for scripts")
        sp.set_defaults(func=cmd_ls)

    sp = csub.add_parser("export", help="write an intake-esm collection of the (matching) files")
    catalog_option(sp)
    sp.add_argument("--intake-esm", required=True, metavar="DIR", help="directory to write to")
    sp.add_argument("--name", help="collection name (default: activezarr)")
    sp.set_defaults(func=cmd_export)

    sp = csub.add_parser("show", help="the catalog entry of one source (or combined index)")
    sp.add_argument("source", help="source path or URL, index file name, or combined index")
    catalog_option(sp, select=False)
    sp.set_defaults(func=cmd_show)

    sp = csub.add_parser("verify", help="check every source against its fingerprint")
    catalog_option(sp)
    sp.set_defaults(func=cmd_verify)

    sp = csub.add_parser("prune", help="drop entries whose source is gone, and their indexes")
    catalog_option(sp, select=False)
    sp.add_argument("--dry-run", action="store_true", help="only say what would be pruned")
    sp.set_defaults(func=cmd_prune)

    sp = csub.add_parser("reduce", help="reduce a variable across the catalog's files")
    catalog_option(sp)
    sp.add_argument("--var", required=True)
    sp.add_argument("--op", required=True, choices=["mean", "sum", "min", "max", "count"])
    sp.add_argument("--concat-dim", help="dimension the files follow each other along")
    sp.add_argument(
        "--where",
        help="coordinate range, both ends included: time=0..365 or time=1850-01-01..2014-12-31",
    )
    sp.add_argument("--select", help='selection of the concatenation, e.g. ":,0:10"')
    sp.add_argument("--axis", help="axes to reduce, e.g. 0 or 1,2 (default: all)")
    sp.add_argument("--server", help="Reductionist server URL (default: reduce locally)")
    sp.add_argument("--json", action="store_true", help="print JSON for scripts")
    sp.set_defaults(func=cmd_reduce)
