"""Shared pieces of the remote tests (``tests/test_remote_*.py``): the test files on S3 and HTTPS,
their indexes, the Reductionist the tests talk to, and the conformance base class.

Sources: every generated file (``tests/generate.py``), ``remote.nc`` (written here: one variable
per rule deciding whether a chunk goes to the server or stays local) and the HDF5 files of
``../shared/data/real``, uploaded to an S3 bucket (moto, or a real store) under ``gen/`` and
``real/``, and copied into the nginx root under the same names.

Reductionist: the tests' own server (``tests/servers/reductionist.py``) unless
``REDUCTIONIST_URL`` is set; then the conformance tests run against that server and an S3 store
named by ``S3_ENDPOINT_URL``, ``S3_ACCESS_KEY`` and ``S3_SECRET_KEY`` (optional:
``REDUCTIONIST_CA_FILE`` to verify the server's certificate, ``S3_BUCKET`` to use an existing
bucket instead of creating a fresh one). Tests that need the local server's statistics or fault
injection keep using the local server.

Import the fixtures into a test module with the guarded block that the modules use (the lead's
``tests/conftest.py`` may provide the server fixtures already).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import netCDF4
import numpy as np
import pytest

from tests.generate import GENERATED_CASES, put_raw, rng_for, sprinkle
from tests.oracle import (
    OPS,
    RTOL_SERVER_SCALED,
    assert_same,
    nc_variable,
    oracle_atol,
    oracle_info,
    oracle_read,
    reduce_masked,
)
from tests.servers.reductionist import Handler as _ReductionistHandler
from tests.servers.s3 import REGION, make_bucket, s3_client

# The test Reductionist writes headers and body in two sends; with Nagle's algorithm on, the
# body waits for the client's delayed ACK (~40 ms a request on loopback). Socket option only:
# what the server answers is unchanged. (Reported to the server's author; harmless once fixed.)
_ReductionistHandler.disable_nagle_algorithm = True

REAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/real"
REAL_REDUCTIONIST = os.environ.get("REDUCTIONIST_URL") or None
REMOTE_FILE = "remote.nc"

# The server sums float32 data in float32 (reference spec, section 4), then the client adds the
# per-chunk partials in float64: sums and means agree with netCDF4's float64 sums to float32
# precision, relative to the sum of absolute values.
FLOAT32_SERVER_RTOL = 2e-5

# Operation the client must ask the server for, per activezarr operation.
SERVER_OP = {"mean": "sum", "sum": "sum", "min": "min", "max": "max", "count": "count"}


# ----------------------------------------------------------------------------- remote.nc
REMOTE_SHAPE = (6, 8, 10)
REMOTE_CHUNKS = (3, 4, 5)
REMOTE_NCHUNKS = 8
R, L = "remote", "local"
ALL_REMOTE = dict.fromkeys(OPS, R)
ALL_LOCAL = dict.fromkeys(OPS, L)
INT32_SUMS_LOCAL = {"mean": L, "sum": L, "min": R, "max": R, "count": R}
INT64_MEANS_LOCAL = {**ALL_REMOTE, "mean": L}
INT64_SUMS_LOCAL = {**ALL_REMOTE, "mean": L, "sum": L}  # packed: netCDF4 adds unpacked floats

# variable -> where its chunks must be reduced, per operation, and why
REMOTE_ROUTES: dict[str, dict[str, str]] = {
    "f4_zlib_shuffle": ALL_REMOTE,  # zlib + shuffle: mapped to compression + filters
    "f8_big_endian": ALL_REMOTE,  # byte_order "big"
    "f4_fill_zero": ALL_REMOTE,  # _FillValue 0 must be sent (a known defect elsewhere)
    "i8_valid_min_zero": INT64_MEANS_LOCAL,  # valid_min 0 must be sent; int64 means are float64
    "f8_missing_vector": ALL_REMOTE,  # several equality values: missing_values
    "i8_scaled": INT64_SUMS_LOCAL,  # unpacked on the client; int64 sums wrap on the server
    "i4_plain": INT32_SUMS_LOCAL,  # the server would sum in int32 and overflow
    "u4_unsigned": INT32_SUMS_LOCAL,  # _Unsigned int32: viewed as uint32
    "i2_plain": ALL_LOCAL,  # int16 is not one of the server's dtypes
    "f4_fletcher32": ALL_LOCAL,  # fletcher32 is not one of the server's codecs
    "f4_fill_and_range": ALL_LOCAL,  # equality and range rules both apply: one field can't say it
}


def write_remote_file(path: Path) -> Path:
    """Write ``remote.nc``: one variable per rule in ``REMOTE_ROUTES`` (deterministic values)."""
    dims = ("t", "y", "x")
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(dims, REMOTE_SHAPE, strict=True):
            ds.createDimension(dim, n)

        def var(name, dtype, fill=None, **kwargs):
            attrs = kwargs.pop("attrs", {})
            kwargs.setdefault("chunksizes", REMOTE_CHUNKS)
            v = ds.createVariable(name, dtype, dims, fill_value=fill, **kwargs)
            for key, value in attrs.items():
                v.setncattr(key, value)
            return v, rng_for(name)

        def normal(rng, mean, std, dtype="f4"):
            return rng.normal(mean, std, REMOTE_SHAPE).astype(dtype)

        v, rng = var("f4_zlib_shuffle", "f4", np.float32(1e20), zlib=True, shuffle=True)
        put_raw(v, sprinkle(normal(rng, 280, 20), np.float32(1e20), rng))
        v, rng = var("f8_big_endian", np.dtype(">f8"), -999.0, zlib=True, endian="big")
        put_raw(v, sprinkle(normal(rng, 0, 1e3, "f8"), -999.0, rng))
        v, rng = var("f4_fill_zero", "f4", np.float32(0), zlib=True)
        put_raw(v, sprinkle(normal(rng, 0, 1), 0, rng, 0.2))
        v, rng = var("i8_valid_min_zero", "i8", attrs={"valid_min": np.int64(0)})
        put_raw(v, rng.integers(-20, 100, REMOTE_SHAPE, dtype="i8"))
        vector = np.array([-99.0, -98.0, 1e20])
        v, rng = var("f8_missing_vector", "f8", attrs={"missing_value": vector}, zlib=True)
        data = normal(rng, 0, 10, "f8")
        for value in vector:
            sprinkle(data, value, rng, 0.05)
        put_raw(v, data)
        scale = {"scale_factor": np.float64(0.5), "add_offset": np.float64(10.0)}
        v, rng = var("i8_scaled", "i8", np.int64(-1), attrs=scale)
        put_raw(v, sprinkle(rng.integers(-(10**12), 10**12, REMOTE_SHAPE, dtype="i8"), -1, rng))
        v, rng = var("i4_plain", "i4", np.int32(-999), zlib=True, shuffle=True)
        big = rng.integers(-2_000_000_000, 2_000_000_000, REMOTE_SHAPE, dtype="i4")
        put_raw(v, sprinkle(big, -999, rng))  # sums overflow int32
        v, rng = var("u4_unsigned", "i4", np.int32(-1), attrs={"_Unsigned": "true"})
        put_raw(v, sprinkle(rng.integers(-(2**31), 2**31 - 1, REMOTE_SHAPE, dtype="i4"), -1, rng))
        v, rng = var("i2_plain", "i2", np.int16(-5), zlib=True)
        put_raw(v, sprinkle(rng.integers(-1000, 1000, REMOTE_SHAPE, dtype="i2"), -5, rng))
        v, rng = var("f4_fletcher32", "f4", np.float32(-1), fletcher32=True)
        put_raw(v, sprinkle(normal(rng, 5, 2), -1, rng))
        limits = {"valid_range": np.array([-1000, 1000], "f4")}
        v, rng = var("f4_fill_and_range", "f4", np.float32(-999), attrs=limits)
        data = normal(rng, 0, 600)
        put_raw(v, sprinkle(data, -999, rng))
    return path


REMOTE_CASES = [(REMOTE_FILE, name) for name in REMOTE_ROUTES]

# The generated variables whose data path differs between sources and backends: every dtype,
# codec, byte order and CF rule the request builder maps or refuses, unwritten chunks, scalars.
# (Every generated variable is checked against the oracle locally in test_oracle_generated.py;
# a request to moto costs milliseconds, so the remote matrix keeps to these.)
SOURCE_CASES = [
    *[("dtypes.nc", v) for v in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")],
    *[
        ("layouts.nc", v)
        for v in (
            "contig",
            "zlib9_shuffle",
            "zlib_shuffle_fletcher",
            "be_contig",
            "be_zlib_shuffle",
        )
    ],
    ("dims.nc", "d1"),
    ("dims.nc", "d4"),
    ("unwritten.nc", "partial_zlib"),
    ("unwritten.nc", "never_written"),
    *[
        ("cf.nc", v)
        for v in ("missing_vector", "missing_and_fill", "valid_range_fill", "all_missing")
    ],
    *[("cf.nc", v) for v in ("fill_zero_i4", "fill_nan", "nan_unmasked")],
    ("packed.nc", "packed_f32"),
    ("packed.nc", "packed_u1"),
    ("unsigned.nc", "u_i2_vmax"),
    ("scalar.nc", "scalar_f8"),
    ("scalar.nc", "scalar_i4_masked"),
]
assert set(SOURCE_CASES) <= set(GENERATED_CASES), set(SOURCE_CASES) - set(GENERATED_CASES)

# S3 changes only how bytes are fetched (s3fs locally, interface_type "s3" and a path-style URL
# on the server), the same for every variable; moto costs several milliseconds a request, so
# the S3 classes run the dtypes, one variable per codec/CF family, and every routing case.
S3_CASES = [
    *[("dtypes.nc", v) for v in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")],
    ("layouts.nc", "be_zlib_shuffle"),
    ("unwritten.nc", "partial_zlib"),
    ("cf.nc", "missing_and_fill"),
    ("packed.nc", "packed_f32"),
    ("scalar.nc", "scalar_i4_masked"),
    # the CF corners (issue 9) wherever the server takes part: NaN extremes, wrapping int64
    # sums, packed float32, refused attributes, no-fill, _Unsigned spelling, short records,
    # virtual chunks of contiguous data
    ("corners_nan.nc", "nan_late_chunk"),
    ("corners_nan.nc", "nan_rows"),
    ("corners_int64.nc", "i8_near_2_62"),
    ("corners_packed.nc", "p32_single"),
    ("corners_safecast.nc", "mv_string"),
    ("corners_safecast.nc", "vmin_f8_on_f4"),
    ("corners_nofill.nc", "nofill_f4"),
    ("corners_unsigned.nc", "unsigned_upper"),
    ("corners_records.nc", "rec_short_fill"),
    ("corners_contiguous.nc", "contig_big"),
    # the classes of the second hunt: integer packing that wraps (local), fill + missing vector
    # + valid_range on packed ints, big-endian _Unsigned, blosc (local), a variable in a group
    ("corners_cf2.nc", "scale_u1_wraps"),
    ("corners_cf2.nc", "i2_fill_mv_vr_packed"),
    ("corners_cf2.nc", "unsigned_fill_vr_i1"),
    ("corners_be_unsigned.nc", "be_unsigned_i2"),
    ("corners_filters.nc", "blosc_lz4_f4"),
    ("corners_structure.nc", "grp/sub/deep"),
]


def real_cases() -> list[tuple[str, str]]:
    """(file, variable) of every numeric variable of the HDF5 files in ../shared/data/real."""
    if not REAL_DIR.is_dir():
        return []
    cases = []
    for path in sorted(REAL_DIR.glob("*.nc")):
        with open(path, "rb") as fh:
            if not fh.read(8).startswith(b"\x89HDF"):
                continue  # netCDF3 (emac.nc): refused by the indexer, tested elsewhere
        with netCDF4.Dataset(path) as ds:
            cases += [
                (path.name, name)
                for name, v in ds.variables.items()
                if np.dtype(v.dtype).kind in "iuf"
            ]
    return cases


REAL_CASES = real_cases()


# --------------------------------------------------------------------------- S3 and HTTPS
@dataclass
class S3Store:
    """An S3 bucket (moto's, or a real store's) holding the test files."""

    endpoint_url: str
    bucket: str
    key: str
    secret: str
    real: bool = False
    prefix: str = ""  # inside a bucket shared with others (S3_BUCKET), a private folder

    def storage_options(self, **extra: Any) -> dict:
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
            **extra,
        }

    def env(self) -> dict[str, str]:
        """The AWS environment variables that give a command line its credentials."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret}

    def client(self):
        return s3_client(self.endpoint_url, self.key, self.secret)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def http_url(self, key: str) -> str:
        """The path-style URL Reductionist requests must name."""
        return f"{self.endpoint_url}/{self.bucket}/{self.prefix}{key}"

    def upload(self, key: str, path: Path) -> str:
        self.client().upload_file(str(path), self.bucket, self.prefix + key)
        return self.url(key)

    def empty(self) -> None:
        """Delete this session's objects."""
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                client.delete_object(Bucket=self.bucket, Key=item["Key"])


