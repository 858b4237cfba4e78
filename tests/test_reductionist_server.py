"""Tests of the Reductionist test server itself, against real moto S3 and a real nginx."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cbor2
import numcodecs
import numpy as np
import pytest
import requests

from tests.servers.conftest_fixtures import require_nginx
from tests.servers.nginx import start_nginx
from tests.servers.reductionist import start_reductionist
from tests.servers.s3 import make_bucket, upload

_conftest = sys.modules.get("tests.conftest")
if not hasattr(_conftest, "reductionist_server"):  # run standalone: bring the fixtures in
    from tests.servers.conftest_fixtures import (  # noqa: F401
        moto_auth_server,
        moto_server,
        nginx_server,
        reductionist,
        reductionist_server,
        tls_certificate,
    )

ROOT = Path(__file__).resolve().parents[1]
A = ((np.arange(60, dtype=np.float32) - 20) * 0.5).reshape(3, 4, 5)
B = (np.arange(-30, 30, dtype=np.int64) * 7).reshape(6, 10)
C = np.linspace(-1, 1, 100).reshape(10, 10)
D = np.arange(20, dtype=np.int32).reshape(4, 5)
E = np.arange(1000, 1040, dtype=np.uint32).reshape(5, 8)
HEADER = b"H" * 16
OBJECTS = {
    "f32.bin": A.tobytes(),
    "f32_fortran.bin": A.tobytes(order="F"),
    "i64.bin": B.tobytes(),
    "f64_shuffle_zlib.bin": zlib.compress(numcodecs.Shuffle(elementsize=8).encode(C.tobytes())),
    "i32_big.bin": D.astype(">i4").tobytes(),
    "u32.gz": gzip.compress(E.tobytes()),
    "i32_overflow.bin": np.full(4, 2**30, dtype=np.int32).tobytes(),
    "padded.bin": HEADER + A.tobytes() + b"T" * 8,
}
CREDS = ("testing", "testing")


@pytest.fixture(scope="module")
def objects(moto_server, tmp_path_factory):
    """A private bucket holding OBJECTS; returns {name: s3 url}."""
    bucket = f"rs-{uuid.uuid4().hex[:12]}"
    make_bucket(moto_server, bucket)
    folder = tmp_path_factory.mktemp("objects")
    urls = {}
    for name, data in OBJECTS.items():
        (folder / name).write_bytes(data)
        urls[name] = upload(moto_server, bucket, name, folder / name)
    return urls


def post(server, op, body, auth=CREDS, **kwargs):
    kwargs.setdefault("timeout", 30)
    return requests.post(f"{server.url}/v2/{op}/", json=body, auth=auth, **kwargs)


def s3_body(url, dtype, **fields):
    return {"interface_type": "s3", "url": url, "dtype": dtype, **fields}


def decoded(resp):
    """(values, counts) from a CBOR reply, values in the reply's byte order."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/cbor"
    doc = cbor2.loads(resp.content)
    order = "<" if doc["byte_order"] == "little" else ">"
    dtype = np.dtype(doc["dtype"]).newbyteorder(order)
    return np.frombuffer(doc["bytes"], dtype).reshape(doc["shape"]), doc["count"]


def assert_error(resp, status, message=None):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    error = resp.json()["error"]
    assert isinstance(error["message"], str)
    assert isinstance(error.get("caused_by", []), list)
    if message is not None:
        assert message in json.dumps(error)
    return error


NUMPY = {"sum": np.sum, "min": np.min, "max": np.max}


@pytest.mark.parametrize("op", ["sum", "min", "max", "count"])
def test_whole_array_reductions_match_numpy(reductionist_server, objects, op):
    values, count = decoded(post(reductionist_server, op, s3_body(objects["f32.bin"], "float32")))
    assert values.shape == () and count == [60]
    expected = A.size if op == "count" else NUMPY[op](A)
    assert values.dtype == (np.int64 if op == "count" else np.float32)
    assert values == expected


