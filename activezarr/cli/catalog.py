"""``activezarr catalog ls|show|verify|prune|reduce``.

Thin commands over ``Catalog``: parse, call, print; problems go to stderr and set the exit code.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections import Counter

from ..errors import ActiveZarrError, one_line, shown
from ._common import (
    FORMATTER,
    check_server_reads,
    describe_value,
    dumps,
    naming_selection,
    parse_axis,
    parse_selection,
    server_backend,
    server_options,
    to_jsonable,
    value_of,
)
from ._inputs import check_out_dir, file_stem, name_text, path_text
from ._narrow import catalog_option, open_catalog

EPILOG = """\
examples:
  activezarr catalog ls                                   # the catalog of indexes/
  activezarr catalog ls --catalog idx --var tas
  activezarr catalog verify                               # exit 1 if a file changed, with the fix
  activezarr catalog reduce --var tas --op mean --where time=2000-01-01..2000-12-31"""

REDUCE_EPILOG = """\
examples:
  activezarr catalog reduce --var tas --op mean
  activezarr catalog reduce --var tas --op max --axis 0 --where time=1850-01-01..1899-12-31
  activezarr catalog reduce --var pr --op sum --path "*ssp585*" --json

Only the files whose recorded range of the --where dimension overlaps it are read. Files need
not share a chunk grid. --json prints strict JSON (null where no valid value; "NaN",
"Infinity", "-Infinity" for non-finite results)."""


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


def _line(e) -> str:
    size = e.fingerprint.get("size")
    names = ",".join(sorted(e.variables))
    facets = " ".join(e.facets[f] for f in SHOWN_FACETS if e.facets.get(f))
    # a tab or newline in a file name would break the columns: escaped, as in every message
    source, index = shown(e.source), shown(e.index.name)
    return f"{source}\t{index}\t{size} B\t{_span(e)}\t{names}\t{facets}".rstrip()


def _readable(cat, show, damaged: list[str]):
    """``show(entry)`` of each entry; an entry that cannot be read (a damaged row) is left
    out and its error kept in ``damaged``, so that one bad row does not end the listing."""
    for e in cat:
        try:
            yield show(e)
        except ActiveZarrError as exc:
            damaged.append(str(exc))


def cmd_ls(args) -> int:
    cat = open_catalog(args, var=args.var)
    damaged: list[str] = []
    if args.json:  # one entry a line, streamed: a million entries never sit in memory
        print("[", end="")
        for i, text in enumerate(_readable(cat, lambda e: dumps(_record(e)), damaged)):
            print(f"{',' if i else ''}\n{text}", end="")
        print("\n]")
        return _report_damaged(damaged)
    for line in _readable(cat, _line, damaged):
        print(line)
    narrowed = args.var or args.terms or args.path or args.attr
    for c in [] if narrowed else cat.combined.summaries():
        print(
            f"combined {c['name']}: {c['variable']} along {c['concat_dim']} {c['shape']} "
            f"from {c['sources']} files"
        )
    print(f"{len(cat)} entries in {cat.path}", file=sys.stderr)
    return _report_damaged(damaged)


def _report_damaged(damaged: list[str]) -> int:
    """One stderr line per entry left out of a listing; exit status 1 if there was any."""
    for message in damaged:
        print(f"activezarr: error: {one_line(message)}", file=sys.stderr)
    return 1 if damaged else 0


# the facets that tell CMIP/CORDEX datasets apart, shown by ``ls`` when a file has them
SHOWN_FACETS = ("source_id", "experiment_id", "member_id", "table_id", "grid_label", "domain")


def cmd_export(args) -> int:
    check_out_dir(args.intake_esm, "--intake-esm", "the collection")
    cat = open_catalog(args)
    target = cat.to_intake_esm(args.intake_esm, name=args.name)
    print(shown(target))
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
        print(dumps(cat.combined[args.source], indent=1))
        return 0
    try:
        entry = cat[args.source]
    except KeyError as exc:
        raise ActiveZarrError(f"{exc.args[0]}; see `activezarr catalog ls`") from None
    print(dumps(_record(entry), indent=1))
    return 0


def cmd_verify(args) -> int:
    """One stderr line per problem as it is found (with its fix), progress on stderr, a
    summary last; exit 0 only when every entry and combined index was checked and is fine,
    1 when a problem was found (also when the output pipe closed after it), 130 when
    interrupted (with what was checked by then)."""
    from ..catalog.progress import Checking

    cat = open_catalog(args)
    total = len(cat)
    bar = Checking(total, enabled=not (args.quiet or args.json))
    kinds: Counter = Counter()  # the problems are printed as found, not kept (but for --json)
    kept: list = []
    try:
        for p in cat.problems(progress=bar):
            kinds[p.kind] += 1
            if args.json:
                kept.append(p)
            else:
                bar.write(f"{p.kind}: {p.source}: {p.detail}; fix: {p.fix}")
    except KeyboardInterrupt:
        print(f"activezarr: verify interrupted after {bar.done:,} of {total:,} entries, "
              f"{kinds.total()} problems by then", file=sys.stderr)  # fmt: skip
        raise
    except BrokenPipeError:
        if kinds:  # the reader went away: the status still says what was found
            sys.stderr.close()
            return 1
        raise
    if args.json:
        fields = ("source", "kind", "detail", "fix")
        print(dumps({"entries": total, "problems": [{f: getattr(p, f) for f in fields}
                                                    for p in kept]}))  # fmt: skip
        return 1 if kept else 0
    combined = len(cat.combined)
    also = f" and {combined} combined {'index' if combined == 1 else 'indexes'}" if combined else ""
    if kinds:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        print(f"{kinds.total()} problems ({counts}) in {total:,} entries{also} of {cat.path}; "
              "each line above ends with its fix", file=sys.stderr)  # fmt: skip
        return 1
    print(f"all {total:,} entries{also} of {cat.path} are up to date")
    return 0


def cmd_prune(args) -> int:
    cat = open_catalog(args)
    gone = cat.prune(dry_run=args.dry_run)
    verb = "would prune" if args.dry_run else "pruned"
    for name in gone:
        print(f"{verb} {shown(name)}")
    print(f"{verb} {len(gone)} entries from {cat.path}", file=sys.stderr)
    return 0


def _where(text: str | None) -> dict | None:
    """``time=0..365`` or ``time=1850-01-01..2014-12-31`` → ``{"time": slice(a, b)}``."""
    if not text:
        return None
    name, sep, span = text.partition("=")
    first, dots, last = span.partition("..")
    if not sep or not dots or not name:
        raise ActiveZarrError(f"bad --where {text!r}; use DIM=FIRST..LAST, e.g. time=0..365")
    return {name: slice(_bound(first, text), _bound(last, text))}


_DATE = re.compile(
    r"^(-?\d{1,6})(?:-(\d{1,2})(?:-(\d{1,2}))?)?(?:[T ](\d{1,2})(?::(\d{1,2}))?(?::(\d{1,2}(?:\.\d*)?))?)?$"
)


def _bound(text: str, where: str):
    """A number, or a date YYYY[-MM[-DD[Thh[:mm[:ss]]]]] checked for impossible fields."""
    text = text.strip()
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(number):  # no coordinate value lies in a range that ends in NaN
            raise ActiveZarrError(f"bad --where bound {text!r} in {where!r}; NaN is not a bound")
        return number
    m = _DATE.match(text)
    if not m:
        raise ActiveZarrError(
            f"bad --where bound {text!r} in {where!r}; use a number or a date such as 1850-01-01"
        )
    _, month, day, hour, minute, second = m.groups()
    limits = (("month", month, 1, 12), ("day", day, 1, 31), ("hour", hour, 0, 23))
    limits += (("minute", minute, 0, 59), ("second", second, 0, 60))
    for field, value, low, high in limits:
        if value is not None and not low <= float(value) <= high:
            raise ActiveZarrError(
                f"--where {where!r}: {text} has no {field} {value} ({field}s run {low}..{high})"
            )
    if month and day and int(day) > (30 if int(month) == 2 else 31):
        raise ActiveZarrError(f"--where {where!r}: {text} is not a date in any calendar")
    return text


def _held_range(cat, dim: str) -> str:
    """What the catalog's files hold along ``dim`` (from the store: one query, whatever the
    catalog's size), as dates when the units say so; per units when files differ in them."""
    from ..catalog.members import held_ranges

    groups = held_ranges(cat, dim)
    if not groups:
        return f"no file records a '{dim}' range"
    said = []
    for n, lo, hi, units, calendar in groups:
        if isinstance(units, str) and " since " in units:
            with contextlib.suppress(Exception):  # cftime absent or an odd calendar: numbers
                import cftime

                dates = cftime.num2date([lo, hi], units, calendar or "standard")
                lo, hi = (d.isoformat().removesuffix("T00:00:00") for d in dates)
        files = f"{n} file{'s' if n != 1 else ''}"
        said.append(f"{lo}..{hi}" + (f" ({files} in {units})" if len(groups) > 1 else ""))
    n = sum(g[0] for g in groups)
    return f"the catalog's {n} files hold {dim} {'; '.join(said)}"


