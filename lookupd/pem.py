"""Read and check PEM certificate and key files before gRPC sees them.

gRPC alone reports an unusable key or certificate on a server only as ``RuntimeError:
Failed to bind to address`` from ``add_secure_port`` (the reason goes to its log), and on a
client as every call failing with UNAVAILABLE ("Failed to create security handshaker").
These checks use only the standard library's ``ssl`` module (OpenSSL, no extra
dependency): the PEM BEGIN lines, then that the certificates parse and that the key belongs
to the certificate. Where ``ssl`` is unavailable only the BEGIN lines are checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from lookupd.errors import LookupdError

_CERTIFICATE = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")
# PKCS#8 ("PRIVATE KEY") or the older PKCS#1 and SEC1 forms, which gRPC also reads.
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----")
_ENCRYPTED_KEY = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")
_ANY_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")

PemKind = Literal["certificate", "CA certificate", "private key"]


def read_pem(path: Path, kind: PemKind) -> bytes:
    """Read a PEM file and check it holds a block of ``kind`` (by its BEGIN line)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        msg = f"cannot read the TLS {kind} {path}: {exc.strerror or exc}"
        raise LookupdError(msg) from exc
    if kind == "private key":
        if _ENCRYPTED_KEY.search(data):
            msg = f"the TLS private key {path} is encrypted: gRPC needs an unencrypted key"
            raise LookupdError(msg)
        if not _PRIVATE_KEY.search(data):
            holds = "a certificate, not a key" if _CERTIFICATE.search(data) else "no PEM key"
            msg = (
                f"the TLS private key {path} holds {holds} (no '-----BEGIN PRIVATE KEY-----' line)"
            )
            raise LookupdError(msg)
    elif not _CERTIFICATE.search(data):
        holds = (
            "a private key, not a certificate" if _ANY_KEY.search(data) else "no PEM certificate"
        )
        msg = f"the TLS {kind} {path} holds {holds} (no '-----BEGIN CERTIFICATE-----' line)"
        raise LookupdError(msg)
    return data


def check_with_openssl(cert: Path | None, key: Path | None, ca: Path | None) -> None:
    """Parse the files with the standard library's OpenSSL; check the key fits the cert.

    gRPC would only say "Failed to bind to address" for these (logging the reason), or, on
    a client, fail every connection attempt.
    """
    try:
        import ssl
    except ImportError:  # a Python built without OpenSSL: the marker checks will have to do
        return
    for kind, path in (("CA certificate", ca), ("certificate", cert)):
        if path is None:
            continue
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=path)
        except OSError as exc:  # ssl.SSLError, or the file went away since it was read
            msg = f"the TLS {kind} {path} cannot be parsed ({_reason(exc)})"
            raise LookupdError(msg) from exc
    if cert is None or key is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Security level 0: judge only whether the files parse and match, not key sizes or
    # digests, which are BoringSSL's (gRPC's) business and differ from OpenSSL's defaults.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except OSError as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            msg = f"the TLS private key {key} does not match the certificate {cert}"
        else:
            msg = f"the TLS private key {key} cannot be parsed ({_reason(exc)})"
        raise LookupdError(msg) from exc


def _no_password() -> bytes:
    # Never let OpenSSL prompt on the terminal; encrypted keys are refused before this.
    msg = "encrypted private keys are not supported"
    raise LookupdError(msg)


def _reason(exc: OSError) -> str:
    """OpenSSL's message without the ``(_ssl.c:1234)`` suffix."""
    message = exc.strerror or str(exc)
    return "OpenSSL: " + re.sub(r"\s*\(_ssl\.c:\d+\)$", "", message)