def test_select_with_negative_and_strided_selection(reductionist_server, objects):
    selection = [[0, 3, 2], [-1, -5, -1], {"start": 1, "end": 5, "stride": 2}]
    body = s3_body(objects["f32.bin"], "float32", shape=[3, 4, 5], selection=selection)
    values, count = decoded(post(reductionist_server, "select", body))
    expected = A[0:3:2, -1:-5:-1, 1:5:2]
    np.testing.assert_array_equal(values, expected)
    assert count == [expected.size]


@pytest.mark.parametrize("axis", [0, [1], [0, 2], [0, 1, 2], []])
@pytest.mark.parametrize("op", ["sum", "max", "count"])
def test_axis_reductions_drop_reduced_dims(reductionist_server, objects, op, axis):
    body = s3_body(objects["f32.bin"], "float32", shape=[3, 4, 5], axis=axis)
    values, count = decoded(post(reductionist_server, op, body))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    expected_count = np.sum(np.ones(A.shape, np.int64), axis=axes)
    expected = expected_count if op == "count" else NUMPY[op](A, axis=axes)
    np.testing.assert_array_equal(values, expected)
    assert count == expected_count.ravel().tolist()


MISSING = {
    "missing_value": lambda x: x == 0,
    "missing_values": lambda x: np.isin(x, [-210, 7, 203]),
    "valid_min": lambda x: x < -7,
    "valid_max": lambda x: x > 14,
    "valid_range": lambda x: (x < -70) | (x > 70),
}
MISSING_SPEC = {
    "missing_value": 0,
    "missing_values": [-210, 7, 203],
    "valid_min": -7,
    "valid_max": 14,
    "valid_range": [-70, 70],
}


@pytest.mark.parametrize("kind", sorted(MISSING))
@pytest.mark.parametrize("op", ["sum", "min", "max", "count"])
def test_missing_rules_mask_elements(reductionist_server, objects, kind, op):
    body = s3_body(objects["i64.bin"], "int64", shape=[6, 10], missing={kind: MISSING_SPEC[kind]})
    values, count = decoded(post(reductionist_server, op, body))
    masked = np.ma.masked_where(MISSING[kind](B), B)
    expected = masked.count() if op == "count" else NUMPY[op](masked)
    assert values == expected and count == [masked.count()]


def test_missing_with_axis_counts_per_output_element(reductionist_server, objects):
    body = s3_body(objects["i64.bin"], "int64", shape=[6, 10], axis=1, missing={"valid_min": 0})
    values, count = decoded(post(reductionist_server, "min", body))
    masked = np.ma.masked_less(B, 0)
    assert count == masked.count(axis=1).tolist()
    filled = np.ma.min(masked, axis=1).filled(np.iinfo(np.int64).max)
    np.testing.assert_array_equal(values, filled)


@pytest.mark.parametrize(
    "op, expected",
    [("min", np.finfo(np.float32).max), ("max", np.finfo(np.float32).min), ("sum", 0)],
)
def test_empty_selection_gives_dtype_limits_and_zero_count(
    reductionist_server, objects, op, expected
):
    selection = [[2, 1, 1], [0, 4, 1], [0, 5, 1]]
    body = s3_body(objects["f32.bin"], "float32", shape=[3, 4, 5], selection=selection)
    values, count = decoded(post(reductionist_server, op, body))
    assert values == np.float32(expected) and count == [0]


def test_sum_accumulates_in_input_dtype(reductionist_server, objects):
    values, _ = decoded(
        post(reductionist_server, "sum", s3_body(objects["i32_overflow.bin"], "int32"))
    )
    assert values.dtype == np.int32 and values == 0  # 4 * 2**30 wraps around


def test_zlib_and_shuffle_pipeline(reductionist_server, objects):
    body = s3_body(
        objects["f64_shuffle_zlib.bin"],
        "float64",
        shape=[10, 10],
        compression={"id": "zlib"},
        filters=[{"id": "shuffle", "element_size": 8}],
        selection=[[1, 9, 3], [0, 10, 1]],
    )
    values, _ = decoded(post(reductionist_server, "select", body))
    np.testing.assert_array_equal(values, C[1:9:3])
    total, count = decoded(post(reductionist_server, "sum", body))
    assert total == pytest.approx(C[1:9:3].sum()) and count == [30]


