"""An nginx (Debian package) serving a directory over HTTPS with a self-signed certificate, for tests.

nginx answers Range requests for static files by itself. Everything it writes (config, pid, logs,
temp dirs, certificate) lives in a private temporary directory removed by ``stop()``.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

START_TIMEOUT = 15.0
PORT_ATTEMPTS = 5
INSTALL_HINT = "apt-get update && apt-get install -y nginx-light (or nginx)"
OPENSSL_HINT = "apt-get update && apt-get install -y openssl"


@dataclass
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost; cert doubles as the CA bundle."""

    cert: str
    key: str


@dataclass
class NginxHandle:
    """A running nginx: ``url`` ("https://127.0.0.1:PORT"), ``root`` (served dir), ``ca_file``."""

    url: str
    root: Path
    ca_file: str | None
    port: int
    process: subprocess.Popen
    workdir: Path

    def error_log(self) -> str:
        """nginx's error log so far (for failure messages)."""
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        _terminate(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def nginx_path() -> str | None:
    """Path of the nginx binary (on PATH, or Debian's /usr/sbin/nginx), None when absent."""
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


def find_nginx() -> str:
    """Path of the nginx binary; RuntimeError with an install hint when absent."""
    path = nginx_path()
    if path is None:
        raise RuntimeError(f"nginx is not installed; install it with: {INSTALL_HINT}")
    return path


def missing_tools(tls: bool = True) -> str | None:
    """Why nginx (with a self-signed certificate when ``tls``) cannot run here, or None."""
    if nginx_path() is None:
        return f"needs the nginx package ({INSTALL_HINT})"
    if tls:
        return missing_openssl()
    return None


def missing_openssl() -> str | None:
    """Why test certificates cannot be made here (no openssl binary), or None."""
    if shutil.which("openssl") is None:
        return f"needs the openssl package ({OPENSSL_HINT})"
    return None


def make_certificate(directory: str | Path) -> Certificate:
    """Create a self-signed certificate (SAN IP:127.0.0.1, DNS:localhost) with openssl."""
    directory = Path(directory)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    return Certificate(str(cert), str(key))


def start_nginx(
    root_dir: str | Path,
    *,
    tls: bool = True,
    certificate: Certificate | None = None,
    basic_auth: tuple[str, str] | None = None,
) -> NginxHandle:
    """Serve root_dir on 127.0.0.1 (HTTPS unless tls=False; Basic auth only if basic_auth given)."""
    binary = find_nginx()
    workdir = Path(tempfile.mkdtemp(prefix="nginx-test-"))
    try:
        if tls and certificate is None:
            certificate = make_certificate(workdir)
        if basic_auth is not None:
            _write_htpasswd(workdir / "htpasswd", *basic_auth)
        return _start_on_free_port(binary, Path(root_dir), workdir, certificate if tls else None)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _start_on_free_port(binary, root: Path, workdir: Path, cert: Certificate | None):
    for _attempt in range(PORT_ATTEMPTS):
        port = _free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(_config(root, workdir, port, cert))
        process = subprocess.Popen(
            [binary, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        handle = NginxHandle(_url(port, cert), root, cert and cert.cert, port, process, workdir)
        if _wait_for_port(port, process):
            return handle
        _terminate(process)
    raise RuntimeError(f"nginx did not start; error log:\n{handle.error_log()}")


def _url(port: int, cert: Certificate | None) -> str:
    return f"{'https' if cert else 'http'}://127.0.0.1:{port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen) -> bool:
    """Poll until the port accepts connections; False if nginx exits or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _write_htpasswd(path: Path, user: str, password: str) -> None:
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    path.write_text(f"{user}:{{SHA}}{digest}\n")
    path.chmod(0o600)


def _user_directive() -> str:
    """When run as root, keep workers as the current user so they can read private temp dirs."""
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def _config(root: Path, workdir: Path, port: int, cert: Certificate | None) -> str:
    temp = "\n".join(
        f"    {name}_temp_path {workdir / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    listen = f"listen 127.0.0.1:{port}{' ssl' if cert else ''};"
    ssl = f"ssl_certificate {cert.cert};\n        ssl_certificate_key {cert.key};" if cert else ""
    htpasswd = workdir / "htpasswd"
    auth = (
        f'auth_basic "test";\n        auth_basic_user_file {htpasswd};' if htpasswd.exists() else ""
    )
    return f"""
daemon off;
worker_processes 1;
{_user_directive()}
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 512; }}
http {{
    log_format plain '$remote_addr [$time_local] "$request" $status $body_bytes_sent';
    access_log {workdir / "access.log"} plain;
{temp}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    server {{
        {listen}
        {ssl}
        {auth}
        root {root};
        location / {{ autoindex off; }}
    }}
}}
"""
