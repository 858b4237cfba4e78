"""``--deadline SECONDS``: the Reductionist ``deadline=`` from the command line, checked as a
usage error, and reaching the server's requests: the project's Reductionist server behind the
real fault proxy, whose replies trickle in a byte every 0.01 s (each well under the read
timeout), is cut at the deadline given, in one line that names the server and the option.
"""

# ruff: noqa: F811  (pytest fixtures imported by name)
from __future__ import annotations

import json

import pytest

from tests.cli_run import run_cli
from tests.oracle import oracle_read, reduce_masked
from tests.test_fault_proxy import ONE, VAR, many_chunks, proxy_for  # noqa: F401

SELECT = ",".join(f"{s.start}:{s.stop}" for s in ONE)  # one chunk


def _reduce(many_chunks, server: str, *extra: str):
    _, index, so = many_chunks
    argv = ["reduce", index, VAR, "--op", "mean", "--select", SELECT, "--server", server]
    return run_cli(*argv, "--storage-options", json.dumps(so), *extra)


def test_deadline_cuts_a_trickling_reply(proxy_for, many_chunks):
    proxy = proxy_for(rates={"trickle": 1.0}, trickle=0.01)
    done = _reduce(many_chunks, proxy.url, "--deadline", "0.1")
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert f"Reductionist {proxy.url} failed" in done.stderr
    assert "not complete after 0.1 s" in done.stderr and "after 1 attempt(s)" in done.stderr
    assert done.stderr.rstrip().endswith("to wait longer add --deadline SECONDS")
    assert proxy.counts()["trickle"] == 1  # cut, not asked again
    waited = _reduce(many_chunks, proxy.url, "--deadline", "600", "--json")
    assert waited.returncode == 0, waited.stderr
    want = reduce_masked(oracle_read(many_chunks[0], VAR, ONE), "mean")
    assert json.loads(waited.stdout)["result"] == pytest.approx(float(want), rel=2e-5)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e400", "soon", ""])
def test_deadline_must_be_positive_finite_seconds(value):
    done = run_cli(
        "reduce", "x.json", "v", "--op", "mean", "--server", "http://h:1", f"--deadline={value}"
    )
    assert done.returncode == 2, done.stderr
    assert "--deadline" in done.stderr and repr(value) in done.stderr and "e.g. 600" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "command", [["reduce", "x.json", "v"], ["catalog", "reduce", "--var", "v"]]
)
def test_deadline_needs_a_server(command):
    done = run_cli(*command, "--op", "mean", "--deadline", "5")
    assert done.returncode == 2, done.stderr
    assert "--deadline 5 bounds requests to a Reductionist server" in done.stderr


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "600", True])
def test_library_deadline_is_checked(value):
    from activezarr import ActiveZarrError
    from activezarr.backends.reductionist import ReductionistBackend

    with pytest.raises(ActiveZarrError, match="deadline must be"):
        ReductionistBackend("http://127.0.0.1:1", deadline=value)
