"""HTTPS: data and indexes behind nginx (self-signed certificate), and a Reductionist over TLS.

Certificates are verified by default everywhere: a server whose certificate is not trusted
fails with a message that says how to trust it (``verify=`` for the Reductionist server,
``storage_options={"ssl": ca_file}`` for HTTPS data); ``False`` skips verification only when
asked explicitly.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from activezarr import Active, build_index
from activezarr.errors import ChunkReadError, IndexBuildError, ReductionistError
from tests.cli_run import run_cli
from tests.oracle import assert_same
from tests.remote_fixtures import REMOTE_FILE, REMOTE_NCHUNKS, recording, ssl_context
from tests.servers.conftest_fixtures import require_nginx
from tests.servers.nginx import start_nginx
from tests.servers.reductionist import start_reductionist

VAR = "f8_missing_vector"


# ------------------------------------------------------------------ Reductionist over TLS
@pytest.fixture(scope="module")
def tls_reductionist(tls_certificate):
    """The test Reductionist serving HTTPS with the session's self-signed certificate."""
    handle = start_reductionist(
        tls_cert=tls_certificate.cert,
        tls_key=tls_certificate.key,
        https_verify=tls_certificate.cert,
    )
    yield handle
    handle.stop()


def test_server_certificate_is_verified_by_default(remote_data, tls_reductionist):
    assert tls_reductionist.url.startswith("https://")
    tls_reductionist.reset_stats()
    with (
        remote_data.on_server(VAR, tls_reductionist.url, fallback="local") as active,
        pytest.raises(ReductionistError, match="TLS verification") as info,
    ):
        active.mean[...]
    message = str(info.value)
    assert tls_reductionist.url in message and "server_ca=" in message
    assert "self-signed certificate" in message  # the reason from the TLS library
    assert tls_reductionist.stats()["total"] == 0  # no request was answered


def test_server_certificate_from_ca_bundle(remote_data, tls_reductionist, tls_certificate):
    tls_reductionist.reset_stats()
    with remote_data.on_server(VAR, tls_reductionist.url, verify=tls_certificate.cert) as active:
        assert_same(active.mean[...], remote_data.expected(VAR), "mean")
        assert active.stats.chunks_remote == REMOTE_NCHUNKS
    assert tls_reductionist.stats()["operations"] == {"sum": REMOTE_NCHUNKS}


def test_server_verification_off_only_when_asked(remote_data, tls_reductionist):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning: asked for
        with remote_data.on_server(VAR, tls_reductionist.url, verify=False) as active:
            assert_same(active.max[...], remote_data.expected(VAR, "max"), "max")
            assert active.stats.chunks_remote == REMOTE_NCHUNKS


# --------------------------------------------------------------------------- HTTPS data
def test_untrusted_https_source_cannot_be_indexed(remote_data, tmp_path):
    url = remote_data.location("https", "gen", REMOTE_FILE)
    with pytest.raises(IndexBuildError, match="TLS certificate verification failed") as info:
        build_index(url, out=tmp_path)
    assert url in str(info.value) and '"ssl"' in str(info.value)


def test_untrusted_https_source_cannot_be_read(remote_data):
    index = remote_data.index("https", "gen", REMOTE_FILE)
    with (
        Active(index, VAR, check_stale=False) as active,
        pytest.raises(ChunkReadError, match="TLS certificate verification failed") as info,
    ):
        active.mean[...]
    assert remote_data.location("https", "gen", REMOTE_FILE) in str(info.value)


def test_https_source_verification_off_only_when_asked(remote_data, tmp_path):
    url = remote_data.location("https", "gen", REMOTE_FILE)
    index = build_index(url, out=tmp_path, storage_options={"ssl": False})
    with Active(index, VAR, storage_options={"ssl": False}) as active:
        assert_same(active.mean[...], remote_data.expected(VAR), "mean")


