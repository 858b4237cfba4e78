"""Endpoints no retry can cure: a malformed S3 endpoint and a host name that does not exist
fail at once, in one message that says what is wrong; "after N attempts" appears only when N
attempts were made (a refused connection, which a restarting server can cure, is retried).

The places are real: a port nothing listens on, the resolver's own answer for a reserved
``.invalid`` name, the moto S3 server and the project's Reductionist server.
"""

from __future__ import annotations

import pytest

from activezarr import Active, ActiveZarrError, build_index
from activezarr.errors import ReductionistError
from tests.cli_run import run_cli
from tests.remote_fixtures import NO_HOST, REMOTE_FILE, free_port, resolver_says_no_such_host

VAR = "f4_zlib_shuffle"
ONE_CHUNK = (slice(0, 3), slice(0, 4), slice(0, 5))


def s3_options(endpoint: str) -> dict:
    return {"anon": True, "client_kwargs": {"endpoint_url": endpoint}}


@pytest.mark.parametrize("endpoint", ["not a url", "htp://host", "http://[::1", "http://h:0"])
def test_malformed_endpoint_is_refused_before_any_request(endpoint):
    with pytest.raises(ActiveZarrError, match="endpoint_url") as info:
        build_index("s3://bucket/x.nc", storage_options=s3_options(endpoint))
    assert repr(endpoint) in str(info.value) and "attempts" not in str(info.value)


@pytest.mark.parametrize("endpoint", ["not a url", "ftp://host:21", "http://h:99999", ""])
def test_malformed_endpoint_option_is_a_usage_error(endpoint):
    proc = run_cli("index", "s3://bucket/x.nc", "--anon", "--endpoint-url", endpoint)
    assert proc.returncode == 2, proc.stderr
    assert "--endpoint-url" in proc.stderr and "http(s)://HOST[:PORT]" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_malformed_endpoint_in_storage_options_names_it():
    proc = run_cli(
        "reduce",
        "s3://bucket/x.json",
        "v",
        "--op",
        "mean",
        "--storage-options",
        '{"anon": true, "client_kwargs": {"endpoint_url": "htp://host"}}',
    )
    assert proc.returncode == 1, proc.stderr
    assert "\"endpoint_url\": 'htp://host' in --storage-options" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_unknown_endpoint_host_is_not_retried(monkeypatch):
    monkeypatch.setenv("ACTIVEZARR_READ_RETRIES", "2")
    with pytest.raises(ActiveZarrError, match=f"cannot resolve the host name '{NO_HOST}'") as info:
        build_index("s3://bucket/x.nc", storage_options=s3_options(f"http://{NO_HOST}:9000"))
    if resolver_says_no_such_host():
        assert "attempts" not in str(info.value)
    else:  # "temporary failure in name resolution" may pass: retried, and said so
        assert "after 3 attempts" in str(info.value)


def test_refused_endpoint_is_retried_and_says_how_often(monkeypatch):
    monkeypatch.setenv("ACTIVEZARR_READ_RETRIES", "2")
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ActiveZarrError) as info:
        build_index("s3://bucket/x.nc", storage_options=s3_options(endpoint))
    assert "s3://bucket/x.nc: after 3 attempts, cannot connect to the server" in str(info.value)


def test_reductionist_host_unknown(remote_data):
    """urllib3 says "Max retries exceeded" after a single try: the message says what the
    resolver said instead, and a host that does not exist is asked once."""
    server = f"http://{NO_HOST}:8080"
    with (
        Active(
            remote_data.index("s3", "gen", REMOTE_FILE),
            VAR,
            backend="reductionist",
            server=server,
            storage_options=remote_data.storage_options("s3"),
            retries=3,
            backoff=0.0,
        ) as active,
        pytest.raises(ReductionistError, match=f"cannot resolve the host name '{NO_HOST}'") as info,
    ):
        active.mean[ONE_CHUNK]
    assert server in str(info.value) and "Max retries" not in str(info.value)
    if resolver_says_no_such_host():
        assert "after 1 attempt(s)" in str(info.value)