@dataclass
class ServerTarget:
    """The Reductionist the conformance tests use; ``stats`` is None for a real server."""

    url: str
    stats: Callable[[], dict] | None
    verify: bool | str = True
    real: bool = False

    def operations(self) -> dict[str, int] | None:
        """Requests answered so far, per operation (None when the server cannot tell)."""
        return None if self.stats is None else dict(self.stats()["operations"])


@dataclass
class RemoteData:
    """The test files in each place, their indexes (built on first use) and storage options."""

    local_dirs: dict[str, Path]  # folder ("gen" or "real") -> directory of the originals
    store: S3Store
    https_url: str | None  # None: nginx or openssl is not installed here
    ca_file: str | None
    index_root: Path
    https_missing: str | None = None  # why there is no HTTPS copy
    _indexes: dict[tuple[str, str, str], Path] = field(default_factory=dict)
    _failed: dict[tuple[str, str, str], BaseException] = field(default_factory=dict)

    def local_path(self, folder: str, name: str) -> Path:
        return self.local_dirs[folder] / name

    def location(self, origin: str, folder: str, name: str) -> str:
        if origin == "https" and self.https_url is None:
            pytest.skip(self.https_missing or "no HTTPS server")
        if origin == "local":
            return str(self.local_path(folder, name))
        if origin == "s3":
            return self.store.url(f"{folder}/{name}")
        return f"{self.https_url}/{folder}/{name}"

    def storage_options(self, origin: str) -> dict | None:
        if origin == "s3":
            return self.store.storage_options()
        if origin == "https":
            return {"ssl": self.ca_file}
        return None

    def index(self, origin: str, folder: str, name: str) -> Path:
        """The index of ``folder/name`` built from ``origin`` (local, s3 or https)."""
        from activezarr import build_index

        key = (origin, folder, name)
        self.location(origin, folder, name)  # skips when the origin is not served here
        if key in self._failed:
            raise self._failed[key]
        if key not in self._indexes:
            try:
                self._indexes[key] = build_index(
                    self.location(origin, folder, name),
                    out=self.index_root / origin / folder,
                    storage_options=self.storage_options(origin),
                )
            except BaseException as exc:
                self._failed[key] = exc
                raise
        return self._indexes[key]

    def on_server(self, var: str, server: str, origin: str = "s3", **options):
        """``Active`` over ``var`` of remote.nc's index built from ``origin``, reduced by the
        Reductionist at ``server`` (storage options: ``origin``'s unless given)."""
        from activezarr import Active

        options.setdefault("storage_options", self.storage_options(origin))
        index = self.index(origin, "gen", REMOTE_FILE)
        return Active(index, var, backend="reductionist", server=server, **options)

    def expected(self, var: str, op: str = "mean", selection=Ellipsis, axis=None):
        """The oracle's ``op`` over ``selection`` of ``var`` of remote.nc."""
        data = oracle_read(self.local_path("gen", REMOTE_FILE), var, selection)
        return reduce_masked(data, op, axis)


