"""The Reductionist backend: one ``POST /v2/{op}`` per chunk, CBOR partials back.

Requests follow the v2 API (reductionist-rs 0.12+): ``interface_type`` from the chunk URL's
scheme, a path-style S3 URL built from the storage options' endpoint, dtype and byte order,
byte range, chunk shape, the selection inside the chunk, ``axis`` for partial reductions, the
codec pipeline as ``compression`` + ``filters``, and the CF missing rule when one field can
say it. ``supports`` sends everything else to the local backend: dtypes the server lacks,
other codecs, rules it cannot express, 32-bit integer sums (it sums in the input dtype).
``mean`` is asked as ``sum`` and divided by the summed counts on the client.
"""

from __future__ import annotations

import concurrent.futures as cf
import http.client
import logging
import math
import os
import random
import ssl
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit

import cbor2
import numpy as np
import requests
import urllib3.exceptions

from ..errors import ActiveZarrError, ReductionistError, redact
from ..index.network import chain, host_unknown
from ..reduction.missing import MissingRule
from ..reduction.partials import Partial
from ..tls import tls_hint, tls_reason
from .base import Backend, BlockPartial, ChunkBatch, Job
from .breaker import CircuitBreaker, breaker_for
from .limiter import InFlightLimit
from .watchdog import WATCHDOG, Watched, tracking_adapter

log = logging.getLogger(__name__)

SERVER_DTYPES = {
    "i4": "int32",
    "i8": "int64",
    "u4": "uint32",
    "u8": "uint64",
    "f4": "float32",
    "f8": "float64",
}
COMPRESSION_IDS = {"zlib": "zlib", "gzip": "gzip"}
DEFAULT_S3_ENDPOINT = "https://s3.amazonaws.com"


def s3_endpoint(storage_options: dict | None) -> str:
    """The S3 endpoint URL named by fsspec/s3fs storage options."""
    so = storage_options or {}
    url = so.get("endpoint_url") or (so.get("client_kwargs") or {}).get("endpoint_url")
    return (url or DEFAULT_S3_ENDPOINT).rstrip("/")


def s3_credentials(storage_options: dict | None) -> tuple[str, str] | None:
    """(access key, secret) for Basic auth, or None for anonymous access.

    From the storage options (``key``/``secret``), else a named ``profile`` (AWS config
    files), else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``. Session tokens cannot travel
    in Basic auth: temporary credentials do not work with Reductionist.
    """
    so = storage_options or {}
    if so.get("anon"):
        return None
    key = so.get("key") or so.get("aws_access_key_id")
    secret = so.get("secret") or so.get("aws_secret_access_key")
    if not (key and secret) and so.get("profile"):
        key, secret = _profile_credentials(so["profile"])
    if not (key and secret):
        key = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    return (key, secret) if key and secret else None


def _profile_credentials(profile: str) -> tuple[str | None, str | None]:
    import botocore.exceptions
    import botocore.session

    try:
        found = botocore.session.Session(profile=profile).get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise ActiveZarrError(f"AWS profile {profile!r} is not in the AWS config files") from None
    return (found.access_key, found.secret_key) if found else (None, None)


