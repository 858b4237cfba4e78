"""``activezarr index --scheduler``: an address where no usable dask scheduler answers fails in
one line that names the address and the fix, within the connect timeout (5 s), never dask's
default 30 s or a hang.

The places are real sockets on 127.0.0.1: a closed port (refused), a port that accepts and
never answers, and a port where something other than dask answers.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from activezarr.cli.index import SCHEDULER_TIMEOUT_S
from tests.cli_run import run_cli
from tests.generate import write_variable

pytest.importorskip("distributed")

FIX = "leave --scheduler out to index in local processes"


@pytest.fixture
def netcdf(tmp_path):
    return write_variable(tmp_path / "a.nc", np.arange(12.0).reshape(4, 3), chunks=(2, 3))


def _index_on(address: str, netcdf, tmp_path):
    """``index --scheduler ADDRESS``: the run, and how long it took."""
    start = time.monotonic()
    proc = run_cli("index", netcdf, "--out", tmp_path / "out", "--scheduler", address)
    return proc, time.monotonic() - start


def _failed_in_one_line(proc, *parts: str, status: int = 1) -> None:
    assert proc.returncode == status, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_scheduler_fails_within_the_connect_timeout(closed_port, netcdf, tmp_path):
    address = f"tcp://127.0.0.1:{closed_port}"
    proc, took = _index_on(address, netcdf, tmp_path)
    _failed_in_one_line(proc, address, f"within {SCHEDULER_TIMEOUT_S} s", FIX)
    # the reason of distributed's last attempt: refused, or cut by the timeout under load
    assert "Connection refused" in proc.stderr or "no connection" in proc.stderr
    # The point of the fix is the wait: dask's default connect timeout made this 30 s and more.
    # 28 s leaves the 5 s timeout plus a slow interpreter start on a loaded machine a margin.
    assert took < 28, took
    assert not (tmp_path / "out").exists()


def test_silent_port_is_not_a_hang(netcdf, tmp_path):
    """The kernel completes the TCP connection (backlog) and nothing ever answers dask's
    handshake: distributed's ``connect`` does not bound that read."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        proc, _ = _index_on(address, netcdf, tmp_path)
    _failed_in_one_line(proc, address, "gave no dask handshake", FIX)


def test_something_else_on_the_port(netcdf, tmp_path):
    """A web server's reply is not dask's: dask would read its first bytes as a frame length
    (an exabyte allocation, a MemoryError) and the run ended in the catch-all 'a bug'."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)

        def answer() -> None:
            conn, _ = s.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        server = threading.Thread(target=answer, daemon=True)
        server.start()
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        proc, _ = _index_on(address, netcdf, tmp_path)
        server.join()
    _failed_in_one_line(proc, address, FIX)
    assert "a bug" not in proc.stderr


@pytest.mark.parametrize(
    ("address", "status", "says"),
    [
        ("foo://host:8786", 2, "unknown address scheme 'foo'"),
        ("127.0.0.1", 2, "missing port number"),
        ("tls://127.0.0.1:9", 1, "distributed.comm.tls.ca-file"),
    ],
)
def test_address_that_cannot_work(address, status, says, netcdf, tmp_path):
    proc, _ = _index_on(address, netcdf, tmp_path)
    _failed_in_one_line(proc, address, says, status=status)
