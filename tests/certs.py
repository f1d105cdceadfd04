"""Throwaway certificates for the TLS tests, made with ``cryptography`` (a test dependency).

EC P-256 keys (fast to make), valid for a day from a minute ago (clock skew). Nothing here
is for production: the keys are written unencrypted next to the certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_NAME = "lookupd-test-client"
"""The client certificate's common name, and its DNS subject alternative name."""
OTHER_CLIENT_NAME = "lookupd-untrusted-client"
"""The common name of the client certificate signed by the other CA."""


@dataclass(frozen=True, slots=True)
class Certs:
    """Paths of the PEM files :func:`write_certs` made."""

    ca: Path
    """The CA that signed the server and client certificates."""
    server_cert: Path
    """For 127.0.0.1, ::1 and localhost."""
    server_key: Path
    client_cert: Path
    """CN and DNS SAN :data:`CLIENT_NAME`, signed by :attr:`ca`."""
    client_key: Path
    other_ca: Path
    """An unrelated CA: trusted by nobody here."""
    other_client_cert: Path
    """A client certificate signed by :attr:`other_ca`: a mTLS server must refuse it."""
    other_client_key: Path


@dataclass(frozen=True, slots=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lookupd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    valid: tuple[datetime.timedelta, datetime.timedelta] = (
        datetime.timedelta(minutes=-1),
        datetime.timedelta(days=1),
    ),
) -> x509.CertificateBuilder:
    """A certificate valid from ``now + valid[0]`` to ``now + valid[1]``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid[0])
        .not_valid_after(now + valid[1])
    )


def _ca(common_name: str) -> tuple[_Issuer, x509.Certificate]:
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(name, key), cert


def _leaf(
    issuer: _Issuer,
    common_name: str,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    cert = (
        _builder(_name(common_name), issuer.name, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    return key, cert


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,  # "BEGIN PRIVATE KEY", what grpc reads
            serialization.NoEncryption(),
        )
    )
    return path


def write_certs(directory: Path) -> Certs:
    """Make the CAs, server and client certificates and keys; write them into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_cert = _ca("lookupd test CA")
    other_ca, other_ca_cert = _ca("lookupd unrelated test CA")
    server_key, server_cert = _leaf(
        ca,
        "localhost",
        [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
            x509.DNSName("localhost"),
        ],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_key, client_cert = _leaf(
        ca, CLIENT_NAME, [x509.DNSName(CLIENT_NAME)], ExtendedKeyUsageOID.CLIENT_AUTH
    )
    other_key, other_cert = _leaf(
        other_ca,
        OTHER_CLIENT_NAME,
        [x509.DNSName(OTHER_CLIENT_NAME)],
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return Certs(
        ca=_write_cert(directory / "ca.pem", ca_cert),
        server_cert=_write_cert(directory / "server.pem", server_cert),
        server_key=_write_key(directory / "server.key", server_key),
        client_cert=_write_cert(directory / "client.pem", client_cert),
        client_key=_write_key(directory / "client.key", client_key),
        other_ca=_write_cert(directory / "other-ca.pem", other_ca_cert),
        other_client_cert=_write_cert(directory / "other-client.pem", other_cert),
        other_client_key=_write_key(directory / "other-client.key", other_key),
    )


def write_expired_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost that expired yesterday, and its key."""
    key = _key()
    name = _name("localhost")
    yesterday = (datetime.timedelta(days=-2), datetime.timedelta(days=-1))
    cert = _builder(name, name, key, yesterday).sign(key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    return _write_cert(directory / "expired.pem", cert), _write_key(directory / "expired.key", key)