def test_https_index_refs_keep_the_remote_url(remote_data):
    refs = json.loads(Path(remote_data.index("https", "gen", REMOTE_FILE)).read_text())["refs"]
    urls = {v[0] for k, v in refs.items() if k.startswith(f"{VAR}/") and isinstance(v, list)}
    assert urls == {remote_data.location("https", "gen", REMOTE_FILE)}


@pytest.fixture(scope="module")
def plain_http(remote_data, tmp_path_factory):
    """nginx over plain HTTP serving remote.nc."""
    require_nginx(tls=False)
    root = tmp_path_factory.mktemp("plain-http")
    shutil.copyfile(remote_data.local_path("gen", REMOTE_FILE), root / REMOTE_FILE)
    handle = start_nginx(root, tls=False)
    yield handle
    handle.stop()


def test_plain_http_data_goes_as_interface_http(
    remote_data, plain_http, reductionist_server, tmp_path
):
    url = f"{plain_http.url}/{REMOTE_FILE}"
    assert url.startswith("http://")
    index = build_index(url, out=tmp_path)
    with (
        Active(index, VAR, backend="reductionist", server=reductionist_server.url) as active,
        recording(active) as sent,
    ):
        assert_same(active.min[...], remote_data.expected(VAR, "min"), "min")
    assert len(sent) == REMOTE_NCHUNKS
    assert {(r.body["interface_type"], r.body["url"]) for r in sent} == {("http", url)}


# ------------------------------------------------------------------------ index on HTTPS
@pytest.fixture(scope="module")
def served_indexes(remote_data, nginx_server) -> dict[str, str]:
    """The S3- and HTTPS-sourced indexes of remote.nc, served by nginx under /indexes/."""
    folder = nginx_server.root / "indexes"
    folder.mkdir(exist_ok=True)
    urls = {}
    for origin in ("s3", "https"):
        shutil.copyfile(remote_data.index(origin, "gen", REMOTE_FILE), folder / f"{origin}.json")
        urls[origin] = f"{nginx_server.url}/indexes/{origin}.json"
    return urls


@pytest.mark.parametrize("backend", ["local", "reductionist"])
def test_index_on_https(remote_data, served_indexes, reductionist_server, backend):
    """An index fetched over HTTPS, pointing at HTTPS data (trusted through an SSLContext)."""
    options = {"storage_options": {"ssl": ssl_context(remote_data.ca_file)}}
    if backend == "reductionist":
        options.update(backend="reductionist", server=reductionist_server.url)
    with Active(served_indexes["https"], VAR, **options) as active:
        assert active.source == served_indexes["https"]
        assert_same(
            active.mean[1:, ::2],
            remote_data.expected(VAR, "mean", (slice(1, None), slice(None, None, 2))),
            "mean",
        )
        remote = active.stats.chunks_remote
    assert remote == (REMOTE_NCHUNKS if backend == "reductionist" else 0)


def test_index_on_https_with_ca_path_and_s3_data(remote_data, served_indexes):
    so = remote_data.store.storage_options(ssl=remote_data.ca_file)
    with Active(served_indexes["s3"], VAR, storage_options=so) as active:
        assert_same(active.mean[...], remote_data.expected(VAR), "mean")


def test_cli_index_and_reduce_https(remote_data, reductionist_server, tmp_path):
    """``activezarr index https://... --storage-options '{"ssl": CA}'`` then ``reduce
    --server``: the CA bundle path is plain JSON."""
    options = ["--storage-options", json.dumps({"ssl": remote_data.ca_file})]

    def cli(*args):
        return run_cli(*args, *options, check=True).stdout

    cli("index", remote_data.location("https", "gen", REMOTE_FILE), "--out", str(tmp_path))
    server = ["--server", reductionist_server.url, "--json"]
    payload = json.loads(cli("reduce", str(tmp_path / "remote.json"), VAR, "--op", "sum", *server))
    got = np.ma.masked_array(np.float64(payload["result"]))
    assert_same(got, remote_data.expected(VAR, "sum"), "sum", rtol=1e-12)
    assert payload["stats"]["chunks_remote"] == REMOTE_NCHUNKS