def test_gzip_uint32(reductionist_server, objects):
    body = s3_body(objects["u32.gz"], "uint32", shape=[5, 8], compression={"id": "gzip"}, axis=0)
    values, count = decoded(post(reductionist_server, "max", body))
    np.testing.assert_array_equal(values, E.max(axis=0))
    assert values.dtype == np.uint32 and count == [5] * 8


def test_big_endian_input_is_byte_swapped(reductionist_server, objects):
    body = s3_body(objects["i32_big.bin"], "int32", shape=[4, 5], byte_order="big")
    values, _ = decoded(post(reductionist_server, "select", body))
    np.testing.assert_array_equal(values, D)
    total, _ = decoded(post(reductionist_server, "sum", body))
    assert total == D.sum()


def test_offset_and_size_select_a_byte_range(reductionist_server, objects):
    body = s3_body(objects["padded.bin"], "float32", offset=16, size=A.nbytes, shape=[3, 4, 5])
    values, _ = decoded(post(reductionist_server, "select", body))
    np.testing.assert_array_equal(values, A)


def test_fortran_order_serialisation(reductionist_server, objects):
    body = s3_body(objects["f32_fortran.bin"], "float32", shape=[3, 4, 5], order="F")
    values, _ = decoded(post(reductionist_server, "sum", {**body, "axis": [1]}))
    np.testing.assert_array_equal(values, A.sum(axis=1))  # partial reductions: row-major
    doc = cbor2.loads(post(reductionist_server, "select", body).content)
    selected = np.frombuffer(doc["bytes"], np.float32).reshape(doc["shape"], order="F")
    np.testing.assert_array_equal(selected, A)  # select: column-major element order


def test_as_bytes_options(reductionist_server, objects):
    flags = {"option_shape_as_bytes": True, "option_count_as_bytes": True}
    body = s3_body(objects["f32.bin"], "float32", shape=[3, 4, 5], axis=[0], **flags)
    doc = cbor2.loads(post(reductionist_server, "sum", body).content)
    assert doc["shape"] == [] and doc["count"] == []
    assert np.frombuffer(doc["shape_as_bytes"], np.uint64).tolist() == [4, 5]
    assert np.frombuffer(doc["count_as_bytes"], np.int64).tolist() == [3] * 20


def test_reply_map_keys(reductionist_server, objects):
    resp = post(reductionist_server, "count", s3_body(objects["f32.bin"], "float32"))
    doc = cbor2.loads(resp.content)
    assert set(doc) == {"bytes", "dtype", "shape", "count", "byte_order"} | {
        "shape_as_bytes",
        "count_as_bytes",
    }
    assert doc["dtype"] == "int64" and doc["byte_order"] == sys.byteorder


URL = "http://127.0.0.1:1/bucket/key"
INVALID = [
    {"interface_type": "s3", "url": URL, "dtype": "float32", "bogus": 1},
    {"interface_type": "s3", "dtype": "float32"},
    {"url": URL, "dtype": "float32"},
    {"interface_type": "s3", "url": URL},
    {"interface_type": "", "url": URL, "dtype": "float32"},
    {"interface_type": "s3", "url": "not a url", "dtype": "float32"},
    {"interface_type": "s3", "url": URL, "dtype": "int16"},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "byte_order": "middle"},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "offset": -1},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "size": 0},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "size": 6},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "size": 8, "shape": [3]},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "shape": []},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "shape": [2, 0]},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "order": "c"},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "selection": [[0, 1, 1]]},
    {
        "interface_type": "s3",
        "url": URL,
        "dtype": "float32",
        "shape": [2],
        "selection": [[0, 1, 0]],
    },
    {
        "interface_type": "s3",
        "url": URL,
        "dtype": "float32",
        "shape": [2, 2],
        "selection": [[0, 1, 1]],
    },
    {"interface_type": "s3", "url": URL, "dtype": "float32", "shape": [2], "selection": [[0, 1]]},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "axis": 0},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "shape": [2, 2], "axis": 2},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "shape": [2, 2], "axis": [1, 0]},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "shape": [2, 2], "axis": [0, 0]},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "compression": {"id": "lz4"}},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "compression": {"id": "blosc2"}},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "filters": [{"id": "shuffle"}]},
    {"interface_type": "s3", "url": URL, "dtype": "uint32", "missing": {"missing_value": -1}},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "missing": {"valid_min": 1e39}},
    {"interface_type": "s3", "url": URL, "dtype": "int32", "missing": {"missing_value": 1.5}},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "missing": {"valid_range": [2, 1]}},
    {"interface_type": "s3", "url": URL, "dtype": "float32", "missing": {}},
    {
        "interface_type": "s3",
        "url": URL,
        "dtype": "float32",
        "missing": {"valid_min": 1, "valid_max": 2},
    },
    {"interface_type": "s3", "url": URL, "dtype": "float32", "option_shape_as_bytes": "yes"},
]


