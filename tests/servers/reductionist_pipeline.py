"""The Reductionist v2 data path: download a byte range, decode it, reduce it, build the CBOR reply.

Behaviour copied from the reference spec, including its quirks:
- sums accumulate in the input dtype (integers wrap), min/max of nothing give the dtype's max/min
  with count 0;
- with ``order: "F"``, ``select`` and ``axis: []`` results are serialised in column-major element
  order, partial-axis reductions in row-major order of the output shape;
- the reply carries ``shape_as_bytes``/``count_as_bytes`` always (0.13.1), empty unless asked for.
Deliberate differences: NaN data gives NaN for min/max (the real server drops the connection), and
an HTTP source answering 200 to a ranged request is cut to the requested range here.
"""

from __future__ import annotations

import gzip
import sys
import threading
import zlib
from urllib.parse import unquote, urlsplit

import boto3
import numpy as np
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .reductionist_validate import ApiError, Invalid, Request, check_length

S3_AUTH_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
S3_NOT_FOUND_CODES = ("NoSuchKey", "NoSuchBucket", "InvalidObjectState", "NotFound")
S3_ERROR = "error receiving object from S3 storage"
HTTP_TIMEOUT = 60


class Sources:
    """Cached S3 clients (one per endpoint and credentials) and per-thread HTTP sessions."""

    def __init__(self, https_verify=None):
        self.https_verify = https_verify
        self._lock = threading.Lock()
        self._s3: dict[tuple, object] = {}
        self._local = threading.local()

    def s3_client(self, endpoint: str, auth: tuple[str, str] | None):
        """Return the boto3 client for this endpoint and key pair (unsigned when auth is None)."""
        with self._lock:
            if (endpoint, auth) not in self._s3:
                self._s3[(endpoint, auth)] = self._new_s3_client(endpoint, auth)
            return self._s3[(endpoint, auth)]

    def _new_s3_client(self, endpoint: str, auth: tuple[str, str] | None):
        config = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            signature_version=UNSIGNED if auth is None else None,
            max_pool_connections=32,
        )
        key, secret = auth or (None, None)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=config,
            verify=self.https_verify,
        )

    def http_session(self) -> requests.Session:
        """Return this thread's requests session."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session


def run(operation: str, req: Request, auth: tuple[str, str] | None, sources: Sources) -> dict:
    """Execute one validated request end to end and return the reply map (before CBOR)."""
    raw = fetch(req, auth, sources)
    return compute(operation, req, decode(req, raw))


def fetch(req: Request, auth: tuple[str, str] | None, sources: Sources) -> bytes:
    """Download the request's byte range from S3 or HTTP(S)."""
    if req.interface_type == "s3":
        return _fetch_s3(req, auth, sources)
    if req.interface_type in ("http", "https"):
        return _fetch_http(req, auth, sources)
    raise ApiError(400, f"unsupported interface type {req.interface_type}")


def split_s3_url(url: str) -> tuple[str, str, str]:
    """Split a path-style S3 URL into (endpoint, bucket, key)."""
    parts = urlsplit(url)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    if not bucket or not key:
        raise ApiError(400, "invalid S3 URL", [f"expected <endpoint>/<bucket>/<key>, got {url}"])
    return f"{parts.scheme}://{parts.netloc}", unquote(bucket), unquote(key)


def byte_range(offset: int | None, size: int | None) -> str | None:
    """The S3 Range header for offset/size, or None for the whole object."""
    if offset is None and size is None:
        return None
    start = offset or 0
    return f"bytes={start}-" if size is None else f"bytes={start}-{start + size - 1}"


def _fetch_s3(req: Request, auth, sources: Sources) -> bytes:
    endpoint, bucket, key = split_s3_url(req.url)
    kwargs = {"Bucket": bucket, "Key": key}
    if byte_range(req.offset, req.size):
        kwargs["Range"] = byte_range(req.offset, req.size)
    try:
        return sources.s3_client(endpoint, auth).get_object(**kwargs)["Body"].read()
    except ClientError as exc:
        raise _s3_error(exc) from None
    except (BotoCoreError, OSError) as exc:
        raise ApiError(500, S3_ERROR, [f"{type(exc).__name__}: {exc}"]) from None


def _s3_error(exc: ClientError) -> ApiError:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code, message = error.get("Code", ""), error.get("Message", "")
    if code in S3_AUTH_CODES or status == 403:
        code, message = (code, message) if code in S3_AUTH_CODES else ("AccessDenied", "")
        return ApiError(401, S3_ERROR, [f"{code}: {message or 'Access Denied'}"])
    if code in S3_NOT_FOUND_CODES or status == 404:
        return ApiError(400, S3_ERROR, [f"{code or 'NotFound'}: {message or 'Not Found'}"])
    return ApiError(500, S3_ERROR, [f"{code}: {message}"])


