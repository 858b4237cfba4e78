"""Session-scoped pytest fixtures starting the real test servers: moto S3, Reductionist, nginx.

Use from ``tests/conftest.py`` with ``from tests.servers.conftest_fixtures import *``.
The Reductionist server trusts the session's test certificate, which nginx serves, so
``https://`` requests through Reductionist to nginx verify properly. Use the function-scoped
``reductionist`` fixture when a test reads statistics or injects faults: it starts from clean ones.
"""

from __future__ import annotations

import pytest

from tests.servers.nginx import make_certificate, missing_openssl, missing_tools, start_nginx
from tests.servers.reductionist import start_reductionist
from tests.servers.s3 import start_moto

__all__ = [
    "moto_auth_server",
    "moto_server",
    "nginx_server",
    "reductionist",
    "reductionist_server",
    "require_nginx",
    "tls_certificate",
]


def require_nginx(tls: bool = True) -> None:
    """Skip the calling test when nginx (and openssl, for TLS) is not installed: CI installs
    both (``.ci/run``); a machine with only Python runs everything else."""
    reason = missing_tools(tls)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def moto_server():
    """In-process moto S3 accepting any credentials (handle.access_key/secret_key = "testing")."""
    handle = start_moto()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def moto_auth_server():
    """moto S3 in a child process that rejects wrong credentials (valid pair on the handle)."""
    handle = start_moto(auth=True)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory):
    """Self-signed certificate for 127.0.0.1/localhost; ``.cert`` is also the CA bundle."""
    reason = missing_openssl()
    if reason:
        pytest.skip(reason)
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def reductionist_server(request):
    """The Reductionist test server (plain HTTP), trusting tls_certificate for https sources
    (without openssl there is no certificate, and no https source to trust)."""
    cert = None if missing_openssl() else request.getfixturevalue("tls_certificate").cert
    handle = start_reductionist(https_verify=cert)
    yield handle
    handle.stop()


@pytest.fixture
def reductionist(reductionist_server):
    """reductionist_server with statistics reset, no pending faults and the client's circuit
    breaker for it closed, before and after (a test that trips it must not move chunks of the
    next test to local)."""
    from activezarr.backends.breaker import forget_breaker

    reductionist_server.reset_stats()
    reductionist_server.clear_faults()
    forget_breaker(reductionist_server.url)
    yield reductionist_server
    reductionist_server.clear_faults()
    forget_breaker(reductionist_server.url)


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory, tls_certificate):
    """nginx over HTTPS serving an empty temp dir: copy files into ``nginx_server.root``."""
    require_nginx()
    handle = start_nginx(tmp_path_factory.mktemp("nginx-root"), certificate=tls_certificate)
    yield handle
    handle.stop()