def folder_of(filename: str) -> str:
    return "real" if (REAL_DIR / filename).exists() and filename != REMOTE_FILE else "gen"


# One instance per process of each fixture below, whichever module asked first: test modules
# import these fixtures by name, which makes one fixture definition per module, and the files
# they upload and serve must not be rewritten under indexes other modules already built.
_PROCESS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def s3_store(request) -> Iterator[S3Store]:
    """The bucket for test files: a fresh bucket in moto, or in S3_ENDPOINT_URL's store when
    REDUCTIONIST_URL is set (removed afterwards unless S3_BUCKET named an existing one)."""
    if "s3_store" in _PROCESS:
        yield _PROCESS["s3_store"]
        return
    if REAL_REDUCTIONIST:
        missing = [
            k for k in ("S3_ENDPOINT_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY") if k not in os.environ
        ]
        if missing:
            pytest.fail(f"REDUCTIONIST_URL is set but {', '.join(missing)} not")
        given = os.environ.get("S3_BUCKET")
        session = f"activezarr-test-{uuid.uuid4().hex[:12]}"
        store = S3Store(
            os.environ["S3_ENDPOINT_URL"].rstrip("/"),
            given or session,
            os.environ["S3_ACCESS_KEY"],
            os.environ["S3_SECRET_KEY"],
            real=True,
            prefix=f"{session}/" if given else "",
        )
        if not given:
            store.client().create_bucket(Bucket=store.bucket)
        _PROCESS["s3_store"] = store
        yield store
        store.empty()
        if not given:
            store.client().delete_bucket(Bucket=store.bucket)
        return
    moto = request.getfixturevalue("moto_server")
    bucket = f"data-{uuid.uuid4().hex[:12]}"
    make_bucket(moto, bucket)
    _PROCESS["s3_store"] = S3Store(moto.endpoint_url, bucket, moto.access_key, moto.secret_key)
    yield _PROCESS["s3_store"]


