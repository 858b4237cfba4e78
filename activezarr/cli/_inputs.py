"""What the user typed, checked before the library sees it: index arguments, URLs, server
addresses, JSON options, path lists, counts. Each check fails with one sentence that names
the input and the fix (``UsageError`` for malformed options: exit status 2)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ActiveZarrError, one_line
from ..index.freshness import DB_NAME, LEGACY_NAME
from ..index.sources import HDF5_SIGNATURE, NETCDF3_SIGNATURES

# Protocols activezarr reads sources and indexes from (fsspec filesystems it is tested with).
PROTOCOLS = ("s3", "s3a", "http", "https", "file")
DEFAULT_INDEX_DIR = "indexes"


class UsageError(ActiveZarrError):
    """A malformed option or argument: exit status 2, as argparse's own errors."""


# -- argparse types --------------------------------------------------------------------------


def path_text(text: str) -> str:
    """A path option or argument: not empty (an empty path would silently mean ".")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path (use . for this directory)")
    return text


def name_text(text: str) -> str:
    """A variable or dimension name: not empty (an empty name would silently mean "all")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a name, e.g. tas")
    return text


def positive_int(text: str) -> int:
    """``--jobs``: an integer of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; use e.g. 4") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{value} is not 1 or more; use e.g. 1 (one at a time) or 4"
        )
    return value


def positive_seconds(text: str) -> float:
    """``--deadline``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; use seconds, e.g. 600"
        ) from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive, finite number of seconds; use e.g. 600"
        )
    return value


def server_url(text: str) -> str:
    """``--server``: an http(s) URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a server URL; give it as http(s)://HOST[:PORT], "
            "e.g. https://reductionist.example.org:8080"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} has a bad port number") from None
    return text.rstrip("/")


def endpoint_url(text: str) -> str:
    """``--endpoint-url``: an http(s) URL with a host (botocore's errors for anything else
    would look like failed reads)."""
    from ..index.network import http_url_problem

    problem = http_url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(
            f"{text!r} {problem}; give the S3 endpoint as http(s)://HOST[:PORT], "
            "e.g. https://s3.example.org"
        )
    return text


def _not_json(name: str):
    raise argparse.ArgumentTypeError(f"{name} is not JSON; give a number or a string")


def file_stem(text: str) -> str:
    """``--name`` of a file to write in the output directory: a plain name, not a path."""
    if not text.strip() or text in (".", "..") or "/" in text or os.sep in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a file name; give a plain name such as cmip6 (the files are "
            "written into the output directory)"
        )
    return text


def json_object(text: str) -> dict:
    """``--storage-options``: a JSON object."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"is not valid JSON ({exc.msg} at column {exc.colno}); give an object such as "
            '\'{"anon": true}\' or \'{"ssl": "ca.pem"}\''
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object ({{...}}), not {type(value).__name__}; "
            "e.g. '{\"anon\": true}'"
        )
    return value


# -- argv before argparse ----------------------------------------------------------------------

# Options whose values may start with "-" ("-1:", "-3:,...", "-1" ...): argparse would take such a
# value for an option, so "--select -1:" is rewritten to "--select=-1:" before parsing.
NEGATIVE_VALUE_OPTIONS = ("--select", "--axis", "--where")
_NEGATIVE = re.compile(r"^-[\d:.,]")


def join_negative_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return out + argv[i:]
        if arg in NEGATIVE_VALUE_OPTIONS and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


# -- URLs and paths ------------------------------------------------------------------------------


def check_url(text: str, what: str = "") -> None:
    """Refuse URLs of protocols activezarr does not read, and URLs without bucket/host or key."""
    if "://" not in text:
        return
    protocol, _, rest = text.partition("://")
    label = f"{what} {text}".strip()
    if protocol.lower() not in PROTOCOLS:
        raise ActiveZarrError(
            f"{label}: the {protocol}:// protocol is not supported; use a local path, "
            "s3://BUCKET/KEY or https://HOST/PATH"
        )
    if protocol in ("s3", "s3a"):
        bucket, _, key = rest.partition("/")
        if not bucket or not key.strip("/"):
            raise ActiveZarrError(f"{label}: name a bucket and an object, as s3://BUCKET/KEY")
    elif protocol in ("http", "https") and not urlsplit(text).hostname:
        raise ActiveZarrError(f"{label}: name a host, as {protocol}://HOST/PATH")