def cmd_reduce(args) -> int:
    where = _where(args.where)
    options = server_backend(args)
    cat = open_catalog(args, var=args.var)
    if args.server:  # the sources are listed only for a server
        check_server_reads(args.server, [e.source for e in cat])
    axis, selection = parse_axis(args.axis), parse_selection(args.select)
    try:
        with naming_selection(args):
            parts = cat.reduce(
                args.var,
                args.op,
                where=where,
                axis=axis,
                selection=selection,
                concat_dim=args.concat_dim,
                components=True,
                **options,
            )
    except ValueError as exc:
        if isinstance(exc, ActiveZarrError) or not where:
            raise
        raise ActiveZarrError(f"--where {args.where!r}: {exc}") from None
    if not cat.files_read:
        dim = next(iter(where)) if where else "time"
        raise ActiveZarrError(f"no file matched --where {args.where}; {_held_range(cat, dim)}")
    value = value_of(args.op, parts)
    if args.json:
        payload = {
            "op": args.op,
            "variable": args.var,
            "result": to_jsonable(value),
            "count": to_jsonable(parts["count"]),
            "files": cat.files_read,
        }
        print(dumps(payload))
    else:
        label = f" over {len(cat.files_read)} files"
        print(describe_value(args.op, args.var, value, parts["count"], label))
    return 0


