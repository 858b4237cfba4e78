"""Reductionist over a slow network: chunks per second through a proxy that adds latency.

    python -m benchmarks.remote [--latency 0.02] [--reps 3] [--tools activezarr pyactivestorage]

Starts, each in its own process: moto (S3), the project's Reductionist test server
(``tests/servers/reductionist.py``) and the fault proxy (``tests/servers/faultproxy.py``) in
front of it, delaying every request by ``--latency`` seconds (real TCP on 127.0.0.1). A
float32 zlib+shuffle file of 2,000 chunks goes to a moto bucket; each tool reduces its mean
through the proxy: activezarr (``backend="reductionist"``) and PyActiveStorage's Reductionist
path (``interface_type="s3"``, ``active_storage_url``). Reports the median chunks per second,
activezarr's peak requests in flight, and the share of in-flight / latency that was reached.
Results: ``benchmarks/results/remote-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
SHAPE, CHUNKS = (80, 50, 40), (4, 5, 4)  # 2,000 chunks of 80 float32 values
NCHUNKS = 2000
KEY = SECRET = "testing"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, **(env or {})),
    )


def start_servers(latency: float) -> tuple[list[subprocess.Popen], str, str]:
    """(processes, S3 endpoint, proxy URL)."""
    port = free_port()
    moto = start(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    s3 = f"http://127.0.0.1:{port}"
    red = start(["-m", "tests.servers.reductionist", "--port", "0"])
    red_url = "http://" + red.stdout.readline().split()[-1]
    proxy = start(
        ["-m", "tests.servers.faultproxy", red_url, "--delay", "1", "--delay-seconds", str(latency)]
    )
    proxy_url = proxy.stdout.readline().split()[3]
    wait_for(s3)
    return [moto, red, proxy], s3, proxy_url


def wait_for(url: str, tries: int = 100) -> None:
    """Until the server answers (a start-up wait, outside every measurement)."""
    import requests

    for _ in range(tries):
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def write_file(path: Path) -> None:
    import netCDF4

    rng = np.random.default_rng(0)
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in zip("tyx", SHAPE, strict=True):
            ds.createDimension(name, n)
        v = ds.createVariable("tas", "f4", tuple("tyx"), zlib=True, shuffle=True, chunksizes=CHUNKS)
        v[:] = rng.normal(280, 20, SHAPE).astype("f4")


def storage_options(s3: str) -> dict:
    return {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": s3}}


def run_activezarr(index: Path, s3: str, server: str) -> tuple[float, float, dict]:
    from activezarr import Active
    from activezarr.backends.breaker import CircuitBreaker

    so = storage_options(s3)
    options = {"backend": "reductionist", "server": server, "breaker": CircuitBreaker()}
    with Active(index, "tas", storage_options=so, check_stale=False, **options) as active:
        start = time.perf_counter()
        value = float(active.mean[...])
        elapsed = time.perf_counter() - start
        limit = active.backend.in_flight
        extra = {"peak_in_flight": limit.peak, "final_limit": limit.limit, **active.stats.as_dict()}
    return elapsed, value, extra


def run_pyactivestorage(url: str, s3: str, server: str) -> tuple[float, float, dict]:
    from activestorage.active import Active

    so = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": s3}}
    active = Active(url, "tas", interface_type="s3", storage_options=so, active_storage_url=server)
    active._version = 2
    start = time.perf_counter()
    value = float(np.ma.asarray(active.mean()[...]).squeeze())
    return time.perf_counter() - start, value, {"max_threads": 30}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tools", nargs="+", default=["activezarr", "pyactivestorage"])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "remote-latest.json")
    args = parser.parse_args(argv)
    procs, s3, proxy = start_servers(args.latency)
    try:
        import boto3

        from activezarr import build_index

        work = Path(tempfile.mkdtemp(prefix="az-remote-bench-"))
        path = work / "tas.nc"
        write_file(path)
        client = boto3.client(
            "s3", endpoint_url=s3, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )  # fmt: skip
        client.create_bucket(Bucket="bench")
        client.upload_file(str(path), "bench", "tas.nc")
        # PyActiveStorage 0.8 names the object f"{endpoint}/{bucket}/{path}" with the URL's
        # path, which starts with "/": the object it asks for is "/tas.nc"
        client.upload_file(str(path), "bench", "/tas.nc")
        url = "s3://bench/tas.nc"
        index = build_index(url, out=work / "idx", storage_options=storage_options(s3))
        import netCDF4

        with netCDF4.Dataset(path) as ds:
            expected = float(ds["tas"][:].astype("f8").mean())
        rows = []
        for tool in args.tools:
            runs = []
            try:
                for _ in range(args.reps):
                    if tool == "activezarr":
                        runs.append(run_activezarr(index, s3, proxy))
                    else:
                        runs.append(run_pyactivestorage(url, s3, proxy))
            except Exception as exc:  # noqa: BLE001 - reported in the table
                rows.append({"tool": tool, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            seconds = statistics.median(r[0] for r in runs)
            rate = NCHUNKS / seconds
            row = {
                "tool": tool,
                "median_s": seconds,
                "chunks_per_s": rate,
                "value_ok": all(abs(r[1] - expected) <= 1e-5 * abs(expected) for r in runs),
                **runs[-1][2],
            }
            if tool == "activezarr":
                allowed = row["peak_in_flight"] / args.latency
                row["share_of_in_flight_over_latency"] = rate / allowed
            rows.append(row)
        result = {
            "latency_s": args.latency,
            "chunks": NCHUNKS,
            "load_average": os.getloadavg(),
            "rows": rows,
        }
        if len(rows) == 2 and all("chunks_per_s" in r for r in rows):
            result["activezarr_over_pyactivestorage"] = (
                rows[0]["chunks_per_s"] / rows[1]["chunks_per_s"]
            )
        print(json.dumps(result, indent=2, default=str))
        args.out.parent.mkdir(exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
