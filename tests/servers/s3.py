"""moto S3 servers for tests: in-process (any credentials accepted) or a child process enforcing IAM auth.

How moto (5.x) treats credentials, from moto/core/authorization.py, moto/iam/access_control.py,
moto/moto_api/_internal/responses.py and the moto IAM docs:

- By default ``settings.INITIAL_NO_AUTH_ACTION_COUNT`` is infinity and moto never checks a
  signature: any key pair (e.g. "testing"/"testing") works, so wrong credentials cannot give 401.
- Auth mode: with ``INITIAL_NO_AUTH_ACTION_COUNT=N`` (environment, read at import) or, in server
  mode, ``POST /moto-api/reset-auth`` with body ``N`` (what ``set_initial_no_auth_action_count(N)``
  sends), moto lets N more requests through and then verifies every request's SigV4 signature
  against the access keys of IAM users created in moto, and their policies: unknown key -> 403
  ``InvalidAccessKeyId``, wrong secret -> 403 ``SignatureDoesNotMatch``, no allowing policy -> 403
  ``AccessDenied``.
- That switch is a process-wide global shared by every in-process ThreadedMotoServer and
  ``mock_aws`` (they also share bucket contents). So ``start_moto(auth=True)`` runs moto in a child
  process: it creates an IAM user with an ``s3:*`` policy and an access key while auth is still
  off, then posts ``reset-auth 0``. The valid pair is on ``handle.access_key/secret_key``.
- In auth mode moto answers unsigned (anonymous) requests with 500 (it reads the absent
  Authorization header), so anonymous/public-bucket tests need ``auth=False``. There an unsigned
  GET of a private object gets 403 with an empty body, and of an object in a bucket made with
  ``make_bucket(..., public=True)`` (a public-read bucket policy) 200.
"""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import requests
from botocore.config import Config
from moto.server import ThreadedMotoServer

DUMMY_KEY = "testing"
REGION = "us-east-1"
START_TIMEOUT = 60
_CHILD = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""
_ALLOW_S3 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


@dataclass
class MotoHandle:
    """A running moto server and the key pair it accepts."""

    endpoint_url: str
    access_key: str = DUMMY_KEY
    secret_key: str = DUMMY_KEY
    auth: bool = False
    _stop: Callable[[], None] | None = None

    def client(self):
        """A boto3 S3 client with this server's valid credentials."""
        return s3_client(self.endpoint_url, self.access_key, self.secret_key)

    def url(self, bucket: str, key: str) -> str:
        """The path-style object URL that Reductionist requests name."""
        return f"{self.endpoint_url}/{bucket}/{key}"

    def storage_options(self) -> dict:
        """s3fs keyword arguments for this server."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
        }

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def s3_client(endpoint_url: str, key: str = DUMMY_KEY, secret: str = DUMMY_KEY):
    """A boto3 S3 client (path-style, us-east-1) for a moto endpoint."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}),
    )


def start_moto(auth: bool = False) -> MotoHandle:
    """Start moto on 127.0.0.1 (free port); auth=True enforces IAM credentials (child process)."""
    return _start_child_with_auth() if auth else _start_in_process()


def _start_in_process() -> MotoHandle:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()

    def stop() -> None:
        server.stop()
        server._server.server_close()  # stop() leaves the listening socket open

    return MotoHandle(f"http://{host}:{port}", _stop=stop)


def _start_child_with_auth() -> MotoHandle:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    handle = MotoHandle("", auth=True, _stop=lambda: _stop_child(proc))
    try:
        handle.endpoint_url = f"http://127.0.0.1:{_read_port(proc)}"
        handle.access_key, handle.secret_key = _enable_auth(handle.endpoint_url)
    except BaseException:
        handle.stop()
        raise
    return handle


def _read_port(proc: subprocess.Popen) -> int:
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    line = proc.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        raise RuntimeError(f"moto child process did not start (exit code {proc.poll()})")
    return int(line)


def _stop_child(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _enable_auth(endpoint_url: str) -> tuple[str, str]:
    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_KEY,
    )
    iam.create_user(UserName="activezarr-test")
    iam.put_user_policy(
        UserName="activezarr-test", PolicyName="s3-all", PolicyDocument=json.dumps(_ALLOW_S3)
    )
    key = iam.create_access_key(UserName="activezarr-test")["AccessKey"]
    requests.post(f"{endpoint_url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    return key["AccessKeyId"], key["SecretAccessKey"]


def make_bucket(handle: MotoHandle, name: str, public: bool = False) -> None:
    """Create a bucket; public=True adds a policy allowing anonymous GetObject and ListBucket."""
    client = handle.client()
    client.create_bucket(Bucket=name)
    if public:
        client.put_bucket_policy(Bucket=name, Policy=json.dumps(_public_policy(name)))


def _public_policy(bucket: str) -> dict:
    statement = {"Effect": "Allow", "Principal": "*"}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {**statement, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
            {**statement, "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
        ],
    }


def upload(handle: MotoHandle, bucket: str, key: str, local_path: str | Path) -> str:
    """Upload a local file; returns the object's path-style URL."""
    handle.client().upload_file(str(local_path), bucket, key)
    return handle.url(bucket, key)


def put_bytes(handle: MotoHandle, bucket: str, key: str, data: bytes) -> str:
    """Store bytes as an object; returns the object's path-style URL."""
    handle.client().put_object(Bucket=bucket, Key=key, Body=data)
    return handle.url(bucket, key)