@pytest.fixture(scope="session")
def reductionist_target(request) -> ServerTarget:
    """The tests' Reductionist server, or the real one named by REDUCTIONIST_URL."""
    if "reductionist_target" not in _PROCESS:
        if REAL_REDUCTIONIST:
            ca = os.environ.get("REDUCTIONIST_CA_FILE")
            target = ServerTarget(REAL_REDUCTIONIST.rstrip("/"), None, ca or True, real=True)
        else:
            handle = request.getfixturevalue("reductionist_server")
            target = ServerTarget(handle.url, handle.stats)
        _PROCESS["reductionist_target"] = target
    return _PROCESS["reductionist_target"]


@pytest.fixture(scope="session")
def remote_data(request, generated_dir, s3_store, tmp_path_factory) -> RemoteData:
    """Every test file uploaded to S3 and served by nginx; indexes built on demand.

    Without nginx or openssl (a machine with only Python) there is no HTTPS copy: the tests
    that ask for one skip, naming the package; local and S3 tests run as usual.
    """
    if "remote_data" in _PROCESS:
        return _PROCESS["remote_data"]
    from tests.servers.nginx import missing_tools

    https_missing = missing_tools()
    nginx_server = None if https_missing else request.getfixturevalue("nginx_server")
    write_remote_file(generated_dir / REMOTE_FILE)
    local_dirs = {"gen": generated_dir, "real": REAL_DIR}
    for folder, directory in local_dirs.items():
        if not directory.is_dir():
            continue
        served = nginx_server.root / folder if nginx_server else None
        if served:
            served.mkdir(exist_ok=True)
        for path in sorted(directory.glob("*.nc")):
            s3_store.upload(f"{folder}/{path.name}", path)
            if served:
                shutil.copyfile(path, served / path.name)
    _PROCESS["remote_data"] = RemoteData(
        local_dirs,
        s3_store,
        nginx_server.url if nginx_server else None,
        nginx_server.ca_file if nginx_server else None,
        tmp_path_factory.mktemp("remote_indexes"),
        https_missing,
    )
    return _PROCESS["remote_data"]


