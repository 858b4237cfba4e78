"""Range requests that end and never misread: each reply's status and ``Content-Range`` are
checked before its body is read, and each request has a total deadline.

fsspec's ``cat_file`` reads a whole reply before anyone can look at it: a server that ignores
``Range`` and answers ``200`` with the whole object (gigabytes, for one chunk) was read in full
before the length check refused it. Here the head decides (``check_range``): a ``206`` must
start where asked and end no later, a ``200`` is only taken when it is the whole object and no
longer than the range asked for (a small file read whole); anything else is ``RangeIgnored``,
and the connection is closed without reading the body.

Every request runs under ``deadline`` seconds in all: the per-read timeout ends a stalled
reply, the deadline one that keeps trickling bytes (``DeadlineExceeded``). Both are
``fetch_ranges``', for fsspec's HTTP and S3 filesystems; other async filesystems get the
deadline around their own ``_cat_file``, and synchronous ones their own ``cat_ranges``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MAX_IN_FLIGHT = 128  # requests at once per call (fsspec's batch size for byte ranges)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class RangeIgnored(Exception):
    """The server answered a range request with another range, or with the whole object."""


class DeadlineExceeded(TimeoutError):
    """A reply still arriving when the request's total deadline passed (bytes trickling)."""


def check_range(start: int, end: int, status: int, content_range: str | None, length: Any) -> None:
    """Raise ``RangeIgnored`` unless a reply with this head carries bytes ``[start, end)`` (or
    the part of them the object holds).

    >>> check_range(0, 100, 206, "bytes 0-99/500", "100")
    >>> check_range(0, 100, 200, None, "80")  # the whole object, shorter than asked
    >>> check_range(100, 200, 200, None, "500")
    Traceback (most recent call last):
    ...
    activezarr.index.fetch.RangeIgnored: answered 200 with the whole object (500 bytes) to a request for bytes 100-199: the server ignores HTTP range requests
    """
    asked = f"bytes {start}-{end - 1}"
    size = _int(length)
    if status == 206:
        found = _CONTENT_RANGE.fullmatch((content_range or "").strip())
        if found is None:
            raise RangeIgnored(
                f"answered 206 without a valid Content-Range ({content_range!r:.60}) to a "
                f"request for {asked}"
            )
        first, last = int(found.group(1)), int(found.group(2))
        if first != start or last > end - 1 or (size is not None and size > end - start):
            raise RangeIgnored(
                f"answered bytes {first}-{last} (Content-Length {length}) to a request for "
                f"{asked}: the server does not honour HTTP range requests"
            )
        return
    if status == 200 and start == 0 and size is not None and size <= end:
        return  # the whole object is what was asked for (or less: the length check decides)
    body = f"the whole object ({size} bytes)" if size is not None else "a body of unknown length"
    raise RangeIgnored(
        f"answered {status} with {body} to a request for {asked}: the server ignores HTTP "
        "range requests"
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def fetch_ranges(
    fs, urls: Sequence[str], starts: Sequence[int], ends: Sequence[int], deadline: float
) -> list:
    """Bytes ``[starts[i], ends[i])`` of each ``urls[i]``, concurrently: per request the bytes
    or the exception that ended it (``RangeIgnored``, ``DeadlineExceeded``, the filesystem's)."""
    if not urls:
        return []
    if not getattr(fs, "async_impl", False) or getattr(fs, "loop", None) is None:
        return fs.cat_ranges(list(urls), list(starts), list(ends), on_error="return")
    from fsspec.asyn import sync

    requests = list(zip(urls, starts, ends, strict=True))
    return sync(fs.loop, _gather, fs, requests, deadline)


def fetch_info(fs, url: str, deadline: float) -> dict:
    """``fs.info(url)`` (a HEAD, or S3's HeadObject) within ``deadline`` seconds in all: a
    reply whose headers trickle in is cut (``DeadlineExceeded``), as a range read's is."""
    if not getattr(fs, "async_impl", False) or getattr(fs, "loop", None) is None:
        return fs.info(url)
    from fsspec.asyn import sync

    return sync(fs.loop, _within, deadline, fs._info(url), url)


async def _gather(fs, requests: list, deadline: float) -> list:
    import asyncio  # remote reads only: 13 ms of every process's import otherwise

    limit = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(url: str, start: int, end: int):
        async with limit:
            return await _within(deadline, _read(fs, url, int(start), int(end)), url)

    return await asyncio.gather(*(one(*r) for r in requests), return_exceptions=True)


async def _within(deadline: float, coro, url: str):
    """``await coro``, cancelled when ``deadline`` seconds have passed (``DeadlineExceeded``);
    a timeout of the filesystem's own (a stalled read) stays what it is."""
    import asyncio

    timer = asyncio.timeout(deadline)
    try:
        async with timer:
            return await coro
    except TimeoutError as exc:
        if not timer.expired():
            raise
        raise DeadlineExceeded(
            f"the reply was not complete after {deadline:g} s although the server kept "
            "sending (too slow a server or link); to wait longer set read_deadline= "
            "(ACTIVEZARR_READ_DEADLINE)"
        ) from exc


async def _read(fs, url: str, start: int, end: int) -> bytes:
    if end <= start:
        return b""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if "https" in protocols or "http" in protocols:
        return await _read_http(fs, url, start, end)
    if "s3" in protocols:
        return await _read_s3(fs, url, start, end)
    return await fs._cat_file(url, start=start, end=end)


async def _read_http(fs, url: str, start: int, end: int) -> bytes:
    """fsspec HTTP's ``_cat_file``, with the head checked before the body is read."""
    kw = fs.kwargs.copy()
    headers = dict(kw.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{end - 1}"
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **kw) as reply:
        fs._raise_not_found_for_status(reply, url)
        # leaving the block unread closes the connection: the body is never read
        check_range(
            start,
            end,
            reply.status,
            reply.headers.get("Content-Range"),
            reply.headers.get("Content-Length"),
        )
        return await reply.read()


async def _read_s3(fs, url: str, start: int, end: int) -> bytes:
    """s3fs's ``_cat_file`` of one range, with ``ContentRange`` checked before the body."""
    from s3fs.core import _error_wrapper

    bucket, key, version = fs.split_path(url)
    extra = {"VersionId": version} if version else {}

    async def call_and_read() -> bytes:
        reply = await fs._call_s3(
            "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra
        )
        body = reply["Body"]
        try:
            content_range = reply.get("ContentRange")
            status = 206 if content_range else 200
            check_range(start, end, status, content_range, reply.get("ContentLength"))
            return await body.read()
        finally:
            body.close()

    return await _error_wrapper(call_and_read, retries=fs.retries)