def object_url(url: str, storage_options: dict | None) -> tuple[str, str]:
    """``(interface_type, url)`` the server needs to fetch ``url``."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme in ("s3", "s3a"):
        bucket_key = url.split("://", 1)[1]
        return "s3", f"{s3_endpoint(storage_options)}/{quote(bucket_key)}"
    if scheme in ("http", "https"):
        return scheme, url
    raise ValueError(scheme)


def check_hosts(urls: list[str], storage_options: dict | None, allowed: tuple[str, ...] = ()):
    """Refuse HTTP(S) chunk URLs on hosts other than the configured endpoint when credentials
    would travel with them: an index must not be able to send credentials elsewhere."""
    if s3_credentials(storage_options) is None:
        return
    endpoint = urlsplit(s3_endpoint(storage_options)).netloc
    for url in urls:
        if url.startswith(("http://", "https://")):
            host = urlsplit(url).netloc
            if host != endpoint and host not in allowed:
                what = (
                    f"the index points at {urlsplit(url).scheme}://{host}, not the storage "
                    f"endpoint {endpoint}; refusing to send credentials there."
                )
                raise ActiveZarrError(
                    f"{what} If you trust it, pass allow_hosts=('{host}',)",
                    cli=f"{what} Re-index the files from s3:// URLs of {endpoint}, or use "
                    "--anon if they are public",
                )


def missing_field(rule: MissingRule, dtype: np.dtype) -> dict | None | bool:
    """The request's ``missing`` field; None when nothing is missing; False when it cannot fit.

    Equality values the range rule already excludes are dropped, so that a default fill
    beyond ``valid_max`` does not force a local fallback. Zero is a value like any other.
    """
    lo, hi = rule.valid_min, rule.valid_max
    for bound in (lo, hi):
        if bound is not None and bound.dtype.kind == "f" and not np.isfinite(bound):
            return False  # JSON cannot carry NaN or infinity
    values = []
    for v in rule.equality_values():
        if v.dtype.kind == "f" and np.isnan(v):
            return False  # JSON cannot carry NaN
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            continue
        item = v.item()
        if item not in values:
            values.append(item)
    bounds = {}
    if lo is not None and hi is not None:
        if not lo < hi:
            return False
        bounds = {"valid_range": [lo.item(), hi.item()]}
    elif lo is not None:
        bounds = {"valid_min": lo.item()}
    elif hi is not None:
        bounds = {"valid_max": hi.item()}
    if values and bounds:
        return False
    if any(isinstance(v, float) and not np.isfinite(v) for v in values):
        return False
    if bounds:
        return bounds
    if not values:
        return None
    return {"missing_value": values[0]} if len(values) == 1 else {"missing_values": values}


def codec_fields(codecs: tuple[dict, ...]) -> dict | None:
    """``compression`` and ``filters`` for a pipeline, or None if the server cannot decode it."""
    fields: dict[str, Any] = {}
    filters = []
    for i, codec in enumerate(codecs):
        cid = codec.get("id")
        if cid == "shuffle" and "compression" not in fields:
            filters.append({"id": "shuffle", "element_size": int(codec.get("elementsize", 4))})
        elif cid in COMPRESSION_IDS and i == len(codecs) - 1:
            fields["compression"] = {"id": COMPRESSION_IDS[cid]}
        else:
            return None
    if filters:
        fields["filters"] = filters
    return fields


# -- what a reply may be -------------------------------------------------------------------

# failures of one request that a retry may cure: the connection refused, reset or cut mid-reply,
# no answer in time, a reply whose framing does not add up
TRANSPORT_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)
# 5xx and these are retried; any other status is the server's considered answer
RETRY_STATUSES = frozenset({408, 429})
# answers that mean "too much at once": fewer requests go in flight
OVERLOAD_STATUSES = frozenset({429, 503})


class BreakerOpenError(ReductionistError):
    """The chunk was not sent: the server's circuit breaker is open."""


class _Failure(Exception):
    """One failed attempt that a retry may cure (the cause is chained); ``final``: one
    that another attempt would repeat (a reply slower than the deadline)."""

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        retry_after: float = 0.0,
        final=False,
        cli: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.final = final
        self.cli = cli  # the reason with its fix as a command-line option, where it names one


def chunk_where(body: dict) -> str:
    """The chunk a request is about, for messages: object URL and byte range."""
    return f"chunk {body['url']} bytes {body['offset']}+{body['size']}"


