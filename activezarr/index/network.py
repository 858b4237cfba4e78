"""Remote reads that end: a timeout on every socket, bounded retries with backoff, short reads
caught.

Filesystems come from ``filesystem``: fsspec's HTTP filesystem with an aiohttp
``ClientTimeout`` (connect and per-read, no overall cap that a big read could hit), s3fs with
botocore's ``connect_timeout``/``read_timeout`` and neither botocore nor s3fs retrying on its
own (left alone they multiply: 25 attempts and 36 s for one SlowDown, 250 attempts and 190 s
for a server that cuts its replies in the headers). Every retry is then ``with_retries``':
bounded by ``ReadPolicy.retries``, backed off exponentially (capped, jittered), and only for
failures a retry may cure (``retryable``): a missing object, a refused credential or an
untrusted certificate fails at once.

The policy comes from ``ReadPolicy()`` (defaults, or ``ACTIVEZARR_READ_TIMEOUT``,
``ACTIVEZARR_READ_RETRIES``, ``ACTIVEZARR_CONNECT_TIMEOUT`` in the environment, which reach
worker processes too) or is passed explicitly (``Active(..., read_timeout=, read_retries=)``).
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import ActiveZarrError
from .fetch import DeadlineExceeded, RangeIgnored, fetch_info, fetch_ranges

T = TypeVar("T")


def _env(name: str, default: float, kind: type = float, minimum: float = 1e-3):
    """A number from the environment, or ``default`` when unset or unusable."""
    try:
        value = kind(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= minimum else default


@dataclass(frozen=True)
class ReadPolicy:
    """How long a remote read may wait and how often it is tried again.

    Parameters
    ----------
    timeout : float
        Seconds a read may wait for the next bytes (and botocore's read timeout).
    connect_timeout : float
        Seconds to establish a connection (DNS, TCP, TLS).
    retries : int
        Retries of a read after a failure a retry may cure (at most ``retries + 1``
        attempts).
    deadline : float
        Seconds one request may take in all, however steadily its bytes arrive (a reply
        trickling in under ``timeout`` per read would otherwise never end).
    backoff, backoff_max : float
        The first wait between attempts and the cap of its doubling.
    """

    timeout: float = field(default_factory=lambda: _env("ACTIVEZARR_READ_TIMEOUT", 30.0))
    connect_timeout: float = field(default_factory=lambda: _env("ACTIVEZARR_CONNECT_TIMEOUT", 10.0))
    retries: int = field(default_factory=lambda: _env("ACTIVEZARR_READ_RETRIES", 4, int, 0))
    deadline: float = field(default_factory=lambda: _env("ACTIVEZARR_READ_DEADLINE", 300.0))
    backoff: float = 0.1
    backoff_max: float = 2.0

    def with_options(
        self,
        timeout: float | None = None,
        retries: int | None = None,
        deadline: float | None = None,
    ):
        """This policy with ``timeout``, ``retries`` and ``deadline`` replaced where given."""
        changes: dict[str, Any] = {}
        for name, value in (("read_timeout", timeout), ("read_deadline", deadline)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ):
                raise ActiveZarrError(f"{name} must be a positive number of seconds: {value!r}")
        if timeout is not None:
            changes["timeout"] = float(timeout)
            changes["connect_timeout"] = min(self.connect_timeout, float(timeout))
        if deadline is not None:
            changes["deadline"] = float(deadline)
        if retries is not None:
            if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
                raise ActiveZarrError(f"read_retries must be a non-negative int: {retries!r}")
            changes["retries"] = retries
        return type(self)(**{**self.__dict__, **changes})

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1 = the first retry)."""
        base = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)


class ShortRead(OSError):
    """A reply shorter than the byte range asked for (a cut connection, or a lying header)."""


