"""What the command modules share: remote and catalog options, selections as text, JSON output,
and the one place where errors become one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import sys

from ..errors import ActiveZarrError, one_line, shown

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
    from ._inputs import endpoint_url, json_object

    g = sp.add_argument_group("remote data (S3, HTTPS)")
    g.add_argument(
        "--storage-options",
        type=json_object,
        metavar="JSON",
        help='fsspec options as a JSON object, e.g. \'{"anon": true}\' or \'{"ssl": "ca.pem"}\' '
        "(default: none)",
    )
    g.add_argument(
        "--endpoint-url", type=endpoint_url, metavar="URL", help="S3 endpoint URL (default: AWS)"
    )
    g.add_argument("--anon", action="store_true", help="anonymous S3 access (default: off)")
    g.add_argument(
        "--profile", metavar="NAME", help="AWS profile for S3 credentials (default: AWS_* env)"
    )


def server_options(sp) -> None:
    """``--server`` and ``--server-ca``, for every command that can reduce on a server."""
    from ._inputs import path_text, positive_seconds, server_url

    g = sp.add_argument_group("Reductionist server (data on S3 or HTTPS)")
    g.add_argument(
        "--server",
        type=server_url,
        metavar="URL",
        help="Reductionist server URL; it reads s3:// and https:// sources, not local files "
        "(default: reduce on this machine)",
    )
    g.add_argument(
        "--server-ca",
        type=path_text,
        metavar="PATH",
        help="CA bundle (PEM) that signed the server's certificate (default: the system's)",
    )
    g.add_argument(
        "--deadline",
        type=positive_seconds,
        metavar="SECONDS",
        help="seconds one request to the server may take in all, headers and body, however "
        "steadily its bytes arrive; a slower reply is an error (default: 300)",
    )


def server_backend(args) -> dict:
    """The ``Active`` options that ``--server``/``--server-ca`` ask for."""
    from ._inputs import UsageError

    if args.server_ca and not args.server:
        raise UsageError(f"--server-ca {args.server_ca} needs --server URL as well")
    if args.deadline is not None and not args.server:
        raise UsageError(
            f"--deadline {args.deadline:g} bounds requests to a Reductionist server: give "
            "--server URL as well"
        )
    if not args.server:
        return {}
    options = {"backend": "reductionist", "server": args.server}
    if args.server_ca:
        options["server_ca"] = args.server_ca
    if args.deadline is not None:
        options["deadline"] = args.deadline
    return options


def check_server_reads(server: str | None, sources: list[str]) -> None:
    """The one check of every command with ``--server``: can the server read ``sources``?

    A Reductionist server reads S3 and HTTP(S) objects only: when every source is a local file
    the command is refused naming one; when some are, stderr says they are reduced here.
    """
    if not server:
        return
    local = [u for u in sources if "://" not in u or u.startswith("file://")]
    if local and len(local) == len(sources):
        more = f" and {len(local) - 1} more" if len(local) > 1 else ""
        raise ActiveZarrError(
            f"--server {server} cannot read local files ({local[0]}{more}); drop --server "
            "to reduce on this machine, or index the files from s3:// or https:// URLs the "
            "server can reach"
        )
    if local:
        print(
            f"activezarr: note: --server {server} cannot read {len(local)} of the "
            f"{len(sources)} sources, which are local files (first: {shown(local[0])}); they are "
            "reduced on this machine",
            file=sys.stderr,
        )


def index_dir_option(sp) -> None:
    """``--out DIR``: where indexes and their catalog are written (``index``, ``demo``)."""
    from ._inputs import path_text

    sp.add_argument(
        "--out",
        type=path_text,
        default="indexes",
        metavar="DIR",
        help="index directory (default: indexes/)",
    )


def index_options(sp) -> None:
    """``--no-check-stale`` and ``--allow-path`` for commands that open an index."""
    from ._inputs import path_text

    sp.add_argument(
        "--no-check-stale",
        action="store_true",
        help="do not check that the sources are unchanged since indexing (default: check)",
    )
    sp.add_argument(
        "--allow-path",
        type=path_text,
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


_INTEGER = re.compile(r"[+-]?[0-9]+")  # ASCII digits: int() would take "1_0" and "１"


def _integer(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text) else None


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
            numbers = [_integer(b) for b in bits]
            if len(bits) > 3 or any(n is None and b for n, b in zip(numbers, bits, strict=True)):
                raise ActiveZarrError(
                    f"bad slice {item!r} in --select {text!r}; use start:stop:step with "
                    "integers, e.g. 0:12 or ::2"
                )
            parts.append(slice(*numbers))
        elif _integer(item) is not None:
            parts.append(_integer(item))
        else:
            raise ActiveZarrError(
                f"bad index {item!r} in --select {text!r}; use integers, start:stop:step "
                'slices and ... (e.g. "0:12,:,3")'
            )
    return tuple(parts)


def parse_axis(text: str | None):
    if text is None or text == "":
        return None
    values = [_integer(v.strip()) for v in text.split(",")]
    if None in values:
        raise ActiveZarrError(f"bad --axis {text!r}; use integers, e.g. 0 or 0,2")
    return values[0] if len(values) == 1 else tuple(values)


@contextlib.contextmanager
def naming_selection(args):
    """A ``SelectionError`` of the library as the option that caused it: ``--axis`` when it
    is about an axis, else ``--select``."""
    from ..errors import SelectionError

    try:
        yield
    except SelectionError as exc:
        text = exc.cli or str(exc)
        if text.startswith("axis ") and args.axis:
            raise ActiveZarrError(f"--axis {args.axis!r}: {text}") from None
        if args.select:
            raise ActiveZarrError(f"--select {args.select!r}: {text}") from None
        raise


# Non-finite floats in --json output: JSON has no NaN or Infinity, so they are these strings.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _json_number(x):
    if isinstance(x, float) and not math.isfinite(x):
        return NON_FINITE[str(x)]
    return x


def strict(value):
    """``value`` (dicts, lists, numbers, numpy scalars) with every non-finite float as its
    string: what JSON can hold."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    numpy = sys.modules.get("numpy")  # numpy scalars exist only once numpy is imported
    if numpy is not None and isinstance(value, numpy.generic):
        value = value.item()
    return _json_number(value)