def transport_reason(exc: BaseException, timeout: float) -> str:
    """What went wrong on the wire, in words (the exception type kept for searching)."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"could not connect in time ({name}); check the URL and that the server is running"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no reply within {timeout:g} s ({name})"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"the reply was cut off mid-body ({name})"
    text = str(exc)
    if "NameResolutionError" in text:  # urllib3's "Max retries exceeded" would be untrue here
        host = urlsplit(str(getattr(getattr(exc, "request", None), "url", ""))).hostname
        return f"cannot resolve the host name {host!r} (DNS); check the server URL"
    if "Connection refused" in text or "NewConnectionError" in text:
        return f"cannot reach the server ({name}: connection refused); check the URL and that it is running"
    if "RemoteDisconnected" in text or "closed connection without response" in text:
        return f"the server closed the connection before replying ({name})"
    if "reset by peer" in text or "Connection aborted" in text:
        return f"the connection was reset ({name})"
    for cause in chain(exc):  # urllib3 says "Max retries exceeded" after one try: its reason
        if isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
            text = f"{type(cause.reason).__name__}: {cause.reason}"
    return f"cannot reach the server ({name}: {text[:200]})"


def selected_shape(body: dict) -> tuple[int, ...]:
    """The shape of the selection ``body`` asks the server to reduce."""
    return tuple(len(range(a, b, s)) for a, b, s in body["selection"])


def expected_shape(body: dict) -> tuple[int, ...]:
    """The shape of the reply to ``body``: the selected shape without the reduced axes."""
    sizes = selected_shape(body)
    axis = body.get("axis")
    if axis is None:
        return ()
    return tuple(n for d, n in enumerate(sizes) if d not in set(axis))


class BadReply(ValueError):
    """A 200 whose body is not a whole CBOR map of the expected shape."""


def check_reply(content: bytes, body: dict, op: str) -> dict:
    """The decoded reply, if it is a whole CBOR map of the shape ``body`` asks for.

    Raises ``BadReply`` saying what is wrong (empty, cut off, not a map, wrong dtype, shape,
    or lengths of ``bytes``/``count``).
    """
    if not content:
        raise BadReply("empty reply")
    try:
        reply = cbor2.loads(content)
    except Exception as exc:  # cbor2 raises several unrelated types
        raise BadReply(f"not a whole CBOR document ({type(exc).__name__}: {exc})") from exc
    if not isinstance(reply, dict):
        raise BadReply(f"a CBOR {type(reply).__name__}, not a map")
    want_dtype = "int64" if op == "count" else body["dtype"]
    if reply.get("dtype") != want_dtype:
        raise BadReply(f"dtype {reply.get('dtype')!r}, expected {want_dtype!r}")
    if reply.get("byte_order", "little") not in ("little", "big"):
        raise BadReply(f"byte_order {reply.get('byte_order')!r}")
    want = expected_shape(body)
    shape = reply.get("shape")
    if not isinstance(shape, list) or tuple(shape) != want:
        raise BadReply(f"shape {shape!r}, expected {list(want)}")
    n = math.prod(want)
    values = reply.get("bytes")
    if not isinstance(values, bytes) or len(values) != n * np.dtype(want_dtype).itemsize:
        got = len(values) if isinstance(values, bytes) else type(values).__name__
        raise BadReply(f"'bytes' holds {got}, expected {n} {want_dtype} values")
    reply["count"] = _counts(reply, n, math.prod(selected_shape(body)) // max(1, n))
    reply.pop("count_as_bytes", None)
    return reply


def _counts(reply: dict, n: int, per_cell: int) -> np.ndarray:
    """The ``n`` counts of a reply (``count``, or ``count_as_bytes`` when filled), each one
    between 0 and the ``per_cell`` values a cell reduces: a count no cell can hold would be
    divided by."""
    raw = reply.get("count_as_bytes")
    if raw is not None and not isinstance(raw, bytes):
        raise BadReply(f"'count_as_bytes' is a {type(raw).__name__}, not bytes")
    if raw:
        if len(raw) != 8 * n:
            raise BadReply(f"'count_as_bytes' does not hold {n} counts")
        order = ">" if reply.get("byte_order") == "big" else "<"
        count = np.frombuffer(raw, dtype=np.dtype("i8").newbyteorder(order)).astype(np.int64)
        low, high = (int(count.min()), int(count.max())) if n else (0, 0)
    else:
        values = reply.get("count")
        if not isinstance(values, list) or len(values) != n:
            raise BadReply(f"'count' does not hold {n} counts")
        if not all(type(c) is int for c in values):
            raise BadReply("'count' holds values that are not integers")
        low, high = (min(values), max(values)) if n else (0, 0)
        count = None
    if low < 0 or high > per_cell:
        raise BadReply(
            f"'count' holds {low if low < 0 else high}, outside 0..{per_cell} (the values one "
            "cell reduces)"
        )
    return count if count is not None else np.array(values, dtype=np.int64)


REPLY_TYPES = ("application/cbor", "application/octet-stream")


def check_content_type(content_type: str | None) -> None:
    """A 200 must say it is CBOR (or say nothing): an HTML page from a proxy or a login
    portal is not an answer, whatever its bytes decode to."""
    if content_type and content_type.split(";")[0].strip().lower() not in REPLY_TYPES:
        raise BadReply(f"Content-Type {content_type[:60]!r}, not application/cbor")


def reply_cap(body: dict, op: str) -> int:
    """The most bytes a reply to ``body`` may take (decoded): its values and counts, twice
    over, plus room for the map's keys; a bigger reply (a gzip bomb, a server gone wrong)
    is cut off there instead of read into memory."""
    n = math.prod(expected_shape(body))
    return 2 * n * (8 + 8) + 2**16


def read_capped(resp: requests.Response, cap: int) -> bytes:
    """The (decoded) body of a streamed reply, at most ``cap`` bytes (``BadReply`` beyond)."""
    parts, total = [], 0
    try:
        for part in resp.iter_content(65536):
            total += len(part)
            if total > cap:
                raise BadReply(f"the reply is larger than {cap:,} bytes")
            parts.append(part)
    finally:
        resp.close()
    resp._content = b"".join(parts)  # what ``resp.content`` / ``resp.json()`` read from now
    return resp._content


def retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks for (a number or an HTTP date), 0 when absent."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


def server_ca_bundle(server_ca: str | os.PathLike | None, verify: bool | str) -> bool | str:
    """``verify`` for requests: the private CA bundle when one is named (checked now, so that a
    wrong path is not mistaken for a failing server later)."""
    if server_ca is None:
        return verify
    path = os.fspath(server_ca)
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ActiveZarrError(
            f"server_ca={path!r}: cannot load the CA bundle ({exc})",
            cli=f"--server-ca {path}: cannot load the CA bundle ({exc})",
        ) from exc
    return path


def answer_text(resp: requests.Response) -> str:
    """An error answer's message: the JSON ``error.message`` with its ``caused_by`` chain."""
    try:
        detail = resp.json().get("error", {})
        message = detail.get("message", "")
        causes = detail.get("caused_by") or []
    except (ValueError, AttributeError):
        message, causes = resp.text[:200], []
    return message + (f" (caused by: {'; '.join(causes)})" if causes else "")