@pytest.mark.parametrize("body", INVALID, ids=range(len(INVALID)))
def test_invalid_requests_are_400(reductionist_server, body):
    error = assert_error(post(reductionist_server, "sum", body), 400)
    assert error["message"] == "request data is not valid" and error["caused_by"]


def test_null_means_absent(reductionist_server, objects):
    body = s3_body(objects["f32.bin"], "float32", shape=None, selection=None, missing=None)
    values, _ = decoded(post(reductionist_server, "sum", body))
    assert values == A.sum()


@pytest.mark.parametrize(
    "data, content_type",
    [
        (b'{"interface_type": "s3", "url": "http://h/b/k", "dtype": "float32"}', "text/plain"),
        (
            b'{"interface_type": "s3", "url": "http://h/b/k", "dtype": "float32", "offset": NaN}',
            None,
        ),
        (b"[1, 2]", None),
        (b"{not json", None),
    ],
)
def test_unparseable_bodies_are_400(reductionist_server, data, content_type):
    headers = {"Content-Type": content_type or "application/json"}
    resp = requests.post(
        f"{reductionist_server.url}/v2/sum", data=data, headers=headers, timeout=30
    )
    assert_error(resp, 400, "request data is not valid")


@pytest.mark.parametrize("op", ["mean", "foo"])
def test_unknown_operation_is_404(reductionist_server, op):
    assert_error(post(reductionist_server, op, {}), 404, f"unsupported operation {op}")


def test_trailing_slash_is_optional(reductionist_server, objects):
    body = s3_body(objects["f32.bin"], "float32")
    resp = requests.post(f"{reductionist_server.url}/v2/sum", json=body, auth=CREDS, timeout=30)
    assert decoded(resp)[0] == A.sum()


def test_missing_key_and_bucket_are_400(reductionist_server, objects, moto_server):
    missing_key = objects["f32.bin"] + ".nope"
    assert_error(
        post(reductionist_server, "sum", s3_body(missing_key, "float32")), 400, "NoSuchKey"
    )
    missing_bucket = moto_server.url("no-such-bucket-here", "key")
    resp = post(reductionist_server, "sum", s3_body(missing_bucket, "float32"))
    assert_error(resp, 400, "NoSuchBucket")


def test_unknown_interface_type_is_400(reductionist_server, objects):
    body = {**s3_body(objects["f32.bin"], "float32"), "interface_type": "ftp"}
    assert_error(post(reductionist_server, "sum", body), 400, "unsupported interface type ftp")


def test_anonymous_read_of_private_object_is_401(reductionist_server, objects):
    resp = post(reductionist_server, "sum", s3_body(objects["f32.bin"], "float32"), auth=None)
    assert_error(resp, 401, "Access Denied")


def test_anonymous_read_of_public_bucket(reductionist_server, moto_server, tmp_path):
    bucket = f"pub-{uuid.uuid4().hex[:12]}"
    make_bucket(moto_server, bucket, public=True)
    (tmp_path / "a.bin").write_bytes(A.tobytes())
    url = upload(moto_server, bucket, "a.bin", tmp_path / "a.bin")
    values, _ = decoded(post(reductionist_server, "max", s3_body(url, "float32"), auth=None))
    assert values == A.max()


@pytest.fixture(scope="module")
def private_object(moto_auth_server, tmp_path_factory):
    bucket = f"auth-{uuid.uuid4().hex[:12]}"
    make_bucket(moto_auth_server, bucket)
    path = tmp_path_factory.mktemp("auth") / "d.bin"
    path.write_bytes(D.tobytes())
    return upload(moto_auth_server, bucket, "d.bin", path)