# ------------------------------------------------------------------------------ helpers
@dataclass
class Recorded:
    """One request the Reductionist backend sent and the status it got."""

    url: str
    headers: dict
    body: dict
    status: int


@contextlib.contextmanager
def recording(active) -> Iterator[list[Recorded]]:
    """Record every request ``active``'s Reductionist session sends (a response hook on the
    real session: the traffic is real, only observed)."""
    import json

    seen: list[Recorded] = []

    def hook(resp, *args, **kwargs):
        req = resp.request
        seen.append(Recorded(req.url, dict(req.headers), json.loads(req.body), resp.status_code))

    hooks = active.backend.session.hooks["response"]
    hooks.append(hook)
    try:
        yield seen
    finally:
        hooks.remove(hook)


def basic_auth(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


NO_HOST = "no-such-host.invalid"  # a reserved name no resolver knows


def resolver_says_no_such_host() -> bool:
    """Whether this machine's resolver answers "no such host" for ``NO_HOST`` (a machine
    without DNS says "temporary failure" instead, which a retry may cure)."""
    try:
        socket.getaddrinfo(NO_HOST, 80)
    except socket.gaierror as exc:
        return exc.errno == socket.EAI_NONAME
    return False


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def selections_for(shape: tuple[int, ...]) -> list[tuple[Any, Any]]:
    """(selection, axis) pairs: everything; strided with an integer index; partial axes."""
    if not shape:
        return [(Ellipsis, None)]
    if len(shape) == 1:
        return [(Ellipsis, None), ((slice(1, None, 2),), None), ((-1,), None)]
    cases = [(Ellipsis, None), ((-1, slice(None, None, 2)), None)]
    if len(shape) == 2:
        cases.append(((slice(1, None), slice(None, -1)), 0))
    else:
        cases.append(((slice(1, -1), slice(None, None, 2), slice(2, None)), (0, 2)))
    return cases


def tolerance_for(
    op: str, data: np.ma.MaskedArray, axis, backend: str, storage: np.dtype, scaled=False
) -> dict[str, Any]:
    """``assert_same`` tolerances; float32 sums from the server get float32 precision, and
    server sums of packed integers are unpacked as a whole (``RTOL_SERVER_SCALED``)."""
    atol = oracle_atol(data, op, axis)
    if backend == "reductionist" and op in ("sum", "mean") and scaled:
        return {"rtol": RTOL_SERVER_SCALED, "atol": np.asarray(atol) * (RTOL_SERVER_SCALED / 1e-12)}
    if backend == "reductionist" and op in ("sum", "mean") and storage == np.dtype("f4"):
        return {
            "rtol": FLOAT32_SERVER_RTOL,
            "atol": np.asarray(atol) * (FLOAT32_SERVER_RTOL / 1e-12),
        }
    return {"atol": atol}


def storage_dtype_of(path: Path, var: str) -> np.dtype:
    with netCDF4.Dataset(path) as ds:
        return np.dtype(nc_variable(ds, var).dtype).newbyteorder("=")


# ------------------------------------------------------------------------ conformance
class ReductionConformance:
    """Every reduction of every test variable matches the netCDF4 oracle on the same file.

    Subclasses name where the files are read from (``origin``: local, s3, https) and where
    chunks are reduced (``backend``: local or reductionist). With the Reductionist backend each
    reduction also checks, through the server's statistics, that the server answered exactly
    the requests the client counted, all for the operation it had to ask for (``mean`` as
    ``sum``), and through ``active.stats`` that chunks were reduced remotely.
    """

    origin: ClassVar[str] = "local"
    backend: ClassVar[str] = "local"
    generated_cases: ClassVar[list[tuple[str, str]]] = SOURCE_CASES + REMOTE_CASES

    def pytest_generate_tests(self, metafunc) -> None:
        if metafunc.function.__name__ == "test_generated_file":
            metafunc.parametrize(("filename", "var"), self.generated_cases)

    @pytest.fixture(scope="class")
    @classmethod
    def actives(cls, remote_data, reductionist_target) -> Iterator[Callable]:
        opened: dict[tuple[str, str], Any] = {}

        def get(filename: str, var: str):
            from activezarr import Active

            key = (filename, var)
            if key not in opened:
                index = remote_data.index(cls.origin, folder_of(filename), filename)
                options: dict[str, Any] = {}
                if cls.backend == "reductionist":
                    options = {
                        "backend": "reductionist",
                        "server": reductionist_target.url,
                        "verify": reductionist_target.verify,
                    }
                opened[key] = Active(
                    index, var, storage_options=remote_data.storage_options(cls.origin), **options
                )
            return opened[key]

        yield get
        for active in opened.values():
            active.close()

    def check_variable(self, actives, remote_data, reductionist_target, filename, var):
        path = remote_data.local_path(folder_of(filename), filename)
        info = oracle_info(path, var)
        scaled = info["dtype"] if info["scaled"] else False
        storage = storage_dtype_of(path, var)
        active = actives(filename, var)
        failures = []
        remote_chunks = 0
        for selection, axis in selections_for(info["shape"]):
            data = oracle_read(path, var, selection)
            for op in OPS:
                if self.skip(reductionist_target, filename, var, op):
                    continue
                where = f"{self.origin}/{self.backend} {filename}:{var}[{selection}] axis={axis}"
                before = reductionist_target.operations() if self.backend != "local" else None
                try:
                    result = getattr(active, op)(axis=axis)[selection]
                    expected = reduce_masked(data, op, axis)
                    tol = tolerance_for(op, data, axis, self.backend, storage, scaled)
                    assert_same(result, expected, op, scaled=scaled, where=where, **tol)
                    remote_chunks += self.check_stats(active, op, before, reductionist_target)
                except AssertionError as exc:
                    failures.append(f"{where} {op}: {exc}")
        assert not failures, "\n".join(failures[:10])
        return remote_chunks

    def skip(self, target: ServerTarget, filename: str, var: str, op: str) -> bool:
        # the real server's min/max comparator panics on NaN data (reference spec, section 4)
        return target.real and var == "nan_unmasked" and op in ("min", "max")

    def check_stats(self, active, op: str, before, target: ServerTarget) -> int:
        stats = active.stats
        if self.backend == "local":
            assert stats.chunks_remote == 0 and stats.requests == 0, stats
            return 0
        assert stats.retries == 0 and not stats.fallbacks, stats
        assert stats.requests == stats.chunks_remote, stats
        if stats.chunks_remote:
            assert stats.bytes_requested > 0 and stats.bytes_received > 0, stats
        after = target.operations()
        if before is not None and after is not None:
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
            delta = {k: v for k, v in delta.items() if v}
            expected = {SERVER_OP[op]: stats.requests} if stats.requests else {}
            assert delta == expected, f"server answered {delta}, client sent {expected}"
        return stats.chunks_remote

    def test_generated_file(self, actives, remote_data, reductionist_target, filename, var):
        self.check_variable(actives, remote_data, reductionist_target, filename, var)

    @pytest.mark.skipif(not REAL_CASES, reason=f"{REAL_DIR} is missing")
    @pytest.mark.parametrize(("filename", "var"), REAL_CASES)
    def test_real_file(self, actives, remote_data, reductionist_target, filename, var):
        self.check_variable(actives, remote_data, reductionist_target, filename, var)