class ReductionistBackend(Backend):
    """Sends chunk reductions to a Reductionist server over one pooled HTTP session.

    Parameters
    ----------
    server : str
        Base URL, e.g. ``https://reductionist.example:8080``.
    storage_options : dict, optional
        s3fs-style options: ``endpoint_url`` (or ``client_kwargs.endpoint_url``), ``key`` and
        ``secret`` (sent as Basic auth to this server only), ``anon``.
    workers : int
        Requests in flight at least; the bound follows latency above it (``InFlightLimit``):
        more while round trips stay near the lowest seen, fewer when the server queues.
    max_in_flight : int
        The most requests in flight at once (and kept-alive connections), so that a server
        is never flooded.
    verify : bool or str
        TLS verification of the server: True (default, the system CAs), a CA bundle path,
        or False.
    server_ca : str, optional
        A private CA bundle (PEM) that signed the server's certificate; the same as
        ``verify=server_ca``, checked when the backend is made.
    timeout : float
        Seconds to wait for a reply (connecting: at most ``connect_timeout``).
    deadline : float
        Seconds a request may take in all, headers and body, however steadily its bytes
        arrive (default 300): a reply trickling in under ``timeout`` per read is cut there,
        not retried (the chunk falls back to local with ``fallback="local"``).
    retries : int
        Retries of a chunk after a transport failure (refused, reset or cut-off connection,
        timeout, a 200 without a whole CBOR body of the expected shape) or a 5xx, 408 or 429
        answer, with exponential backoff from ``backoff`` seconds, capped at ``backoff_max``;
        a 429/503's ``Retry-After`` is waited for, up to ``retry_after_max`` seconds. Redirects
        are not followed (the request carries credentials): a 3xx is an error.
    fallback : {"local", None}
        Reduce a chunk locally when the server keeps failing, instead of raising.
    breaker : CircuitBreaker, optional
        Stops asking the server after repeated failures (default: the process-wide breaker
        of this server URL, see ``activezarr.backends.breaker``).
    allow_hosts : tuple of str
        HTTP(S) hosts other than the S3 endpoint that chunk URLs may name.
    """

    name = "reductionist"

    def __init__(
        self,
        server: str | None = None,
        *,
        storage_options: dict | None = None,
        workers: int = 16,
        max_in_flight: int = 64,
        verify: bool | str = True,
        server_ca: str | os.PathLike | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        deadline: float = 300.0,
        retries: int = 5,
        backoff: float = 0.1,
        backoff_max: float = 2.0,
        retry_after_max: float = 10.0,
        fallback: str | None = None,
        breaker: CircuitBreaker | None = None,
        allow_hosts: tuple[str, ...] = (),
    ) -> None:
        if not server:
            raise ActiveZarrError(
                "backend='reductionist' needs server='https://host:port' (or --server URL)"
            )
        if fallback not in (None, "local"):
            raise ActiveZarrError(f"fallback must be 'local' or None, not {fallback!r}")
        if isinstance(deadline, bool) or not isinstance(deadline, int | float):
            raise ActiveZarrError(f"deadline must be a number of seconds, not {deadline!r}")
        if not 0 < deadline < math.inf:
            raise ActiveZarrError(
                f"deadline must be a positive, finite number of seconds: {deadline!r}"
            )
        self.server = server.rstrip("/")
        self.storage_options = storage_options
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.deadline = deadline
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.breaker = breaker if breaker is not None else breaker_for(self.server)
        self.fallback = fallback
        self.allow_hosts = tuple(allow_hosts)
        self.session = requests.Session()
        # never fewer in flight than ``workers`` (the fixed number before the limit adapted)
        self.in_flight = InFlightLimit(initial=workers, minimum=workers, maximum=max_in_flight)
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # one kept-alive connection per request in flight
        adapter = tracking_adapter(pool_connections=1, pool_maxsize=self.in_flight.maximum)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # passed with each request: a session-wide ``verify`` loses to REQUESTS_CA_BUNDLE /
        # CURL_CA_BUNDLE in the environment (requests merges those over session settings)
        self.verify = server_ca_bundle(server_ca, verify)
        self._auth = s3_credentials(storage_options)
        self._local = None
        self._local_lock = threading.Lock()
        self._checked_urls: set[str] = set()  # chunk URLs whose host check passed

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.session.close()
        if self._local is not None:
            self._local.close()
            self._local = None

    # -- what the server can take --------------------------------------------------------

    def supports(self, job: Job, batch: ChunkBatch) -> np.ndarray:
        ok = np.zeros(len(batch), dtype=bool)
        if self.local_reason(job) is not None:
            return ok
        for pos, uid in enumerate(batch.url_ids):
            if uid < 0:
                continue
            try:
                object_url(job.urls[uid], self.storage_options)
            except ValueError:
                continue
            ok[pos] = True
        return ok

    def local_reason(self, job: Job) -> str | None:
        """Why no chunk of this job can go to the server (then all are reduced locally), or
        None. For reports: ``supports`` is what decides."""
        dt = job.view_dtype
        if f"{dt.kind}{dt.itemsize}" not in SERVER_DTYPES:
            return f"dtype {dt} is not one of the server's"
        if codec_fields(job.codecs) is None:
            return f"codecs {[c.get('id') for c in job.codecs]} are not zlib/gzip/shuffle"
        if missing_field(job.rule, dt) is False:
            return "the missing-data rules do not fit the server's one-rule field"
        spec = job.spec
        if spec.needs_sum and dt.kind in "iu" and dt.itemsize == 4:
            return "32-bit integer sums would overflow (the server sums in the input dtype)"
        if spec.decode_extremes:
            return "unpacking is not monotonic here (integers that wrap, floats, inf or NaN)"
        unpacked = spec.packing is None or not spec.packing.active
        wide = spec.needs_sum and dt.kind in "iu" and dt.itemsize == 8
        if wide and (spec.op == "mean" or not unpacked):
            return (
                "means of 64-bit integers, and sums of packed ones, add decoded values "
                "(the server's integer sum wraps)"
            )
        return None

    # -- requests ------------------------------------------------------------------------

    def request_body(self, job: Job, batch: ChunkBatch, pos: int) -> dict[str, Any]:
        spec = job.spec
        interface, url = object_url(job.urls[batch.url_ids[pos]], self.storage_options)
        dt = job.view_dtype
        # the server needs a non-empty shape: a 0-d variable is one element of shape [1]
        shape = list(job.chunks) or [1]
        selection = [
            [int(a), int(b), int(s)]
            for a, b, s in zip(batch.in_start[pos], batch.in_stop[pos], job.steps, strict=True)
        ] or [[0, 1, 1]]
        body: dict[str, Any] = {
            "interface_type": interface,
            "url": url,
            "dtype": SERVER_DTYPES[f"{dt.kind}{dt.itemsize}"],
            "byte_order": "big" if job.raw_dtype.byteorder == ">" else "little",
            "offset": int(batch.offsets[pos]),
            "size": int(batch.sizes[pos]),
            "shape": shape,
            "order": "C",
            "selection": selection,
        }
        if job.raw_dtype.byteorder in ("=", "|"):
            body["byte_order"] = "big" if np.little_endian is False else "little"
        if spec.kept_axes:
            body["axis"] = list(spec.reduce_axes)
        body.update(codec_fields(job.codecs) or {})
        missing = missing_field(job.rule, dt)
        if missing:
            body["missing"] = missing
        return body

    def operation(self, job: Job) -> str:
        spec = job.spec
        return "sum" if spec.needs_sum else (spec.stored_extreme or "count")

    @property
    def max_batch_rows(self) -> int | None:
        """Rows per task: each task's chunks go out concurrently within the in-flight limit.
        While the breaker is open and chunks fall back, the local backend's batches are used."""
        if self.fallback == "local" and self.breaker.is_open():
            return None
        return self.in_flight.maximum

    def reduce(self, job: Job, batch: ChunkBatch, stats) -> list[BlockPartial]:
        self._check_hosts(job, batch)
        if self.fallback == "local" and self.breaker.is_open():
            stats.add(chunks_breaker=len(batch))
            return self._reduce_locally(job, batch, np.arange(len(batch)), stats)
        op = self.operation(job)
        if len(batch) == 1:
            results = [self._reduce_chunk(job, batch, 0, op, stats)]
        else:
            results = self._fan_out(job, batch, op, stats)
        out, unasked = [], []
        for pos, parts in enumerate(results):
            if parts is None:
                unasked.append(pos)
            else:
                out += parts
        if unasked:  # the breaker opened: these chunks are reduced here, together
            stats.add(chunks_breaker=len(unasked))
            out += self._reduce_locally(job, batch, np.array(unasked), stats)
        return out

    def _fan_out(self, job: Job, batch: ChunkBatch, op: str, stats) -> list:
        """``_reduce_chunk`` of every row, concurrently within the in-flight limit."""
        futures = [
            self._requests_pool().submit(self._reduce_chunk, job, batch, pos, op, stats)
            for pos in range(len(batch))
        ]
        cf.wait(futures, return_when=cf.FIRST_EXCEPTION)
        if any(f.done() and f.exception() is not None for f in futures):
            for f in futures:
                f.cancel()  # not started yet: never sent
            cf.wait(futures)
            for f in futures:
                if not f.cancelled() and f.exception() is not None:
                    raise f.exception()  # the first failure, in chunk order
        return [f.result() for f in futures]

    def _requests_pool(self) -> cf.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(self.in_flight.maximum, "reductionist")
            return self._pool

    def _reduce_chunk(self, job: Job, batch: ChunkBatch, pos: int, op: str, stats):
        """The partial of one chunk from the server, or from here when it failed there and
        ``fallback="local"``; None when it was not sent because the breaker is open (the
        caller reduces those together)."""
        if self.fallback == "local" and self.breaker.is_open():
            return None
        body = self.request_body(job, batch, pos)
        try:
            reply = self._post(op, body, stats)
        except ReductionistError as exc:
            if not self._may_fall_back(exc):
                raise
            if isinstance(exc, BreakerOpenError):
                return None
            stats.add(fallbacks=[f"chunk {int(batch.rows[pos])}: {exc}"])
            return self._reduce_locally(job, batch, np.array([pos]), stats)
        part = self._partial(job, reply)
        if _may_hide_infinity(job.spec, part):
            stats.add(local_reasons=[INFINITY_REASON])
            return self._reduce_locally(job, batch, np.array([pos]), stats)
        stats.add(chunks_remote=1, bytes_requested=body["size"])
        return [(self._where(job, batch, pos), part)]

    def _check_hosts(self, job: Job, batch: ChunkBatch) -> None:
        """``check_hosts`` for the URLs this batch names, once per URL (an index may name
        thousands of files and a run touch one chunk per task)."""
        for uid in np.unique(batch.url_ids):
            url = job.urls[uid] if uid >= 0 else None
            if url is not None and url not in self._checked_urls:
                check_hosts([url], self.storage_options, self.allow_hosts)
                self._checked_urls.add(url)

    def _may_fall_back(self, exc: ReductionistError) -> bool:
        """Only a server that keeps failing (unreachable, 5xx) is worked around; a refused
        request (4xx) or a certificate that does not verify is the caller's to fix."""
        if self.fallback != "local" or isinstance(exc.__cause__, requests.exceptions.SSLError):
            return False
        return exc.status is None or exc.status >= 500

    def _reduce_locally(self, job, batch, positions, stats) -> list[BlockPartial]:
        from .local import LocalBackend

        with self._local_lock:
            if self._local is None:
                self._local = LocalBackend(self.storage_options)
        stats.add(chunks_local=len(positions))
        return self._local.reduce(job, batch.subset(positions), stats)

    def _where(self, job: Job, batch: ChunkBatch, pos: int) -> tuple[slice, ...]:
        return tuple(
            slice(int(batch.out_start[pos, d]), int(batch.out_stop[pos, d]))
            for d in job.spec.kept_axes
        )

    def _post(self, op: str, body: dict, stats) -> dict:
        """The decoded CBOR reply to ``body``, after bounded retries of every transport
        failure; else one ``ReductionistError`` naming the server and the chunk."""
        url = f"{self.server}/v2/{op}/"
        where = chunk_where(body)
        failure: _Failure | None = None
        attempts = 0
        for attempt in range(self.retries + 1):
            wait = failure.retry_after if failure is not None else 0.0
            if attempt and not self._sleep_before_retry(attempt, wait):
                break  # the breaker opened meanwhile: stop asking this server
            try:
                with self.in_flight.slot() as answered:
                    # asked once a slot is free: the breaker may have opened while waiting
                    if not self.breaker.allow():
                        break
                    attempts += 1
                    stats.add(requests=1, retries=1 if attempt else 0)
                    reply = self._attempt(url, op, body, stats, answered)
            except _Failure as exc:
                failure = exc
                if self.breaker.failure():
                    stats.add(breaker_trips=1)
                    log.warning(
                        "Reductionist %s failed %d times in a row; not asking it for %.0f s",
                        redact(self.server),
                        self.breaker.failures,
                        self.breaker.cooldown,
                    )
                if exc.final:
                    break
                continue
            self.breaker.success()
            return reply
        if failure is None:
            raise BreakerOpenError(
                f"Reductionist {self.server} is not asked for {where}: it failed "
                f"{self.breaker.failures} times in a row (circuit breaker open for "
                f"{self.breaker.cooldown:.0f} s); check that the server is running",
                server=self.server,
            )
        state = "; circuit breaker now open" if self.breaker.is_open() else ""
        what = f"Reductionist {self.server} failed for {where} after {attempts} attempt(s){state}"
        error = ReductionistError(
            f"{what}: {failure.reason}",
            status=failure.status,
            server=self.server,
            cli=f"{what}: {failure.cli}" if failure.cli else None,
        )
        raise error from failure.__cause__

    def _send(self, url: str, body: dict, op: str) -> tuple[requests.Response, bytes]:
        """The reply to ``body`` and its (capped) body, cut when ``deadline`` seconds pass
        (``watchdog``: headers and body in all)."""
        watched = Watched()
        timer = WATCHDOG.arm(self.deadline, watched.cut)
        try:
            with watched:
                resp = self.session.post(
                    url,
                    json=body,
                    auth=self._auth,
                    timeout=(min(self.connect_timeout, self.timeout), self.timeout),
                    verify=self.verify,
                    allow_redirects=False,  # credentials go to this server only
                    stream=True,
                )
            cap = reply_cap(body, op) if resp.status_code == 200 else 2**16
            try:
                return resp, read_capped(resp, cap)
            except BadReply as exc:
                raise _Failure(f"answered {resp.status_code} with a bad body: {exc}") from exc
        except Exception as exc:
            if not timer.fired.is_set():
                raise
            slow = (
                f"the reply was not complete after {self.deadline:g} s although the server "
                "kept sending (too slow a server or link); to wait longer"
            )
            raise _Failure(
                f"{slow} pass deadline=", final=True, cli=f"{slow} add --deadline SECONDS"
            ) from exc
        finally:
            WATCHDOG.disarm(timer)

    def _sleep_before_retry(self, attempt: int, retry_after: float = 0.0) -> bool:
        """Back off (exponential, capped, jittered; at least what the server's Retry-After
        asked, up to ``retry_after_max``); False when the breaker opened."""
        if self.breaker.is_open():
            return False
        delay = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        delay *= 0.5 + random.random() / 2
        delay = max(delay, min(retry_after, self.retry_after_max))
        if delay > 0:
            time.sleep(delay)
        return not self.breaker.is_open()

    def _attempt(self, url: str, op: str, body: dict, stats, answered) -> dict:
        """One request; the reply decoded and checked. Raises ``_Failure`` for what a retry
        may cure, ``ReductionistError`` for what it cannot (4xx, TLS)."""
        try:
            resp, content = self._send(url, body, op)
        except requests.exceptions.SSLError as exc:
            reason = tls_reason(exc) or f"{type(exc).__name__}: {exc}"
            ca = self.verify if isinstance(self.verify, str) else None
            hint = tls_hint(reason, ca, "server_ca='/path/to/ca.pem' (--server-ca PATH)")
            raise ReductionistError(
                f"TLS verification of {self.server} failed: {reason}; {hint}",
                server=self.server,
            ) from exc
        except TRANSPORT_ERRORS as exc:
            if isinstance(exc, requests.exceptions.Timeout):
                answered("overload")
            # a host name that does not exist stays so: not asked again
            raise _Failure(transport_reason(exc, self.timeout), final=host_unknown(exc)) from exc
        stats.add(bytes_received=len(content))
        if resp.status_code == 200:
            try:
                check_content_type(resp.headers.get("Content-Type"))
                reply = check_reply(content, body, op)
            except BadReply as exc:
                raise _Failure(f"answered 200 with a bad body: {exc}") from exc
            answered("ok")
            return reply
        if 300 <= resp.status_code < 400:
            answered("ok")
            raise self._redirected(resp, body)
        if resp.status_code in OVERLOAD_STATUSES:
            answered("overload")
        elif resp.status_code < 500 and resp.status_code not in RETRY_STATUSES:
            answered("ok")  # the server's considered answer
            raise self._error(resp, body)
        raise _Failure(
            f"answered {resp.status_code}: {answer_text(resp)}",
            resp.status_code,
            retry_after(resp.headers.get("Retry-After")),
        )

    def _redirected(self, resp: requests.Response, body: dict) -> ReductionistError:
        """A 3xx: not followed (the request carries credentials), reported with its target."""
        target = resp.headers.get("Location", "(no Location)")
        return ReductionistError(
            f"Reductionist {self.server} answered {resp.status_code} for {chunk_where(body)}, "
            f"redirecting to {target[:200]}; redirects are not followed (the request carries "
            "credentials): pass the final URL as server=",
            status=resp.status_code,
            server=self.server,
        )

    def _error(self, resp: requests.Response, body: dict) -> ReductionistError:
        """The server's answer other than 200, its JSON error message kept."""
        text = answer_text(resp)
        where = chunk_where(body)
        hint = ""
        if resp.status_code == 401:
            hint = "; the server could not read the object with these credentials: check key/secret"
            if self._auth is None:
                hint = "; the object needs credentials: pass key and secret in storage_options"
        return ReductionistError(
            f"Reductionist {self.server} answered {resp.status_code} for {where}: {text}{hint}",
            status=resp.status_code,
            server=self.server,
        )

    def _partial(self, job: Job, reply: dict) -> Partial:
        spec = job.spec
        order = ">" if reply.get("byte_order") == "big" else "<"
        dtype = np.dtype(reply["dtype"]).newbyteorder(order)
        shape = tuple(reply.get("shape") or ())
        values = np.frombuffer(reply["bytes"], dtype=dtype).reshape(shape)
        count = np.asarray(reply["count"], dtype=np.int64).reshape(shape)  # check_reply's
        part = Partial(count)
        if spec.needs_sum:
            part.sum = _decoded_sum(np.where(count > 0, values, 0), count, spec)
        elif spec.needs_min:
            part.min = values.astype(spec.dtype)
        elif spec.needs_max:
            part.max = values.astype(spec.dtype)
        return part


INFINITY_REASON = "the server's float min/max was its starting value, which also stands for inf"


def _may_hide_infinity(spec, part: Partial) -> bool:
    """A float min (max) from the server equal to the dtype's largest (lowest) finite value
    where values were seen: the server starts from that value, so it is also what a chunk
    whose valid values are all +inf (-inf) gives. Such a chunk is reduced here."""
    values = part.min if part.min is not None else part.max
    if values is None or values.dtype.kind != "f":
        return False
    info = np.finfo(values.dtype)
    edge = info.max if part.min is not None else info.min
    return bool(((values == edge) & (part.count > 0)).any())


def _decoded_sum(raw_sum: np.ndarray, count: np.ndarray, spec) -> np.ndarray:
    """A server's sum of stored values as a sum of decoded values.

    The server cannot unpack, so a packed variable's sum is ``scale * raw + offset * count``
    in float64: within a few float32 ulps of unpacking each element first (api-contract.md).
    """
    packing = spec.packing
    if packing is None or not packing.active:
        return raw_sum.astype(spec.acc_dtype)
    decoded = raw_sum.astype(np.float64) * packing.scale + packing.offset * count
    return decoded.astype(spec.acc_dtype)