def _fetch_http(req: Request, auth, sources: Sources) -> bytes:
    ranged = req.offset is not None and req.size is not None
    headers = {"Range": byte_range(req.offset, req.size)} if ranged else {}
    verify = True if sources.https_verify is None else sources.https_verify
    try:
        resp = sources.http_session().get(
            req.url, headers=headers, auth=auth, verify=verify, timeout=HTTP_TIMEOUT
        )
    except requests.RequestException as exc:
        raise ApiError(500, "HTTP request error", [f"{type(exc).__name__}: {exc}"]) from None
    if resp.status_code not in (200, 206):
        raise ApiError(400, "HTTP request error", [f"HTTP status {resp.status_code}"])
    if resp.status_code == 200 and req.offset is not None:
        end = None if req.size is None else req.offset + req.size
        return resp.content[req.offset : end]
    return resp.content


def decode(req: Request, raw: bytes) -> np.ndarray:
    """Decompress, unshuffle, byte-swap, shape and slice the downloaded bytes."""
    data = _decompress(req.compression, raw)
    for _name, element_size in reversed(req.filters):
        data = unshuffle(data, element_size)
    try:
        check_length(len(data), req.dtype.itemsize, req.shape)
    except Invalid as exc:
        raise ApiError(400, "failed to create array from shape", [str(exc)]) from None
    stored = req.dtype.newbyteorder(req.byte_order or "=")
    array = np.frombuffer(data, dtype=stored).astype(req.dtype, copy=False)
    shape = req.shape or (len(data) // req.dtype.itemsize,)
    array = array.reshape(shape, order=req.order)
    return array[req.selection] if req.selection else array


def _decompress(compression: str | None, raw: bytes) -> bytes:
    try:
        if compression == "gzip":
            return gzip.decompress(raw)
        if compression == "zlib":
            return zlib.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ApiError(400, "failed to decompress data", [f"{compression}: {exc}"]) from None
    return raw


def unshuffle(data: bytes, element_size: int) -> bytes:
    """Undo the HDF5 byte shuffle; trailing bytes that do not fill an element stay as they are."""
    count = len(data) // element_size
    if element_size <= 1 or count == 0:
        return data
    body = np.frombuffer(data, np.uint8, count=count * element_size)
    return body.reshape(element_size, count).T.tobytes() + data[count * element_size :]


def compute(operation: str, req: Request, array: np.ndarray) -> dict:
    """Reduce (or select) the decoded array and return the reply map."""
    valid = valid_mask(array, req.missing)
    if operation == "select":
        count = array.size if valid is None else int(np.count_nonzero(valid))
        return _reply(array, np.int64(count), req, req.order == "F")
    axes = tuple(range(array.ndim)) if req.axis is None else req.axis
    where = True if valid is None else valid
    counts = np.sum(np.broadcast_to(where, array.shape), axis=axes, dtype=np.int64)
    values = counts if operation == "count" else _REDUCERS[operation](array, axes, where)
    return _reply(values, counts, req, req.order == "F" and axes == ())


def valid_mask(array: np.ndarray, missing: tuple[str, tuple] | None) -> np.ndarray | None:
    """True where an element is not missing; None when the request has no missing rule."""
    if missing is None:
        return None
    kind, values = missing
    if kind in ("missing_value", "missing_values"):
        return ~np.isin(array, np.asarray(values, dtype=array.dtype))
    # the reference's words: valid_min excludes x < min, valid_max x > max (NaN is kept)
    if kind == "valid_min":
        return ~(array < values[0])
    if kind == "valid_max":
        return ~(array > values[0])
    return ~((array < values[0]) | (array > values[1]))


def _limits(dtype: np.dtype):
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    return dtype.type(info.min), dtype.type(info.max)


_REDUCERS = {
    "sum": lambda a, axes, where: np.sum(a, axis=axes, dtype=a.dtype, where=where),
    "min": lambda a, axes, where: np.min(a, axis=axes, initial=_limits(a.dtype)[1], where=where),
    "max": lambda a, axes, where: np.max(a, axis=axes, initial=_limits(a.dtype)[0], where=where),
}


def _reply(values, counts, req: Request, fortran: bool) -> dict:
    values, counts = np.asarray(values), np.asarray(counts, dtype=np.int64)
    order = "F" if fortran else "C"
    reply = {
        "bytes": values.tobytes(order=order),
        "dtype": values.dtype.name,
        "shape": list(values.shape),
        "count": counts.ravel(order=order).tolist(),
        "byte_order": sys.byteorder,
        "shape_as_bytes": b"",
        "count_as_bytes": b"",
    }
    if req.option_shape_as_bytes:
        reply["shape_as_bytes"], reply["shape"] = np.asarray(values.shape, np.uint64).tobytes(), []
    if req.option_count_as_bytes:
        reply["count_as_bytes"], reply["count"] = counts.tobytes(order=order), []
    return reply
