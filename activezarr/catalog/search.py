"""Queries on the catalog in intake-esm's style, as SQL conditions on the store's tables.

A query is ``{key: wanted}``: ``wanted`` is a value (equal), a string with ``*``, ``?`` or
``[...]`` (a glob), ``None`` (missing) or a list of those (any of them). Keys are the facets
(``source_id``, ``experiment_id`` ...), ``variable_id`` (a data variable of the file),
``variable`` (any variable, coordinates included), ``path`` (the source URL or path),
``time_start``/``time_end`` (ISO dates) and any other name, which is a global attribute.
Every condition is indexed (facets, variable names) or a scan of one table, never Python
over rows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ActiveZarrError
from .facets import FACETS

_COLUMNS = {*FACETS, "time_start", "time_end"} - {"variable_id"}
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Condition:
    """One SQL condition on ``files`` with its parameters.

    ``kind``: ``"facet"`` (on an indexed facet column), ``"variable"`` (``per_row`` is the
    same test for one row at a time, used when a facet narrows the rows first) or ``"other"``.
    """

    sql: str
    params: tuple
    kind: str = "other"
    per_row: str = ""


def condition(key: str, wanted: Any) -> Condition:
    """The condition that ``key`` matches ``wanted`` (see the module)."""
    if not key or not isinstance(key, str):
        raise ActiveZarrError(f"bad search key {key!r}")
    if key in ("variable_id", "variable", "var"):
        role = " AND role = 'data'" if key == "variable_id" else ""
        sql, params = _match("name", wanted)
        return Condition(
            f"source IN (SELECT source FROM variables WHERE ({sql}){role})",
            tuple(params),
            "variable",
            f"EXISTS (SELECT 1 FROM variables AS v WHERE v.source = files.source AND ({sql})"
            f"{role.replace('role', 'v.role')})",
        )
    if key in ("path", "source"):
        sql, params = _match("source", wanted)
    elif key in _COLUMNS:
        sql, params = _match(key, wanted)
        return Condition(f"({sql})", tuple(params), "facet")
    else:
        return attr_condition(key, wanted)
    return Condition(f"({sql})", tuple(params))


def shell_path_condition(pattern: str) -> Condition:
    """The sources a shell would expand the glob ``pattern`` to, as the user typed it.

    A relative pattern is taken from the current directory (``data/*.nc``, ``../run2/*.nc``),
    ``~`` is the home directory, a URL pattern (``s3://bucket/*.nc``) is matched as it is.
    As in the shell, ``*``, ``?`` and ``[...]`` stay within one directory and ``**`` spans
    any number of them; a pattern ending in ``/`` means everything under that directory. A
    pattern without ``/`` matches the file name wherever the file is, as ``find -name``.
    """
    full = shell_path_pattern(pattern)
    prefilter = re.sub(r"\*+", "*", full.replace("**/", "*")).replace("[!", "[^")
    return Condition("(source GLOB ? AND source REGEXP ?)", (prefilter, _glob_regex(full)))


def shell_path_pattern(pattern: str) -> str:
    """``pattern`` as a glob on the catalog's sources (absolute paths or URLs)."""
    text = pattern.strip()
    if "://" in text and not text.startswith("file://"):
        full = text
    elif "/" not in text:
        return "**/" + text
    else:
        path = os.path.expanduser(text.removeprefix("file://"))
        full = os.path.normpath(os.path.join(os.getcwd(), path))
    return full + "/**" if text.endswith("/") else full


def _glob_regex(pattern: str) -> str:
    """A shell glob as a regular expression: ``*``/``?``/``[...]`` within a path component,
    ``**/`` any number of directories, ``**`` anything."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(f"[{'^/' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def attr_condition(name: str, wanted: Any) -> Condition:
    """The condition that global attribute ``name`` matches ``wanted``."""
    quoted = name.replace('"', '""').replace("'", "''")
    sql, params = _match(f"json_extract(attrs, '$.\"{quoted}\"')", wanted, cast=True)
    return Condition(f"({sql})", tuple(params))


def _match(expr: str, wanted: Any, cast: bool = False) -> tuple[str, list]:
    """``expr`` matches ``wanted``; TEXT columns compare as they are (so that their index
    serves equality and glob prefixes), attribute values as text when ``cast``."""
    if isinstance(wanted, list | tuple | set | frozenset):
        if not wanted:
            return "0", []
        parts = [_match(expr, w, cast) for w in wanted]
        return " OR ".join(f"({s})" for s, _ in parts), [p for _, ps in parts for p in ps]
    if wanted is None:
        return f"{expr} IS NULL", []
    text = f"CAST({expr} AS TEXT)" if cast else expr
    if isinstance(wanted, str) and _GLOB_CHARS & set(wanted):
        return f"{text} GLOB ?", [wanted.replace("[!", "[^")]
    if isinstance(wanted, bool):
        wanted = int(wanted)
    if isinstance(wanted, str):
        return f"{text} = ?", [wanted]
    return f"{expr} = ?", [wanted]


def where(conditions: tuple[Condition, ...]) -> tuple[str, list]:
    """``WHERE ...`` (or nothing) and its parameters, for a query on ``files``.

    When a facet condition is there, SQLite starts from the most selective facet index (the
    statistics of ``store.analyze_if_grown`` tell it which) and tests each of its rows for
    the variable (a primary-key lookup), instead of listing every file of the variable.
    """
    if not conditions:
        return "", []
    driven = any(c.kind == "facet" for c in conditions)
    parts = [c.per_row if driven and c.per_row else c.sql for c in conditions]
    return " WHERE " + " AND ".join(parts), [p for c in conditions for p in c.params]


def order(conditions: tuple[Condition, ...]) -> str:
    """``source``, or ``+source`` when a facet condition picks the rows: the few rows found
    are sorted, rather than the whole table walked in source order to save the sort."""
    return "+source" if any(c.kind == "facet" for c in conditions) else "source"


def parse_terms(terms: list[str]) -> dict[str, Any]:
    """``["source_id=IPSL*", "experiment_id=historical,ssp585"]`` → a query (commas: lists)."""
    query: dict[str, Any] = {}
    for term in terms:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise ActiveZarrError(
                f"bad search term {term!r}; use FACET=VALUE (a glob, or VALUE1,VALUE2 for any)"
            )
        values = value.split(",") if "," in value else value
        old = query.get(key)
        if old is not None:  # the same key twice: any of them
            values = [
                *(old if isinstance(old, list) else [old]),
                *(values if isinstance(values, list) else [values]),
            ]
        query[key] = values
    return query