def _stat(path: Path, what: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise ActiveZarrError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise ActiveZarrError(f"{what} {path}: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ActiveZarrError(
                f"{what} {path} is a symbolic link that loops back on itself; point it at a file"
            ) from None
        raise ActiveZarrError(f"{what} {path} cannot be read ({exc.strerror})") from None


def _special(st: os.stat_result) -> str | None:
    """What a path that is neither a file nor a directory is (reading a FIFO would block)."""
    for test, name in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(st.st_mode):
            return name
    return None


def check_readable(path: Path, what: str) -> os.stat_result:
    """``path`` exists and is a file or a directory (not a pipe, device or socket)."""
    st = _stat(path, what)
    kind = _special(st)
    if kind:
        raise ActiveZarrError(f"{what} {path} is {kind}, not a file; give a regular file")
    return st


def _head(path: Path, n: int = 65536) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise ActiveZarrError(f"{path} cannot be read ({exc.strerror})") from None


def resolve_index(text: str, storage_options: dict | None, *, auto_index: bool = True) -> str:
    """The index the user means by ``text``: checked, and built first for a netCDF/HDF5 file.

    A netCDF4/HDF5 file given where an index belongs is indexed into ``indexes/`` (the
    default of ``activezarr index``), or the index already there is reused when the file is
    unchanged; stderr says so. Anything else that is not an index (a directory, a catalog,
    JSON of another kind, a symlink loop, a binary file) is refused naming what it is.
    """
    if "://" in text and not text.startswith("file://"):
        check_url(text, "index")
        return text
    path = Path(text.removeprefix("file://"))
    st = check_readable(path, "index")
    if path.is_dir():
        return _index_directory(path)
    head = _head(path)
    if head.startswith((HDF5_SIGNATURE, *NETCDF3_SIGNATURES)):
        kind = "netCDF4/HDF5" if head.startswith(HDF5_SIGNATURE) else "netCDF3"
        if not auto_index:
            raise ActiveZarrError(
                f"{path} is a {kind} file, not an index; run `activezarr index {path}` first"
            )
        return str(_index_on_the_fly(path, storage_options))
    _check_json_index(path, head, st.st_size)
    return text


def _index_directory(path: Path) -> str:
    if (path / ".zmetadata").is_file():
        return str(path)  # a parquet index
    found = sorted(p.name for p in path.glob("*.json") if p.name != LEGACY_NAME)[:5]
    if (path / DB_NAME).is_file() or (path / LEGACY_NAME).is_file():
        hint = f"its indexes: {', '.join(found)}" if found else "it lists no indexes yet"
        raise ActiveZarrError(
            f"{path} is an index directory, not an index; give one of its indexes ({hint}), "
            f"or reduce across its files with `activezarr catalog reduce --catalog {path} "
            "--var VAR --op OP`"
        )
    hint = f" (JSON files there: {', '.join(found)})" if found else ""
    raise ActiveZarrError(
        f"{path} is a directory, not an index; give an index file such as indexes/NAME.json{hint}"
    )


def _check_json_index(path: Path, head: bytes, size: int) -> None:
    """Refuse what is plainly not a kerchunk index: binary data, JSON that is not an object,
    the catalog, JSON without references. Large files that look like indexes pass unparsed."""
    text = head.lstrip()
    if head.startswith(b"SQLite format 3\x00"):
        raise ActiveZarrError(
            f"{path} is a catalog database, not an index; list its indexes with `activezarr "
            f"catalog ls --catalog {path.parent}` or reduce across its files with `activezarr "
            f"catalog reduce --catalog {path.parent} --var VAR --op OP`"
        )
    if not text.startswith((b"{", b"[", b"null")):
        what = "an empty file" if not text else "not JSON"
        raise ActiveZarrError(
            f"{path} is {what}, not a kerchunk index; indexes are the .json files "
            "`activezarr index FILE.nc` writes (or kerchunk's parquet directories)"
        )
    looks_like_refs = any(k in head for k in (b'"refs"', b'.zarray"', b'.zgroup"'))
    if size > len(head) and looks_like_refs:
        return
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActiveZarrError(
            f"{path} is not valid JSON ({exc}), so not a kerchunk index"
        ) from None
    except OSError as exc:
        raise ActiveZarrError(f"{path} cannot be read ({exc.strerror})") from None
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise ActiveZarrError(f"{path} holds JSON {kind}, not a kerchunk index (a JSON object)")
    if "entries" in data and "refs" not in data:
        raise ActiveZarrError(
            f"{path} is an activezarr catalog, not an index; list it with `activezarr catalog ls "
            f"--catalog {path.parent}` or reduce across its files with `activezarr catalog "
            f"reduce --catalog {path.parent} --var VAR --op OP`"
        )
    refs = data.get("refs", data)
    if not isinstance(refs, dict) or not any(
        isinstance(k, str) and k.endswith((".zarray", ".zgroup")) for k in refs
    ):
        raise ActiveZarrError(
            f"{path} is JSON but not a kerchunk index (no 'refs' with .zarray/.zgroup keys); "
            "make one with `activezarr index FILE.nc`"
        )


def _index_on_the_fly(path: Path, storage_options: dict | None) -> Path:
    from ..catalog.single import ensure_index, unwritable

    out: Path | None = Path(DEFAULT_INDEX_DIR)
    reason = unwritable(out)
    if reason:  # a read-only working directory: the cache directory ($ACTIVEZARR_INDEX_DIR)
        out = None
    index, built = ensure_index(path, out, storage_options)
    verb = "indexed it into" if built else "using its index"
    where = f" ({DEFAULT_INDEX_DIR}/ here: {reason})" if reason else ""
    print(
        one_line(
            f"activezarr: {path} is a netCDF4/HDF5 file, not an index; {verb} {index}{where} "
            f"(as `activezarr index {path}` does)"
        ),
        file=sys.stderr,
    )
    return index


# -- lists of paths -------------------------------------------------------------------------------


def read_path_list(name: str) -> list[str]:
    """``--from-list``: one path per line, or a CSV whose header has a ``path`` column.

    ``-`` reads the list from stdin (``find data -name '*.nc' | activezarr index --from-list -``);
    pipes such as ``<(find ...)`` are read like files.
    """
    if name == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise ActiveZarrError(
                "--from-list - reads the paths from stdin, which is a terminal (or closed); "
                "pipe a list in, e.g. find data -name '*.nc' | activezarr index --from-list -"
            )
        path, raw = Path("<stdin>"), sys.stdin.buffer.read()
    else:
        path = Path(name)
        _stat(path, "--from-list")
        if path.is_dir():
            raise ActiveZarrError(f"--from-list {path} is a directory; give a text or CSV file")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ActiveZarrError(
                f"--from-list {path} cannot be read ({exc.strerror}); check its permissions"
            ) from None
    if b"\x00" in raw[:65536]:
        raise ActiveZarrError(
            f"--from-list {path} is a binary file; give a text file with one path per line "
            "or a CSV with a path column"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ActiveZarrError(f"--from-list {path} is not UTF-8 text ({exc.reason})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ActiveZarrError(f"--from-list {path} lists no paths")
    if "," in lines[0]:
        import csv

        header = [c.strip() for c in next(csv.reader([lines[0]]))]
        if "path" not in header:
            raise ActiveZarrError(
                f"--from-list {path} looks like a CSV but has no 'path' column "
                f"(columns: {', '.join(header)}); name the column of file paths 'path'"
            )
        rows = csv.DictReader(lines, fieldnames=header)
        next(rows)
        return [row["path"].strip() for row in rows if (row.get("path") or "").strip()]
    return [ln.strip() for ln in lines]


def check_catalog(name: str) -> None:
    """``--catalog``: an index directory (or its catalog file); refuse other files naming what
    they are."""
    path = Path(name)
    if "://" in name:
        return
    if not path.exists():
        if path.is_symlink():
            _stat(path, "--catalog")
        return  # a missing catalog gets the catalog's own message
    if path.is_dir():
        return
    check_readable(path, "--catalog")
    head = _head(path)
    if head.startswith(b"SQLite format 3\x00"):
        return
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        what = "an empty file" if not head.strip() else "neither a catalog nor JSON"
        raise ActiveZarrError(
            f"--catalog {path} is {what}; give the index directory that `activezarr index "
            "--out DIR` wrote (its catalog is DIR/catalog.db)"
        ) from None
    if isinstance(data, dict) and ("entries" in data or "combined" in data):
        if path.name == LEGACY_NAME:
            return  # an old catalog.json: moved into the database when opened
        raise ActiveZarrError(
            f"--catalog {path} is an old activezarr catalog; it is read as {LEGACY_NAME} in "
            f"its index directory: rename it to {path.parent / LEGACY_NAME} and give "
            f"--catalog {path.parent}"
        )
    if isinstance(data, dict) and ("refs" in data or ".zgroup" in data):
        raise ActiveZarrError(
            f"--catalog {path} is an index, not a catalog; give the index directory that "
            f"holds it (--catalog {path.parent})"
        )
    kind = "null" if data is None else type(data).__name__
    raise ActiveZarrError(
        f"--catalog {path} holds JSON {kind}, not a catalog; give the index directory that "
        "`activezarr index --out DIR` wrote"
    )


def check_out_dir(name: str, option: str = "--out", what: str = "the indexes") -> None:
    """An output directory (made if missing), never an existing file, and writable."""
    path = Path(name)
    if path.exists() and not path.is_dir():
        kind = _special(path.stat()) or "a file"
        raise ActiveZarrError(f"{option} {path} is {kind}; give a directory for {what}")
    check_writable(path, option)


def check_writable(path: Path, option: str, fix: str = "give a directory you can write to") -> None:
    """``path``, or the directory it would be made in, can be written."""
    target = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not target.is_dir() or os.access(target, os.W_OK | os.X_OK):
        return
    read_only = False
    with contextlib.suppress(OSError):
        read_only = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
    why = "is on a read-only file system" if read_only else "is not writable (permission denied)"
    where = "" if target == path else f": {target} {why}"
    raise ActiveZarrError(f"{option} {path}{where or ' ' + why}; {fix}")


def check_out_file(name: str | os.PathLike, option: str = "--out") -> None:
    """An output file: not a directory or a special file, in a directory that exists."""
    path = Path(name)
    if path.is_dir():
        raise ActiveZarrError(
            f"{option} {path} is a directory; give the file to write, e.g. {path / 'NAME.json'}"
        )
    if path.exists() and _special(path.stat()):
        raise ActiveZarrError(f"{option} {path} is {_special(path.stat())}; give a file name")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ActiveZarrError(f"{option} {path}: the directory {parent} {what}; create it first")
    check_writable(path, option)


def check_sources(paths: list[str]) -> None:
    """``index`` arguments: supported URLs, and local paths that are not pipes or devices
    (globs and missing files are left to the indexer, which names them)."""
    for text in paths:
        if text == "-":
            raise UsageError(
                "index -: paths are not read from stdin as an argument; use --from-list - "
                "(e.g. find data -name '*.nc' | activezarr index --from-list -)"
            )
        check_url(text)
        if "://" in text and not text.startswith("file://"):
            continue
        path = Path(text.removeprefix("file://"))
        with contextlib.suppress(OSError):
            kind = _special(path.stat())
            if kind:
                raise ActiveZarrError(f"{path} is {kind}, not a netCDF4/HDF5 file")