def timeout_options(protocol: str, options: dict, policy: ReadPolicy) -> dict[str, Any]:
    """``options`` (already filtered for ``protocol``) with the policy's timeouts added and the
    filesystem's own retries turned off, unless the caller set them."""
    options = dict(options)
    if protocol in ("http", "https"):
        import aiohttp

        client = dict(options.get("client_kwargs") or {})
        client.setdefault(
            "timeout",
            aiohttp.ClientTimeout(
                total=None,
                connect=policy.connect_timeout + policy.timeout,
                sock_connect=policy.connect_timeout,
                sock_read=policy.timeout,
            ),
        )
        options["client_kwargs"] = client
    elif protocol in ("s3", "s3a"):
        check_endpoint(options)
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", policy.connect_timeout)
        config.setdefault("read_timeout", policy.timeout)
        config.setdefault("retries", {"total_max_attempts": 1})
        options["config_kwargs"] = config
    return options


def http_url_problem(url: object) -> str | None:
    """What keeps ``url`` from being an http(s) URL with a host and a valid port, or None."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return "is not a string"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range, an unclosed [IPv6
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL with a host"
    return "has port 0" if port == 0 else None


def check_endpoint(options: dict) -> None:
    """An S3 ``endpoint_url`` that no request could be sent to is refused at once, before
    botocore turns it into an error that looks like a failed read."""
    client = options.get("client_kwargs")
    for endpoint in (options.get("endpoint_url"), (client or {}).get("endpoint_url")):
        problem = None if endpoint is None else http_url_problem(endpoint)
        if problem:
            raise ActiveZarrError(
                f"S3 endpoint_url {endpoint!r} {problem}: give it as http(s)://HOST[:PORT], "
                "e.g. https://s3.example.org",
                cli=f'"endpoint_url": {endpoint!r} in --storage-options {problem}: give it as '
                "http(s)://HOST[:PORT], or use --endpoint-url",
            )


_FILESYSTEMS: dict[tuple, Any] = {}
_FS_LOCK = threading.Lock()


def filesystem(protocol: str, options: dict, policy: ReadPolicy | None = None):
    """The fsspec filesystem of ``protocol`` with ``options`` and the policy's timeouts, one
    per process and configuration (not fsspec's shared instance: s3fs's own retry count is
    turned off on this one)."""
    import fsspec
    from fsspec.utils import tokenize

    policy = policy or ReadPolicy()
    options = timeout_options(protocol, options, policy)
    key = (os.getpid(), protocol, tokenize(protocol, options))
    with _FS_LOCK:
        fs = _FILESYSTEMS.get(key)
        if fs is None:
            fs = fsspec.filesystem(protocol, skip_instance_cache=True, **options)
            if protocol in ("s3", "s3a"):
                fs.retries = 1  # one try per call: with_retries does the retrying
            _FILESYSTEMS[key] = fs
    return fs


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes / contexts (at most 10)."""
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 10 and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception (or its causes) carries, if any."""
    for e in chain(exc):
        status = getattr(e, "status", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None


def is_tls_failure(exc: BaseException) -> bool:
    import ssl  # here, not at import: local paths never need it

    names = " ".join(f"{type(e).__name__} {e}" for e in chain(exc))
    return any(isinstance(e, ssl.SSLError) for e in chain(exc)) or "CERTIFICATE_VERIFY" in names


# botocore's errors for a request that was never sent, its configuration being wrong: no retry
# changes the configuration.
_NEVER_SENT = frozenset(
    {
        "EndpointResolutionError",
        "ParamValidationError",
        "NoRegionError",
        "NoCredentialsError",
        "PartialCredentialsError",
        "ProfileNotFound",
        "InvalidConfigError",
    }
)


def host_unknown(exc: BaseException) -> bool:
    """The resolver answered that the host name does not exist (``exc`` or a cause): no retry
    changes that answer. A resolver failing to answer (``EAI_AGAIN``) is not this."""
    import socket

    permanent = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
    return any(isinstance(e, socket.gaierror) and e.errno in permanent for e in chain(exc))


def retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: not for a missing object, a refused credential,
    an untrusted certificate, any other 4xx answer (but 408 and 429), a server that ignores
    range requests, a reply slower than the deadline, a host name that does not exist or a
    request its configuration kept from being sent (a malformed endpoint, no credentials); yes
    for everything a network or a busy server does (refused, reset or cut connections,
    timeouts, 5xx, short reads, a resolver that did not answer)."""
    if isinstance(
        exc,
        FileNotFoundError
        | PermissionError
        | IsADirectoryError
        | NotADirectoryError
        | RangeIgnored  # the server will ignore the range again
        | DeadlineExceeded  # another try would take as long again
        | ValueError  # botocore: "Invalid endpoint", a malformed IPv6 host
        | TypeError,
    ):
        return False
    if host_unknown(exc) or any(_NEVER_SENT.intersection(_names(e)) for e in chain(exc)):
        return False
    if is_tls_failure(exc):
        return False
    status = http_status(exc)
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return False
    return isinstance(exc, Exception)


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def with_retries(
    call: Callable[[], T], policy: ReadPolicy | None = None, counter: list | None = None
) -> T:
    """``call()``, tried again after failures ``retryable`` says may pass, at most
    ``policy.retries`` times; the last failure is raised with ``attempts`` set on it.
    ``counter`` (a one-element list) accumulates the retries made."""
    policy = policy or ReadPolicy()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= policy.retries or not retryable(exc):
                exc.attempts = attempt + 1  # type: ignore[attr-defined]
                raise
        attempt += 1
        if counter is not None:
            counter[0] += 1
        time.sleep(policy.delay(attempt))


