"""TLS with a private CA: the Reductionist server (``server_ca=``, ``--server-ca``) and HTTPS data.

Certificates come from a CA made for the test (``tests/servers/tlscerts.py``): one the CA
signed for 127.0.0.1, one expired, one for another host, one from a CA nobody trusts. Each is
served by a real TLS server; the error must keep the TLS library's reason and give the fix
that fits it, also when a CA bundle was passed.
"""

from __future__ import annotations

import json

import pytest

from activezarr import Active, ActiveZarrError, build_index
from activezarr.errors import ChunkReadError, IndexBuildError, ReductionistError
from tests.cli_run import run_cli
from tests.oracle import assert_same
from tests.remote_fixtures import REMOTE_FILE, REMOTE_NCHUNKS
from tests.servers.reductionist import start_reductionist
from tests.servers.tlscerts import make_pki

VAR = "f4_zlib_shuffle"
KINDS = ("good", "expired", "wrong_host", "unknown_ca")
# kind -> (the TLS library's reason, the fix the message gives when the CA bundle is passed)
BAD = {
    "expired": ("certificate has expired", "must be renewed"),
    "wrong_host": ("IP address mismatch", "issued for another host name"),
    "unknown_ca": ("unable to get local issuer certificate", "did not sign"),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_servers(pki):
    """A TLS Reductionist test server per certificate kind (they read S3 data over http)."""
    handles = {
        kind: start_reductionist(tls_cert=getattr(pki, kind).cert, tls_key=getattr(pki, kind).key)
        for kind in KINDS
    }
    yield {kind: handle.url for kind, handle in handles.items()}
    for handle in handles.values():
        handle.stop()


# ------------------------------------------------------------------ the Reductionist server
def test_server_with_a_private_ca(remote_data, tls_servers, pki):
    with remote_data.on_server(VAR, tls_servers["good"], server_ca=pki.ca) as active:
        assert_same(active.mean[...], remote_data.expected(VAR), "mean", rtol=2e-5)
        assert active.stats.chunks_remote == REMOTE_NCHUNKS


@pytest.mark.parametrize("kind", sorted(BAD))
def test_server_certificate_failures_keep_their_reason(remote_data, tls_servers, pki, kind):
    """Also with fallback="local": a certificate that does not verify is not worked around."""
    reason, fix = BAD[kind]
    with (
        remote_data.on_server(VAR, tls_servers[kind], server_ca=pki.ca, fallback="local") as active,
        pytest.raises(ReductionistError) as info,
    ):
        active.mean[...]
    message = str(info.value)
    assert tls_servers[kind] in message and reason in message and fix in message, message
    assert "server_ca='/path" not in message  # the CA was passed: no generic hint
    if kind == "unknown_ca":
        assert pki.ca in message


def test_server_without_its_ca_gets_the_hint(remote_data, tls_servers):
    with (
        remote_data.on_server(VAR, tls_servers["good"]) as active,
        pytest.raises(ReductionistError, match="unable to get local issuer") as info,
    ):
        active.mean[...]
    assert "server_ca=" in str(info.value) and "--server-ca" in str(info.value)


def test_server_ca_that_does_not_load(remote_data, tls_servers, tmp_path):
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ActiveZarrError, match="server_ca=.*cannot load the CA bundle"):
        remote_data.on_server(VAR, tls_servers["good"], server_ca=missing)


def test_cli_server_ca(remote_data, tls_servers, pki):
    store = remote_data.store
    index = str(remote_data.index("s3", "gen", REMOTE_FILE))
    common = ["reduce", index, VAR, "--op", "max", "--endpoint-url", store.endpoint_url]
    good = run_cli(
        *common, "--server", tls_servers["good"], "--server-ca", pki.ca, "--json",
        env=store.env(),
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    payload = json.loads(good.stdout)
    assert payload["stats"]["chunks_remote"] == REMOTE_NCHUNKS
    assert payload["result"] == pytest.approx(float(remote_data.expected(VAR, "max")))
    bad = run_cli(
        *common, "--server", tls_servers["expired"], "--server-ca", pki.ca, env=store.env()
    )
    assert bad.returncode == 1
    assert "certificate has expired" in bad.stderr and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------- HTTPS data
def refs_on(remote_data, base: str) -> dict:
    """The S3 index of remote.nc with every chunk URL moved to ``base`` (an HTTPS server)."""
    refs = json.loads(remote_data.index("s3", "gen", REMOTE_FILE).read_text())
    for value in refs["refs"].values():
        if isinstance(value, list) and len(value) == 3:
            value[0] = f"{base}/gen/{REMOTE_FILE}"
    return refs


@pytest.mark.parametrize("kind", sorted(BAD))
def test_https_data_certificate_failures_keep_their_reason(remote_data, tls_servers, pki, kind):
    reason, fix = BAD[kind]
    so = {"ssl": pki.ca}
    with (
        Active(refs_on(remote_data, tls_servers[kind]), VAR, storage_options=so) as active,
        pytest.raises(ChunkReadError) as info,
    ):
        active.mean[...]
    message = str(info.value)
    assert tls_servers[kind] in message and reason in message and fix in message, message
    assert '"ssl": "/path' not in message
    url = f"{tls_servers[kind]}/gen/{REMOTE_FILE}"
    with pytest.raises(IndexBuildError, match=reason):
        build_index(url, out=remote_data.index_root / "never", storage_options=so)


def test_https_data_without_its_ca_gets_the_hint(remote_data, tls_servers):
    with (
        Active(refs_on(remote_data, tls_servers["good"]), VAR) as active,
        pytest.raises(ChunkReadError, match="unable to get local issuer") as info,
    ):
        active.mean[...]
    assert '{"ssl": "/path/to/ca.pem"}' in str(info.value)