def test_valid_credentials_read_from_auth_moto(
    reductionist_server, moto_auth_server, private_object
):
    auth = (moto_auth_server.access_key, moto_auth_server.secret_key)
    values, _ = decoded(
        post(reductionist_server, "sum", s3_body(private_object, "int32"), auth=auth)
    )
    assert values == D.sum()


@pytest.mark.parametrize(
    "which, code",
    [("key", "InvalidAccessKeyId"), ("secret", "SignatureDoesNotMatch"), ("anonymous", "Access")],
)
def test_wrong_credentials_are_401(
    reductionist_server, moto_auth_server, private_object, which, code
):
    auth = {
        "key": ("AKIAWRONGWRONGWRONG0", moto_auth_server.secret_key),
        "secret": (moto_auth_server.access_key, "wrong-secret"),
        "anonymous": None,
    }[which]
    body = s3_body(private_object, "int32")
    if which == "anonymous":  # moto's auth mode answers unsigned requests with 500
        assert post(reductionist_server, "sum", body, auth=auth).status_code in (401, 500)
        return
    assert_error(post(reductionist_server, "sum", body, auth=auth), 401, code)


@pytest.fixture(scope="module")
def https_objects(nginx_server):
    """The padded and compressed objects served by nginx; returns {name: https url}."""
    folder = nginx_server.root / f"rs-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    names = ("padded.bin", "f64_shuffle_zlib.bin")
    for name in names:
        (folder / name).write_bytes(OBJECTS[name])
    return {name: f"{nginx_server.url}/{folder.name}/{name}" for name in names}


def https_body(url, dtype, **fields):
    return {"interface_type": "https", "url": url, "dtype": dtype, **fields}


def test_https_source_with_byte_range(reductionist_server, https_objects):
    body = https_body(https_objects["padded.bin"], "float32", offset=16, size=A.nbytes)
    values, count = decoded(post(reductionist_server, "sum", {**body, "shape": [3, 4, 5]}))
    assert values == A.sum() and count == [60]
    body = {**body, "shape": [3, 4, 5], "selection": [[1, 2, 1], [0, 4, 1], [0, 5, 1]]}
    selected, _ = decoded(post(reductionist_server, "select", body))
    np.testing.assert_array_equal(selected, A[1:2])


def test_https_compressed_source(reductionist_server, https_objects):
    body = https_body(
        https_objects["f64_shuffle_zlib.bin"],
        "float64",
        compression={"id": "zlib"},
        filters=[{"id": "shuffle", "element_size": 8}],
    )
    values, _ = decoded(post(reductionist_server, "min", body))
    assert values == C.min()


def test_https_missing_file_is_400(reductionist_server, nginx_server):
    body = https_body(f"{nginx_server.url}/no/such/file.bin", "float32")
    assert_error(post(reductionist_server, "sum", body), 400, "HTTP request error")


def test_https_source_requires_trusted_ca(https_objects):
    with start_reductionist() as untrusting:
        resp = post(untrusting, "sum", https_body(https_objects["padded.bin"], "float32"))
    assert_error(resp, 500, "CERTIFICATE_VERIFY_FAILED")


def test_basic_auth_is_forwarded_to_https_source(reductionist_server, tls_certificate, tmp_path):
    require_nginx()
    (tmp_path / "d.bin").write_bytes(D.tobytes())
    with start_nginx(tmp_path, certificate=tls_certificate, basic_auth=("reader", "pw")) as web:
        body = https_body(f"{web.url}/d.bin", "int32")
        assert_error(post(reductionist_server, "sum", body, auth=None), 400, "401")
        assert_error(post(reductionist_server, "sum", body, auth=("reader", "bad")), 400, "401")
        values, _ = decoded(post(reductionist_server, "sum", body, auth=("reader", "pw")))
    assert values == D.sum()


