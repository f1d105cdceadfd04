"""TLS certificates past their notAfter are refused, at start and on rotation; each
certificate file's expiry is a metric."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from certs import write_certs, write_expired_cert
from cryptography import x509

from lookupd.client import Client
from lookupd.client.tls import ClientTLS
from lookupd.datafiles.open import open_database
from lookupd.errors import LookupdError
from lookupd.pem import not_after
from lookupd.server.answers import Answerer
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.metrics import Metrics
from lookupd.server.tls import ServerTLS


def test_not_after_is_the_certificates(tmp_path: Path) -> None:
    certs = write_certs(tmp_path)
    for path in (certs.server_cert, certs.ca):
        expected = x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
        assert not_after(path, path.read_bytes()) == expected.timestamp()


def test_an_expired_certificate_is_refused_at_start(tmp_path: Path) -> None:
    cert, key = write_expired_cert(tmp_path)
    with pytest.raises(LookupdError, match=r"expired\.pem expired on \d{4}-\d\d-\d\dT"):
        ServerTLS(cert, key).check()


def test_an_expired_certificate_is_refused_on_rotation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = write_certs(tmp_path / "good")
    expired_cert, expired_key = write_expired_cert(tmp_path / "expired")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server.key"
    cert.write_bytes(good.server_cert.read_bytes())
    key.write_bytes(good.server_key.read_bytes())
    metrics = Metrics()
    config = ServerConfig(host="127.0.0.1", port=0, tls=ServerTLS(cert, key, good.ca))
    server = LookupServer(config, metrics=metrics).start()
    try:
        server.load(Answerer.load(open_database(None), None))
        expiry = metrics.registry.get_sample_value(
            "lookupd_tls_certificate_expiry_timestamp_seconds", {"certificate": "server"}
        )
        assert expiry == not_after(cert, cert.read_bytes())
        ca_expiry = metrics.registry.get_sample_value(
            "lookupd_tls_certificate_expiry_timestamp_seconds", {"certificate": "client_ca"}
        )
        assert ca_expiry == not_after(good.ca, good.ca.read_bytes())
        # The expired pair replaces the good one: refused, the good one stays.
        (live / "new.key").write_bytes(expired_key.read_bytes())
        (live / "new.pem").write_bytes(expired_cert.read_bytes())
        (live / "new.key").replace(key)
        (live / "new.pem").replace(cert)
        tls = ClientTLS(ca=good.ca, cert=good.client_cert, key=good.client_key)
        with (
            caplog.at_level(logging.INFO, logger="lookupd"),
            Client(f"127.0.0.1:{server.port}", tls=tls, timeout_s=5) as client,
        ):
            assert client.lookup(["1.1.1.1"]).countries.tolist() == ["AU"]
        refused = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert refused
        assert "expired on" in refused[-1].getMessage()
    finally:
        server.stop(0, drain_s=0)
