"""Exceptions raised by activezarr: one root class, each subclass also a matching builtin.

Hierarchy::

    ActiveZarrError
    ├── IndexBuildError(ValueError)          a file could not be indexed
    ├── IndexLoadError(ValueError)           an index could not be read or lacks a variable
    ├── UnsupportedVariableError(TypeError)  a variable activezarr cannot reduce
    ├── SelectionError(IndexError)           a selection does not fit the variable
    ├── StaleIndexError                      the source changed since it was indexed
    ├── ChunkReadError(OSError)              a chunk's bytes could not be read or decoded
    └── ReductionistError(RuntimeError)      a Reductionist server refused or failed a request

Messages name the file, variable, chunk or server involved and, where there is one, the fix.
When the fix reads differently on the command line (``--select`` rather than ``selection=``),
the error also carries the command line's wording in ``cli``, which ``activezarr`` prints.
A URL's ``user:password@`` part never appears in one: it is replaced by ``***@``.
"""

from __future__ import annotations

import re

CREDENTIALS_IN_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")


def redact(text: str) -> str:
    """``text`` with the user:password part of every URL in it replaced by ``***``.

    >>> redact("https://me:s3cret@host/x.nc failed")
    'https://***@host/x.nc failed'
    """
    return CREDENTIALS_IN_URL.sub(r"\1***@", text)


def shown(text: object) -> str:
    """``text`` (a path, a name) as a message shows it: every character that is not printable
    (a newline, a tab, a terminal escape, a byte that is not UTF-8) written as its Python
    escape, so that ``a\\nb.nc`` never reads as ``a b.nc`` or as two lines, and a name cannot
    redraw the terminal. The one place that formats paths for messages.

    >>> shown("a\\nb.nc"), shown("plain name.nc")
    ('a\\\\nb.nc', 'plain name.nc')
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace")
                   .decode("ascii") for c in text)  # fmt: skip


def one_line(text: object) -> str:
    """``text`` as one line for a terminal: credentials redacted and whatever is not printable
    escaped (``shown``), so that a file name with a newline shows as ``a\\nb.nc``, not as a
    space that would name another file (a newline in a library's message shows the same way).

    >>> one_line("bad\\n  file\\x1b[31m.nc ")
    'bad\\\\n  file\\\\x1b[31m.nc'
    """
    return shown(redact(str(text).strip()))


class ActiveZarrError(Exception):
    """Base class of every error activezarr raises on purpose (credentials in URLs redacted).

    ``cli``, when given, is the message as a command-line user needs it: the same facts with
    the fix spelled as options and commands instead of Python names.
    """

    def __init__(self, *args: object, cli: str | None = None) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))
        self.cli = redact(cli) if cli is not None else None


class IndexBuildError(ActiveZarrError, ValueError):
    """A source file could not be turned into an index."""


class IndexLoadError(ActiveZarrError, ValueError):
    """An index could not be read, or does not describe the requested variable."""


class UnsupportedVariableError(ActiveZarrError, TypeError):
    """A variable has a type or storage layout that activezarr cannot reduce."""


class SelectionError(ActiveZarrError, IndexError):
    """A selection is malformed or out of range for the variable."""


class StaleIndexError(ActiveZarrError):
    """The source file changed after it was indexed."""


class ChunkReadError(ActiveZarrError, OSError):
    """The bytes of a chunk could not be read or decoded."""


class ReductionistError(ActiveZarrError, RuntimeError):
    """A Reductionist server answered with an error, or could not be reached.

    Attributes
    ----------
    status : int or None
        The HTTP status, or None when no answer arrived.
    server : str
        The server URL.
    """

    def __init__(
        self, message: str, *, status: int | None = None, server: str = "", cli: str | None = None
    ) -> None:
        super().__init__(message, cli=cli)
        self.status = status
        self.server = server