def to_jsonable(value):
    """A (masked) array as strict JSON: numbers, ``null`` where masked, and the strings
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` for non-finite values."""
    import numpy as np  # not at import: `catalog ls` and `search` start without numpy

    arr = np.ma.asarray(value)
    values = np.asarray(arr.data).reshape(-1).tolist()
    masked = np.ma.getmaskarray(arr).reshape(-1).tolist()
    flat = [None if m else _json_number(v) for v, m in zip(values, masked, strict=True)]
    if arr.ndim == 0:
        return flat[0]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape).tolist()


def dumps(payload, indent: int | None = None) -> str:
    """Strict JSON (non-finite numbers as strings, ``allow_nan=False``): what ``--json``
    prints."""
    return json.dumps(strict(payload), allow_nan=False, indent=indent, default=str)


def describe_value(op: str, name: str, value, count, where: str = "") -> str:
    """The text form of a result: says so when no valid value was seen."""
    import numpy as np

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
    import numpy as np

    count = np.asarray(parts["count"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(parts["sum"], dtype=np.float64) / np.where(count == 0, 1, count)
    return np.ma.masked_array(mean, mask=count == 0)


STDOUT = "standard output"


class StandardOutput:
    """``sys.stdout`` while a command runs: a write that fails (a full disk) names standard
    output, so that the error line says what failed; with stdout closed (``>&-``, where
    Python's ``sys.stdout`` is None and ``print`` would drop the output silently) the first
    write fails."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if self._stream is None:
            raise OSError(errno.EBADF, "closed; redirect it to a file or a pipe", STDOUT)
        try:
            return self._stream.write(text)
        except OSError as exc:  # OSError(EPIPE, ...) is a BrokenPipeError again
            raise OSError(exc.errno, exc.strerror, STDOUT) from exc

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, STDOUT) from exc

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _descriptor(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # None, closed, or a StringIO under test
        return None


def _writable_fd(fd: int) -> bool:
    """Whether ``fd`` can be written (stderr closed by ``2>&-`` may be a descriptor that
    Python opened read-only since)."""
    try:
        import fcntl

        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except ImportError:  # pragma: no cover - not POSIX
        return True
    except OSError:
        return False


def usable_streams() -> None:
    """Make stdout and stderr safe to print to: stdout's failures name it (a closed stdout
    fails the first ``print``, exit 1, instead of dropping the output); a closed stderr
    drops the messages (the exit status still tells); characters that the streams'
    encoding lacks are escaped. Streams without a descriptor (tests) are left as they are."""
    out = sys.stdout
    if out is None or (_descriptor(out) is not None and not isinstance(out, StandardOutput)):
        fd = _descriptor(out)
        sys.stdout = StandardOutput(out if fd is not None and _writable_fd(fd) else None)
    fd = _descriptor(sys.stderr)
    if sys.stderr is None or (fd is not None and not _writable_fd(fd)):
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def flushed(code: int, as_json: bool) -> int:
    """``code``, once what was printed has reached stdout: a full disk or a closed pipe
    found only now (Python would find it at exit and change the status to 120)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
    except OSError as exc:
        _drop_stdout()
        return fail(os_error(exc, None), 1, False)
    return code


def _drop_stdout() -> None:
    """After a broken pipe or a write error, send what is left in stdout's buffer nowhere,
    so that Python's flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def fail(message: str, code: int, as_json: bool) -> int:
    """Report an error: one line on stderr and, for ``--json``, a JSON object on stdout
    (``{"error": ..., "exit_status": ...}``) so that a script's parser always gets JSON."""
    message = one_line(message)
    print(f"activezarr: error: {message}", file=sys.stderr)
    if as_json:
        with contextlib.suppress(OSError):  # stdout itself may be what failed (a full disk)
            print(dumps({"error": message, "exit_status": code}))
    return code


# the path options and arguments an OSError's file name may belong to, most specific first
PATH_OPTIONS = (
    ("intake_esm", "--intake-esm"),
    ("data", "--data"),
    ("out", "--out"),
    ("from_list", "--from-list"),
    ("catalog", "--catalog"),
    ("index", "index"),
)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FIXES = {
    errno.EACCES: "check its permissions, or use another path",
    errno.EPERM: "check its permissions, or use another path",
    errno.EROFS: "it is on a read-only file system; use another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.ENAMETOOLONG: "use a shorter name (at most 255 bytes a name)",
    errno.ELOOP: "a symbolic link in the path loops back on itself",
    errno.EISDIR: "it is a directory; give a file",
}


def os_fix(exc: OSError, where: str = "") -> str:
    """``"; <what to do>"`` about ``exc`` (``where``: the option or stream that failed)."""
    if exc.errno in _FULL:
        if where == STDOUT:
            return "; free some space, or redirect standard output to another disk"
        if where.startswith("-"):
            return f"; free some space, or give {where.split()[0]} a directory on another disk"
        return "; free some space, or write elsewhere (--out, or redirect standard output)"
    fix = _FIXES.get(exc.errno)
    return f"; {fix}" if fix else ""


def os_error(exc: OSError, args) -> str:
    """An ``OSError`` as one line naming the option whose path failed, and the fix."""
    from pathlib import Path

    name = str(exc.filename) if exc.filename is not None else ""
    label = name
    for attr, option in PATH_OPTIONS:
        value = getattr(args, attr, None)
        if isinstance(value, str) and name and "://" not in value:
            given = Path(value)
            if Path(name) == given or given in Path(name).parents:
                shown = name if Path(name) == given else f"{value} ({name})"
                label = f"{option} {shown}"
                break
    where = f"{label}: " if label else ""
    return f"{where}{exc.strerror or exc}{os_fix(exc, label)}"


def run(func, args) -> int:
    """Run a command: every error is one line on stderr; exit 1 (2 for a usage error).

    The specific messages come from the checks in ``_inputs`` and the library's own errors
    (their command-line wording, ``cli``, when they have one); the last ``except`` turns
    anything unforeseen into one line too (the traceback with -v).
    """
    import sqlite3

    from ._inputs import UsageError

    as_json = bool(getattr(args, "json", False))
    try:
        return func(args)
    except UsageError as exc:
        return fail(str(exc), 2, as_json)
    except ActiveZarrError as exc:
        return fail(exc.cli or str(exc), 1, as_json)
    except KeyboardInterrupt:
        print("activezarr: interrupted", file=sys.stderr)
        if as_json:
            with contextlib.suppress(OSError):
                print(dumps({"error": "interrupted", "exit_status": 130}))
        return 130
    except BrokenPipeError:  # output piped into head and the like: what was asked is shown
        _drop_stdout()
        return 0
    except OSError as exc:
        return fail(os_error(exc, args), 1, as_json)
    except UnicodeError as exc:  # a name that is not UTF-8 (a file name's raw bytes, say)
        bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else exc.object
        return fail(
            f"{bad!r} is not UTF-8 text ({exc.reason}); the catalog and JSON hold UTF-8 names: "
            "rename the file, or give the value in UTF-8",
            1,
            as_json,
        )
    except sqlite3.Error as exc:  # the catalog database: locked for too long, or damaged
        where = getattr(args, "catalog", None) or getattr(args, "out", None) or "indexes"
        hint = (
            "another program holds it; retry when it is done"
            if "locked" in str(exc)
            else "move catalog.db away and re-index"
        )
        return fail(f"the catalog of {where}: {exc}; {hint}", 1, as_json)
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, not a traceback
        if getattr(args, "verbose", False):
            import traceback

            traceback.print_exc()
        return fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug: please report it with the command "
            "and the output of `activezarr versions`; -v shows the traceback)",
            1,
            as_json,
        )
