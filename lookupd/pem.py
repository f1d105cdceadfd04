"""Read and check PEM certificate and key files before gRPC sees them.

gRPC alone reports an unusable key or certificate on a server only as ``RuntimeError:
Failed to bind to address`` from ``add_secure_port`` (the reason goes to its log), and on a
client as every call failing with UNAVAILABLE ("Failed to create security handshaker").
These checks use only the standard library's ``ssl`` module (OpenSSL, no extra
dependency): the PEM BEGIN lines, then that the certificates parse and that the key belongs
to the certificate. Where ``ssl`` is unavailable only the BEGIN lines are checked.
:func:`not_after` reads when the certificates expire (their DER, walked here: ``ssl`` reads
the dates only of certificates it loaded as CAs).
"""

from __future__ import annotations

import binascii
import calendar
import re
import time
from pathlib import Path
from typing import Literal

from lookupd.errors import LookupdError

_CERTIFICATE = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")
# PKCS#8 ("PRIVATE KEY") or the older PKCS#1 and SEC1 forms, which gRPC also reads.
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----")
_ENCRYPTED_KEY = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")
_ANY_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")

PemKind = Literal["certificate", "CA certificate", "private key"]


def read_pem(path: Path, kind: PemKind, *, data: bytes | None = None) -> bytes:
    """Read a PEM file (or take its ``data``, read already) and check it holds a block of
    ``kind`` (by its BEGIN line)."""
    if data is None:
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


_CERTIFICATE_BLOCK = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----(.*?)-----END", re.DOTALL
)
# DER tags on the way to a certificate's notAfter (RFC 5280, 4.1).
_SEQUENCE = 0x30
_VERSION = 0xA0  # [0] EXPLICIT, absent in a version 1 certificate
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


def not_after(path: Path, data: bytes) -> float:
    """Return when the first of the PEM certificates in ``data`` expires (the earliest
    notAfter, Unix seconds): a chain or a set of CAs is whole only until then.

    Raises:
        LookupdError: ``data`` holds no certificate whose dates can be read.
    """
    times = []
    for block in _CERTIFICATE_BLOCK.findall(data):
        try:
            times.append(_not_after(binascii.a2b_base64(block)))
        except (ValueError, IndexError, binascii.Error) as exc:
            msg = f"the TLS certificate {path}: cannot read its expiry date ({exc})"
            raise LookupdError(msg) from exc
    if not times:
        msg = f"the TLS certificate {path} holds no certificate"
        raise LookupdError(msg)
    return min(times)


def check_not_expired(path: Path, kind: PemKind, data: bytes, now: float | None = None) -> float:
    """Return :func:`not_after` of ``data``, refusing a file holding an expired certificate
    (every handshake with it would fail).

    Raises:
        LookupdError: a certificate in the file is past its notAfter, or none can be read.
    """
    expires = not_after(path, data)
    if expires <= (time.time() if now is None else now):
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        msg = f"the TLS {kind} {path} expired on {when} (its notAfter)"
        raise LookupdError(msg)
    return expires


def _not_after(der: bytes) -> float:
    """The notAfter of one DER certificate: Certificate > TBSCertificate > Validity."""
    tag, start, _ = _header(der, 0)  # Certificate
    tag, start, _ = _header(der, start)  # TBSCertificate
    if tag != _SEQUENCE:
        msg = "not an X.509 certificate"
        raise ValueError(msg)
    tag, _, end = _header(der, start)
    pos = end if tag == _VERSION else start
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, pos = _header(der, pos)
    _, validity, _ = _header(der, pos)
    tag, body, end = _header(der, validity)  # notBefore
    tag, body, end = _header(der, end)  # notAfter
    return _der_time(tag, der[body:end].decode("ascii"))


def _header(der: bytes, pos: int) -> tuple[int, int, int]:
    """Read the DER tag and length at ``pos``; return the tag, where its content starts and
    where it ends."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:  # long form: the low bits count the length's bytes
        size = length & 0x7F
        length = int.from_bytes(der[pos : pos + size], "big")
        pos += size
    if pos + length > len(der):
        msg = "truncated DER"
        raise ValueError(msg)
    return tag, pos, pos + length


def _der_time(tag: int, text: str) -> float:
    """UTCTime (YYMMDDHHMMSSZ; years 50-99 are 19xx) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    if tag == _UTC_TIME:
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        msg = f"unexpected DER tag {tag:#x} for a time"
        raise ValueError(msg)
    if not text.endswith("Z") or len(text) != 15:
        msg = f"unexpected time {text!r}"
        raise ValueError(msg)
    return float(calendar.timegm(time.strptime(text[:14], "%Y%m%d%H%M%S")))
