"""Where a source file lives (local path, s3://, http(s)://) and how to open and fingerprint it.

A fingerprint is what tells whether a file changed since it was indexed: size and mtime for
local files, size and ETag (or Last-Modified) for remote objects; the one an index records
adds the SHA-256 of the first and last ``SAMPLE_BYTES`` of the file (``recorded_fingerprint``).

One ``storage_options`` dict serves every protocol an index names: ``remote_filesystem`` gives
each fsspec filesystem only the options it understands (S3 credentials and endpoint never
reach an HTTP server), and turns ``ssl`` (a CA bundle path, True or False) into what aiohttp
takes, so that HTTPS sources with a private CA can be named in JSON (``--storage-options``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import ActiveZarrError, IndexBuildError, redact
from .fetch import DeadlineExceeded, RangeIgnored
from .network import (
    ReadPolicy,
    ShortRead,
    chain,
    file_info,
    filesystem,
    http_status,
    open_ranges,
    read_range,
)

SAMPLE_BYTES = 4096  # the content check hashes this many bytes at each end of a source
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> str:
    return url.removeprefix("file://")


# s3fs / botocore options that mean nothing to an HTTP server (and must never be sent to one)
S3_ONLY_OPTIONS = frozenset(
    {
        "key",
        "secret",
        "token",
        "anon",
        "endpoint_url",
        "profile",
        "config_kwargs",
        "s3_additional_kwargs",
        "requester_pays",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "version_aware",
        "use_ssl",
        "session",
        "username",
        "password",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "region_name",
    }
)
HTTP_ONLY_OPTIONS = frozenset({"ssl", "headers", "auth", "simple_links", "same_scheme"})


def filesystem_options(protocol: str, storage_options: dict | None) -> dict[str, Any]:
    """The part of ``storage_options`` that the fsspec filesystem of ``protocol`` takes.

    >>> so = {"key": "K", "secret": "S", "client_kwargs": {"endpoint_url": "http://h:9"},
    ...       "ssl": False}
    >>> filesystem_options("https", so)
    {'ssl': False}
    >>> sorted(filesystem_options("s3", so))
    ['client_kwargs', 'key', 'secret']
    """
    options = dict(storage_options or {})
    if protocol in ("http", "https"):
        options = {k: v for k, v in options.items() if k not in S3_ONLY_OPTIONS}
        client = {
            k: v
            for k, v in (options.pop("client_kwargs", None) or {}).items()
            if k not in S3_ONLY_OPTIONS and k != "verify"
        }
        if client:
            options["client_kwargs"] = client
        if isinstance(options.get("ssl"), str | os.PathLike):
            options["ssl"] = _ssl_context(os.fspath(options["ssl"]))
        return options
    if protocol in ("s3", "s3a"):
        return {k: v for k, v in options.items() if k not in HTTP_ONLY_OPTIONS}
    return options


@functools.lru_cache(maxsize=16)
def _ssl_context(cafile: str):
    """A verifying client context trusting ``cafile`` (cached: fsspec caches by options)."""
    import ssl  # here, not at import: local paths never need it

    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ActiveZarrError(
            f"ssl={cafile!r}: cannot load the CA bundle ({exc})",
            cli=f'"ssl": "{cafile}" in --storage-options: cannot load the CA bundle ({exc})',
        ) from exc


def remote_filesystem(
    protocol: str, storage_options: dict | None = None, policy: ReadPolicy | None = None
):
    """The fsspec filesystem for ``protocol`` with the options that apply to it, and the
    timeouts of ``policy`` (see ``network.filesystem``)."""
    return filesystem(protocol, filesystem_options(protocol, storage_options), policy)


def remote_failure(url: str, exc: BaseException, storage_options: dict | None = None) -> str:
    """Why reaching ``url`` failed, from the exception chain, with the fix where there is one
    (credentials in a URL are never shown).

    fsspec's HTTP filesystem reports every failure of ``info`` as ``FileNotFoundError``; the
    cause underneath tells a missing object from an unreachable or untrusted server. A TLS
    failure keeps the TLS library's reason; ``storage_options`` tell whether a CA was given.
    """
    text = _failure(url, exc, storage_options)
    attempts = getattr(exc, "attempts", None)  # set by the retry loops: how many were made
    head = f"{url}: "
    if isinstance(attempts, int) and attempts > 1 and text.startswith(head):
        text = f"{head}after {attempts} attempts, {text[len(head) :]}"
    return redact(text)


def _failure(url: str, exc: BaseException, storage_options: dict | None) -> str:
    import asyncio  # here, not at import: local paths never need them
    import re
    import socket
    from urllib.parse import urlsplit

    links = chain(exc)
    names = " ".join(f"{type(e).__name__} {e}" for e in links)
    last = links[-1]
    for e in links:
        if isinstance(e, RangeIgnored):
            return f"{url}: the server {e}"
        if isinstance(e, DeadlineExceeded):
            return f"{url}: {e}"
    if any(isinstance(e, ShortRead) for e in links):
        return (
            f"{url}: the reply was shorter than the byte range asked for ({last}): the "
            "connection was cut, or the object shrank since it was indexed"
        )
    if "ChecksumError" in names:
        return f"{url}: the reply did not match its checksum (cut or corrupted on the way)"
    if "DNSError" in names or any(isinstance(e, socket.gaierror) for e in links):
        found = re.search(r'connect to host ([^\s:]+)|endpoint URL: "([^"]+)"', names)
        host = (found.group(1) or urlsplit(found.group(2)).hostname) if found else None
        host = host or urlsplit(url).hostname or url
        return f"{url}: cannot resolve the host name {host!r} (DNS); check the URL or endpoint"
    if any(isinstance(e, TimeoutError | asyncio.TimeoutError) for e in links) or (
        "Timeout" in names
    ):
        return (
            f"{url}: no reply in time ({type(last).__name__}); the server is slow or "
            "unreachable (timeouts: read_timeout=, ACTIVEZARR_READ_TIMEOUT)"
        )
    status = http_status(exc)
    if status is not None and status >= 500:
        return f"{url}: the server answered {status} ({str(last)[:200]})"
    if "PayloadError" in names or "IncompleteRead" in names or "Disconnected" in names:
        return f"{url}: the connection was cut mid-reply ({type(last).__name__})"
    kinds = " ".join(type(e).__name__ for e in links)  # not the text: aiohttp writes "ssl:<...>"
    if "CERTIFICATE_VERIFY_FAILED" in names or "Certificate" in kinds or "SSL" in kinds:
        from ..tls import tls_hint, tls_reason

        reason = tls_reason(exc) or "certificate verify failed"
        ca = (storage_options or {}).get("ssl")
        ca = os.fspath(ca) if isinstance(ca, str | os.PathLike) else None
        option = 'storage_options {"ssl": "/path/to/ca.pem"} (the CA bundle that signed it)'
        return (
            f"{url}: TLS certificate verification failed: {reason}; {tls_hint(reason, ca, option)}"
        )
    if any(isinstance(e, ConnectionError) for e in links) or "Connect" in names:
        return f"{url}: cannot connect to the server ({type(last).__name__}: {last})"
    if any(isinstance(e, PermissionError) for e in links) or "Forbidden" in names:
        return f"{url}: access denied; check the credentials in storage_options"
    if isinstance(exc, FileNotFoundError):
        return f"{url}: no such object"
    return f"{url}: cannot be read ({type(exc).__name__}: {exc})"


@dataclass(frozen=True)
class Source:
    """A file to index: the URL written into references and how to reach it."""

    url: str
    display: str
    storage_options: dict | None = None
    policy: ReadPolicy | None = None  # timeouts, retries and deadline of remote reads

    @property
    def remote(self) -> bool:
        return is_remote(self.url)

    @property
    def stem(self) -> str:
        name = PurePosixPath(self.url.split("?", 1)[0]).name
        return name.rsplit(".", 1)[0] if "." in name else name

    def filesystem(self):
        return remote_filesystem(self.url.split("://", 1)[0], self.storage_options, self.policy)

    def open(self) -> IO[bytes]:
        """A binary file object: the local file, or byte-range reads of the remote object
        with read-ahead, each retried (``network.open_ranges``)."""
        if not self.remote:
            return open(self.url, "rb")
        size = self.fingerprint().get("size")
        if not isinstance(size, int):
            raise IndexBuildError(f"{redact(self.display)}: the server does not tell its size")
        return open_ranges(self.filesystem(), self.url, size, self.policy)

    def head(self, n: int) -> bytes:
        if self.remote:
            try:
                with self.open() as fh:
                    return fh.read(n)
            except ActiveZarrError:
                raise
            except Exception as exc:
                raise IndexBuildError(
                    remote_failure(self.display, exc, self.storage_options)
                ) from exc
        try:
            with self.open() as fh:
                return fh.read(n)
        except OSError as exc:
            raise self._unreadable(exc) from exc

    def fingerprint(self) -> dict[str, Any]:
        """Size plus mtime (local) or ETag / Last-Modified (remote)."""
        if not self.remote:
            try:
                st = os.stat(self.url)
            except FileNotFoundError:
                raise IndexBuildError(f"{self.display}: no such file") from None
            except OSError as exc:  # a symlink loop, a permission, an unreachable mount
                raise IndexBuildError(f"{self.display}: cannot be read ({exc.strerror})") from None
            return {"size": st.st_size, "mtime": st.st_mtime}
        try:
            fs = self.filesystem()
            fs.invalidate_cache(self.url)  # a listing cached by a glob would hide a new ETag
            info = file_info(fs, self.url, self.policy)
        except ActiveZarrError:
            raise
        except Exception as exc:
            raise IndexBuildError(remote_failure(self.display, exc, self.storage_options)) from exc
        etag = info.get("ETag") or info.get("etag") or info.get("LastModified")
        return {"size": info.get("size"), "etag": str(etag) if etag is not None else None}

    def content_digest(self, size: int, sample: int = SAMPLE_BYTES) -> str:
        """SHA-256 of the first and last ``sample`` bytes of the file (``size`` bytes long).

        The start holds the HDF5 superblock and root objects; the end, whatever was written
        last. Two small reads, wherever the file lives.
        """
        head_end = min(size, sample)
        tail_start = max(head_end, size - sample)
        try:
            if not self.remote:
                with open(self.url, "rb") as fh:
                    head = fh.read(head_end)
                    fh.seek(tail_start)
                    tail = fh.read(size - tail_start)
            else:
                fs = self.filesystem()
                head = read_range(fs, self.url, 0, head_end, self.policy)
                tail = read_range(fs, self.url, tail_start, size, self.policy)
        except ActiveZarrError:
            raise
        except Exception as exc:
            raise IndexBuildError(remote_failure(self.display, exc, self.storage_options)) from exc
        digest = hashlib.sha256(head)
        digest.update(tail)
        return digest.hexdigest()

    def _directory(self) -> IndexBuildError:
        return IndexBuildError(
            f"{self.display}: is a directory, not a file; give the files in it, e.g. "
            f"'{self.display.rstrip('/')}/*.nc', or '{self.display.rstrip('/')}/**/*.nc' for "
            "its subdirectories too"
        )

    def _unreadable(self, exc: OSError) -> IndexBuildError:
        """Why a local source cannot be read, in one line that says what to check."""
        if isinstance(exc, FileNotFoundError):
            return IndexBuildError(f"{self.display}: no such file")
        if isinstance(exc, PermissionError):
            return IndexBuildError(
                f"{self.display}: permission denied; check the file's read permission"
            )
        if isinstance(exc, IsADirectoryError):
            return self._directory()
        return IndexBuildError(f"{self.display}: cannot be read ({exc})")

    def local_record(self) -> tuple[dict[str, Any], bytes]:
        """``recorded_fingerprint()`` of a local file and its first bytes (at least the 8 of
        the signature), from one open: indexing many small files calls this for each."""
        try:
            fd = os.open(self.url, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise self._unreadable(exc) from exc
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise self._directory()
            size = st.st_size
            head_end = min(size, SAMPLE_BYTES)
            tail_start = max(head_end, size - SAMPLE_BYTES)
            head = os.pread(fd, head_end, 0)
            tail = os.pread(fd, size - tail_start, tail_start) if size > tail_start else b""
        except OSError as exc:
            raise IndexBuildError(f"{self.display}: cannot be read ({exc})") from exc
        finally:
            os.close(fd)
        digest = hashlib.sha256(head)
        digest.update(tail)
        fingerprint = {"size": size, "mtime": st.st_mtime}
        return {**fingerprint, "sha256": digest.hexdigest(), "sample": SAMPLE_BYTES}, head

    def recorded_fingerprint(self) -> dict[str, Any]:
        """What an index records of its source: ``fingerprint()`` plus the content digest."""
        fingerprint = self.fingerprint()
        size = fingerprint.get("size")
        if not isinstance(size, int):
            return fingerprint
        return {**fingerprint, "sha256": self.content_digest(size), "sample": SAMPLE_BYTES}


def open_source(
    path: str | Path, storage_options: dict | None = None, policy: ReadPolicy | None = None
) -> Source:
    """The ``Source`` for a path or URL; local paths become absolute."""
    text = str(path)
    if is_remote(text):
        return Source(text, text, storage_options, policy)
    return Source(os.path.abspath(local_path(text)), text, None)


def is_source_file(location: str | os.PathLike) -> bool:
    """A local file that starts with the HDF5 or netCDF3 signature (not an index)."""
    text = os.fspath(location)
    if is_remote(text):
        return False
    path = Path(text.removeprefix("file://"))
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith(HDF5_SIGNATURE) or head.startswith(NETCDF3_SIGNATURES)