def test_fail_injection(reductionist, objects):
    body = s3_body(objects["f32.bin"], "float32")
    reductionist.inject(fail_next=2, status=503)
    assert_error(post(reductionist, "sum", body), 503, "injected")
    assert_error(post(reductionist, "max", body), 503, "injected")
    assert decoded(post(reductionist, "sum", body))[0] == A.sum()
    by_op = reductionist.stats()["by_operation"]
    assert by_op == {"sum": {"503": 1, "200": 1}, "max": {"503": 1}}


def test_drop_injection_closes_the_connection(reductionist, objects):
    body = s3_body(objects["f32.bin"], "float32")
    reductionist.inject(drop_next=2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            post(reductionist, "sum", body)
    assert decoded(post(reductionist, "sum", body))[0] == A.sum()
    assert reductionist.stats()["statuses"] == {"dropped": 2, "200": 1}


def test_delay_injection(objects):
    with start_reductionist() as server:  # its own server: the delayed request finishes later
        server.inject(delay_next=1, delay=1.0)
        with pytest.raises(requests.Timeout):
            post(server, "sum", s3_body(objects["f32.bin"], "float32"), timeout=0.2)


def test_control_endpoints_over_http(reductionist, objects):
    base = reductionist.url
    resp = requests.post(f"{base}/faults", json={"fail_next": 1, "status": 502}, timeout=10)
    assert resp.json()["fail_next"] == 1
    assert_error(post(reductionist, "count", s3_body(objects["f32.bin"], "float32")), 502)
    assert requests.get(f"{base}/stats", timeout=10).json()["statuses"] == {"502": 1}
    assert requests.post(f"{base}/stats/reset", timeout=10).json()["total"] == 0
    assert requests.post(f"{base}/faults", json={"bogus": 1}, timeout=10).status_code == 400
    assert requests.get(f"{base}/faults", timeout=10).json()["fail_next"] == 0


def test_stats_count_requests_per_operation_and_status(reductionist, objects):
    body = s3_body(objects["f32.bin"], "float32")
    for op in ("sum", "sum", "max", "select"):
        decoded(post(reductionist, op, body))
    post(reductionist, "min", {"bogus": True})
    post(reductionist, "mean", body)
    stats = reductionist.stats()
    assert stats["total"] == 6
    assert stats["operations"] == {"sum": 2, "max": 1, "select": 1, "min": 1, "mean": 1}
    assert stats["statuses"] == {"200": 4, "400": 1, "404": 1}
    reductionist.reset_stats()
    assert reductionist.stats()["total"] == 0


def test_concurrent_requests(reductionist, objects):
    body = s3_body(objects["i64.bin"], "int64", shape=[6, 10], axis=[1])
    with requests.Session() as session, ThreadPoolExecutor(16) as pool:

        def send(_):
            return session.post(f"{reductionist.url}/v2/sum/", json=body, auth=CREDS, timeout=30)

        replies = list(pool.map(send, range(64)))
    for resp in replies:
        np.testing.assert_array_equal(decoded(resp)[0], B.sum(axis=1))
    assert reductionist.stats()["by_operation"] == {"sum": {"200": 64}}


def test_server_over_tls(tls_certificate, objects):
    cert = tls_certificate
    with start_reductionist(tls_cert=cert.cert, tls_key=cert.key) as server:
        assert server.url.startswith("https://")
        resp = post(server, "sum", s3_body(objects["f32.bin"], "float32"), verify=cert.cert)
        assert decoded(resp)[0] == A.sum()


def test_standalone_command(objects):
    cmd = [sys.executable, "-m", "tests.servers.reductionist", "--port", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().rsplit(":", 1)[1].strip()
        url = f"http://127.0.0.1:{port}/v2/sum"
        resp = requests.post(
            url, json=s3_body(objects["f32.bin"], "float32"), auth=CREDS, timeout=30
        )
        assert decoded(resp)[0] == A.sum()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nginx_serves_ranges_with_the_test_ca(nginx_server):
    path = nginx_server.root / f"range-{uuid.uuid4().hex[:8]}.bin"
    path.write_bytes(OBJECTS["padded.bin"])
    resp = requests.get(
        f"{nginx_server.url}/{path.name}",
        headers={"Range": "bytes=16-19"},
        verify=nginx_server.ca_file,
        timeout=10,
    )
    assert resp.status_code == 206 and resp.content == OBJECTS["padded.bin"][16:20]
