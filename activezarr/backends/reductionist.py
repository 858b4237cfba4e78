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

import logging
import os
import time
from typing import Any
from urllib.parse import quote, urlsplit

import cbor2
import numpy as np
import requests
from requests.adapters import HTTPAdapter

from ..errors import ActiveZarrError, ReductionistError
from ..missing import MissingRule
from ..reduce import Partial, sum_dtype
from .base import Backend, BlockPartial, ChunkBatch, Job

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
                raise ActiveZarrError(
                    f"the index points at {urlsplit(url).scheme}://{host}, not the storage "
                    f"endpoint {endpoint}; refusing to send credentials there. If you trust "
                    f"it, pass allow_hosts=('{host}',)"
                )


def missing_field(rule: MissingRule, dtype: np.dtype) -> dict | None | bool:
    """The request's ``missing`` field; None when nothing is missing; False when it cannot fit.

    Equality values the range rule already excludes are dropped, so that a default fill
    beyond ``valid_max`` does not force a local fallback. Zero is a value like any other.
    """
    lo, hi = rule.valid_min, rule.valid_max
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
        Size of the connection pool (one connection per worker thread).
    verify : bool or str
        TLS verification of the server: True (default), a CA bundle path, or False.
    timeout : float
        Seconds per request.
    retries : int
        Retries after connection errors and 5xx answers, with exponential backoff.
    fallback : {"local", None}
        Reduce a chunk locally when the server keeps failing, instead of raising.
    allow_hosts : tuple of str
        HTTP(S) hosts other than the S3 endpoint that chunk URLs may name.
    """

    name = "reductionist"
    # requests are latency-bound: one chunk per task keeps `workers` requests in flight
    max_batch_rows = 1

    def __init__(
        self,
        server: str | None = None,
        *,
        storage_options: dict | None = None,
        workers: int = 16,
        verify: bool | str = True,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.2,
        fallback: str | None = None,
        allow_hosts: tuple[str, ...] = (),
    ) -> None:
        if not server:
            raise ActiveZarrError(
                "backend='reductionist' needs server='https://host:port' (or --server URL)"
            )
        if fallback not in (None, "local"):
            raise ActiveZarrError(f"fallback must be 'local' or None, not {fallback!r}")
        self.server = server.rstrip("/")
        self.storage_options = storage_options
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.fallback = fallback
        self.allow_hosts = tuple(allow_hosts)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(workers, 1))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # passed with each request: a session-wide ``verify`` loses to REQUESTS_CA_BUNDLE /
        # CURL_CA_BUNDLE in the environment (requests merges those over session settings)
        self.verify = verify
        self._auth = s3_credentials(storage_options)
        self._local = None
        self._checked_urls: set[str] = set()  # chunk URLs whose host check passed

    def close(self) -> None:
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

    def reduce(self, job: Job, batch: ChunkBatch, stats) -> list[BlockPartial]:
        self._check_hosts(job, batch)
        op = self.operation(job)
        out = []
        for pos in range(len(batch)):
            body = self.request_body(job, batch, pos)
            try:
                reply = self._post(op, body, stats)
            except ReductionistError as exc:
                if not self._may_fall_back(exc):
                    raise
                out += self._reduce_locally(job, batch, pos, stats, exc)
                continue
            stats.add(chunks_remote=1, bytes_requested=body["size"])
            out.append((self._where(job, batch, pos), self._partial(job, reply)))
        return out

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

    def _reduce_locally(self, job, batch, pos, stats, exc) -> list[BlockPartial]:
        from .local import LocalBackend

        if self._local is None:
            self._local = LocalBackend(self.storage_options)
        stats.add(chunks_local=1, fallbacks=[f"chunk {int(batch.rows[pos])}: {exc}"])
        return self._local.reduce(job, batch.subset(np.array([pos])), stats)

    def _where(self, job: Job, batch: ChunkBatch, pos: int) -> tuple[slice, ...]:
        return tuple(
            slice(int(batch.out_start[pos, d]), int(batch.out_stop[pos, d]))
            for d in job.spec.kept_axes
        )

    def _post(self, op: str, body: dict, stats) -> dict:
        url = f"{self.server}/v2/{op}/"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                stats.add(retries=1)
                time.sleep(self.backoff * 2 ** (attempt - 1))
            stats.add(requests=1)
            try:
                resp = self.session.post(
                    url, json=body, auth=self._auth, timeout=self.timeout, verify=self.verify
                )
            except requests.exceptions.SSLError as exc:
                raise ReductionistError(
                    f"TLS verification of {self.server} failed ({exc}); if its certificate is "
                    "not from a public CA, pass verify='/path/to/ca.pem'",
                    server=self.server,
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = ReductionistError(
                    f"cannot reach Reductionist server {self.server} ({type(exc).__name__}) "
                    f"after {attempt + 1} attempt(s); check the URL and that the server is running",
                    server=self.server,
                )
                last.__cause__ = exc
                continue
            stats.add(bytes_received=len(resp.content))
            if resp.status_code == 200:
                return cbor2.loads(resp.content)
            error = self._error(resp, body)
            if resp.status_code < 500:
                raise error
            last = error
        assert last is not None
        raise last

    def _error(self, resp: requests.Response, body: dict) -> ReductionistError:
        try:
            detail = resp.json().get("error", {})
            message = detail.get("message", "")
            causes = detail.get("caused_by") or []
        except ValueError:
            message, causes = resp.text[:200], []
        text = message + (f" (caused by: {'; '.join(causes)})" if causes else "")
        where = f"{body['url']} bytes {body['offset']}+{body['size']}"
        if resp.status_code == 401:
            hint = "the server could not read the object with these credentials: check key/secret"
            if self._auth is None:
                hint = "the object needs credentials: pass key and secret in storage_options"
            return ReductionistError(
                f"Reductionist {self.server} answered 401 for {where}: {text}; {hint}",
                status=401,
                server=self.server,
            )
        return ReductionistError(
            f"Reductionist {self.server} answered {resp.status_code} for {where}: {text}",
            status=resp.status_code,
            server=self.server,
        )

    def _partial(self, job: Job, reply: dict) -> Partial:
        spec = job.spec
        order = ">" if reply.get("byte_order") == "big" else "<"
        dtype = np.dtype(reply["dtype"]).newbyteorder(order)
        shape = tuple(reply.get("shape") or ())
        values = np.frombuffer(reply["bytes"], dtype=dtype).reshape(shape)
        if reply.get("count_as_bytes"):
            count = np.frombuffer(reply["count_as_bytes"], dtype=np.dtype("i8").newbyteorder(order))
        else:
            count = np.asarray(reply["count"], dtype=np.int64)
        count = count.reshape(shape).astype(np.int64)
        part = Partial(count)
        if spec.needs_sum:
            part.sum = np.where(count > 0, values, 0).astype(sum_dtype(spec.dtype))
        elif spec.needs_min:
            part.min = values.astype(spec.dtype)
        elif spec.needs_max:
            part.max = values.astype(spec.dtype)
        return part
