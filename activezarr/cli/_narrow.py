"""The catalog options (``--catalog``, FACET=VALUE terms, ``--path``, ``--attr``, ``--var``)
and the files they select; a selection that matches nothing is an error saying what the
catalog holds instead."""

from __future__ import annotations

from ..errors import ActiveZarrError
from ._common import remote_options, storage_options
from ._inputs import path_text

DEFAULT_CATALOG = "indexes"
SHOWN = 8  # values, folders or variables listed when nothing matched


def catalog_option(sp, select: bool = True) -> None:
    """``--catalog`` (and FACET=VALUE, ``--path``/``--attr`` to select entries), plus the
    remote options."""
    sp.add_argument(
        "--catalog",
        type=path_text,
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
            help="only sources matching this glob as the shell would expand it: relative to "
            "the current directory, * within one directory, ** across them, DIR/ for "
            "everything under DIR; a GLOB without / matches the file name (default: all)",
        )
        sp.add_argument(
            "--attr",
            action="append",
            metavar="NAME=VALUE",
            help="only files whose global attribute NAME matches VALUE (a glob); repeatable "
            "(default: all)",
        )
    remote_options(sp)


def open_catalog(args, var: str | None = None):
    """The ``Catalog`` of ``--catalog``, narrowed by FACET=VALUE terms, ``--path``, ``--attr``
    and ``var``; an ``ActiveZarrError`` saying what the catalog holds when nothing is left."""
    from ..catalog import Catalog
    from ..catalog.search import parse_terms
    from ._inputs import check_catalog

    check_catalog(args.catalog)
    full = Catalog(args.catalog, storage_options=storage_options(args))
    cat = full
    terms = getattr(args, "terms", None)
    if terms:
        cat = cat.search(**parse_terms(terms))
        if not len(cat):
            raise ActiveZarrError(_no_term_matched(full, terms))
    if getattr(args, "path", None):
        before, cat = cat, cat.select(path=args.path)
        if not len(cat):
            raise ActiveZarrError(_no_path_matched(full, before, args.path))
    if getattr(args, "attr", None):
        before, cat = cat, cat.select(attrs=_attrs(args.attr))
        if not len(cat):
            raise ActiveZarrError(
                f"no{' chosen' if before is not full else ''} file has global attributes "
                f"{' '.join(args.attr)}; `activezarr catalog show SOURCE` shows a file's "
                "attributes"
            )
    if var is not None:
        narrowed = cat.select(var=var)
        if not len(narrowed):
            names = cat.variables
            listed = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
            chosen = "" if cat is full else " chosen"
            raise ActiveZarrError(
                f"no{chosen} file in {full.path} holds variable '{var}' (variables: "
                f"{listed or 'none'}); see `activezarr catalog ls`"
            )
        cat = narrowed
    return cat


def _attrs(items: list[str] | None) -> dict[str, str] | None:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ActiveZarrError(f"bad --attr {item!r}; use NAME=VALUE (VALUE may be a glob)")
        out[key] = value
    return out or None


def _listed(values: list) -> str:
    shown = ", ".join(map(str, values[:SHOWN]))
    return shown + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


def _no_term_matched(full, terms: list[str]) -> str:
    """Which FACET=VALUE term matched no file, and the values the catalog holds for it."""
    from ..catalog.search import parse_terms

    if not len(full):
        return f"{full.path} lists no files yet; index some with `activezarr index FILES`"
    for term in terms:
        key = term.partition("=")[0]
        if len(full.search(**parse_terms([term]))):
            continue
        try:
            held = full.unique(key)
        except KeyError:  # not a facet: a global attribute
            return (
                f"no file in {full.path} matches {term} (no global attribute '{key}' has that "
                "value); `activezarr catalog show SOURCE` shows a file's attributes"
            )
        values = f"values: {_listed(held)}" if held else f"no file records {key}"
        return f"no file in {full.path} matches {term} ({values})"
    return f"no file in {full.path} matches all of {' '.join(terms)} (each matches some)"


def _no_path_matched(full, before, pattern: str) -> str:
    """The --path glob as it was matched, and where the (chosen) files of the catalog are."""
    from ..catalog.search import shell_path_pattern

    if not len(full):
        return f"{full.path} lists no files yet; index some with `activezarr index FILES`"
    matched = shell_path_pattern(pattern)
    if "/" not in pattern:
        how = " (a file name pattern: it matches names, in any directory)"
    else:
        how = "" if matched == pattern else f" (matched as {matched})"
    n = len(before)
    chosen = "" if before is full else "chosen "
    if n == 1:
        where = f"that file is {before.entries[0].source}"
    else:
        where = f"they are in {_listed(before.folders(SHOWN + 1))}"
    return f"--path {pattern}{how} matches none of the {n} {chosen}files of {full.path}; {where}"