def file_info(fs, url: str, policy: ReadPolicy | None = None) -> dict:
    """``fs.info(url)``, retried, each attempt within the policy's deadline in all."""
    policy = policy or ReadPolicy()
    return with_retries(lambda: fetch_info(fs, url, policy.deadline), policy)


def read_range(
    fs, url: str, start: int, end: int, policy: ReadPolicy | None = None, exact: bool = True
) -> bytes:
    """Bytes ``[start, end)`` of ``url`` (``fetch.fetch_ranges``: range checked, within the
    deadline), retried; a reply of another length is a ``ShortRead`` (retried too), never
    data. ``exact=False`` takes a shorter reply (the object ends before ``end``)."""
    policy = policy or ReadPolicy()

    def attempt() -> bytes:
        (data,) = fetch_ranges(fs, [url], [start], [end], policy.deadline)
        if isinstance(data, BaseException):
            raise data
        if len(data) > end - start:  # a body longer than its Content-Range said
            raise RangeIgnored(f"sent {len(data)} bytes for a range of {end - start}")
        if exact and len(data) != end - start:
            raise ShortRead(f"got {len(data)} of the {end - start} bytes asked for")
        return data

    return with_retries(attempt, policy) if end > start else b""


class RangeFile(io.RawIOBase):
    """A read-only file over byte-range reads of a remote object, each one ``read_range``.

    Wrapped in ``io.BufferedReader`` (``open_ranges``) it is what h5py reads a remote file
    through while indexing. A failure that survives the retries is kept in ``failure``: h5py
    turns exceptions into its own errors, and the indexer reports this one instead.
    """

    def __init__(self, fs, url: str, size: int, policy: ReadPolicy | None = None) -> None:
        super().__init__()
        self.fs, self.url, self.size, self.policy = fs, url, size, policy
        self.pos = 0
        self.failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self.size, self.pos + len(view))
        if end <= self.pos:
            return 0
        try:
            data = read_range(self.fs, self.url, self.pos, end, self.policy)
        except Exception as exc:
            self.failure = exc
            raise
        view[: len(data)] = data
        self.pos = end
        return len(data)


def open_ranges(fs, url: str, size: int, policy: ReadPolicy | None = None) -> io.BufferedReader:
    """A buffered binary file (1 MiB read-ahead) over ``RangeFile``."""
    return io.BufferedReader(RangeFile(fs, url, size, policy), buffer_size=2**20)
