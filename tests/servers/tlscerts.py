"""A private certificate authority for TLS tests: good, expired and wrong-host server certificates.

``make_pki(directory)`` writes a CA and server certificates it signed (PEM, with their keys), plus
a second, unrelated CA: what a deployment with its own CA has, and the three ways its
certificates fail verification (expired, issued for another host, signed by an unknown CA).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServerCert:
    cert: str
    key: str


@dataclass(frozen=True)
class Pki:
    """``ca`` (PEM bundle of the private CA), ``other_ca`` (a CA that signed nothing here), and
    server certificates for 127.0.0.1: ``good``, ``expired``, ``wrong_host`` (for
    other.example only) and ``unknown_ca`` (signed by a third CA nobody trusts)."""

    ca: str
    other_ca: str
    good: ServerCert
    expired: ServerCert
    wrong_host: ServerCert
    unknown_ca: ServerCert


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def _write_cert(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _ca(cn: str):
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _server(ca_cert, ca_key, hosts: list[str], *, days: tuple[int, int] = (-1, 30)):
    key = _key()
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_pki(directory: str | Path) -> Pki:
    directory = Path(directory)
    ca_cert, ca_key = _ca("activezarr test CA")
    other_cert, _ = _ca("activezarr other CA")
    rogue_cert, rogue_key = _ca("activezarr rogue CA")
    local = ["127.0.0.1", "localhost"]
    made = {
        "good": _server(ca_cert, ca_key, local),
        "expired": _server(ca_cert, ca_key, local, days=(-30, -1)),
        "wrong_host": _server(ca_cert, ca_key, ["other.example"]),
        "unknown_ca": _server(rogue_cert, rogue_key, local),
    }
    servers = {
        name: ServerCert(
            _write_cert(directory / f"{name}.pem", cert),
            _write_key(directory / f"{name}.key", key),
        )
        for name, (cert, key) in made.items()
    }
    return Pki(
        ca=_write_cert(directory / "ca.pem", ca_cert),
        other_ca=_write_cert(directory / "other-ca.pem", other_cert),
        **servers,
    )