def register(sub, parents=()) -> None:
    """Register ``catalog ...`` on the main parser's subparsers."""
    parents = list(parents)

    def command(group, name, help, description, epilog=None):
        return group.add_parser(
            name,
            parents=parents,
            help=help,
            description=description,
            epilog=epilog,
            formatter_class=FORMATTER,
        )

    cp = command(
        sub,
        "catalog",
        "list, search, export, show, verify, prune or reduce over the catalog",
        "The catalog (catalog.db beside the indexes) lists every indexed file: its source, "
        "fingerprint, index, variables, facets and coordinate ranges.",
        EPILOG,
    )
    csub = cp.add_subparsers(dest="catalog_command", required=True, metavar="SUBCOMMAND")

    for name, text in (
        ("ls", "one line per indexed file (optionally only those matching FACET=VALUE ...)"),
        ("search", "the files matching FACET=VALUE ... (globs; VALUE1,VALUE2 for any)"),
    ):
        sp = command(
            csub,
            name,
            text,
            "List the catalog's files (those matching FACET=VALUE terms, --path, --attr, "
            "--var): source, index, size, range of the leading dimension, variables.",
            f"examples:\n  activezarr catalog {name} experiment_id=historical\n"
            f"  activezarr catalog {name} --var tas --json",
        )
        catalog_option(sp)
        sp.add_argument(
            "--var", type=name_text, help="only files holding this variable (default: all)"
        )
        sp.add_argument("--json", action="store_true", help="print JSON for scripts")
        sp.set_defaults(func=cmd_ls)

    sp = command(
        csub,
        "export",
        "write an intake-esm collection of the (matching) files",
        "Write an intake-esm collection (JSON + CSV) of the catalog's (matching) files.",
        "examples:\n  activezarr catalog export --intake-esm esm/\n"
        "  activezarr catalog export source_id=IPSL* --intake-esm esm/ --name ipsl",
    )
    catalog_option(sp)
    sp.add_argument(
        "--intake-esm", type=path_text, required=True, metavar="DIR", help="directory to write to"
    )
    sp.add_argument(
        "--name",
        type=file_stem,
        help="collection name: NAME.json, NAME.csv.gz (default: activezarr)",
    )
    sp.set_defaults(func=cmd_export)

    sp = command(
        csub,
        "show",
        "the catalog entry of one source (or combined index)",
        "Print the catalog entry of one source, index or combined index as JSON.",
        "examples:\n  activezarr catalog show data/tas_2000.nc\n"
        "  activezarr catalog show combined_tas_time.json",
    )
    sp.add_argument(
        "source", type=path_text, help="source path or URL, index file name, or combined index"
    )
    catalog_option(sp, select=False)
    sp.set_defaults(func=cmd_show)

    sp = command(
        csub,
        "verify",
        "check every source against its fingerprint",
        "Check every source against the fingerprint recorded when it was indexed, and every "
        "combined index against its files: one stderr line per problem as it is found, with "
        "the command that fixes it, progress on stderr (-q: none), a summary last. Exit 0: "
        "everything checked and up to date; 1: problems (or an error); 130: interrupted.",
        "examples:\n  activezarr catalog verify\n"
        "  activezarr catalog verify --catalog idx --path '*2014*'",
    )
    catalog_option(sp)
    sp.add_argument(
        "--json", action="store_true", help="print the problems as JSON for scripts (default: off)"
    )
    sp.add_argument(
        "-q", "--quiet", action="store_true", help="no progress on stderr (default: off)"
    )
    sp.set_defaults(func=cmd_verify)

    sp = command(
        csub,
        "prune",
        "drop entries whose source is gone, and their indexes",
        "Remove the entries (and index files) of sources that no longer exist.",
        "examples:\n  activezarr catalog prune --dry-run\n  activezarr catalog prune",
    )
    catalog_option(sp, select=False)
    sp.add_argument("--dry-run", action="store_true", help="only say what would be pruned")
    sp.set_defaults(func=cmd_prune)

    sp = command(
        csub,
        "reduce",
        "reduce a variable across the catalog's files",
        "Reduce one variable across the catalog's files, file by file, combining the partial "
        "results; --where picks the files by coordinate range.",
        REDUCE_EPILOG,
    )
    catalog_option(sp)
    sp.add_argument("--var", type=name_text, required=True, help="variable to reduce (required)")
    sp.add_argument(
        "--op",
        required=True,
        choices=["mean", "sum", "min", "max", "count"],
        help="the reduction (required)",
    )
    sp.add_argument(
        "--concat-dim",
        type=name_text,
        metavar="DIM",
        help="dimension the files follow each other along (default: the variable's first)",
    )
    sp.add_argument(
        "--where",
        metavar="DIM=FIRST..LAST",
        help="coordinate range, both ends included: time=0..365 or "
        "time=1850-01-01..2014-12-31 (default: every file)",
    )
    sp.add_argument(
        "--select",
        metavar="SEL",
        help='selection of the concatenation, e.g. ":,0:10" (default: everything)',
    )
    sp.add_argument("--axis", metavar="AXES", help="axes to reduce, e.g. 0 or 1,2 (default: all)")
    sp.add_argument("--json", action="store_true", help="print strict JSON for scripts")
    server_options(sp)
    sp.set_defaults(func=cmd_reduce)
