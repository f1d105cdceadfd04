"""TLS and mutual TLS: lookupd.server.tls against real servers on 127.0.0.1 with throwaway certs."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from certs import CLIENT_NAME, Certs, write_certs

import lookupd
from lookupd import Database
from lookupd.client import Answers, AsyncClient, Client, ServerError
from lookupd.client.tls import ClientTLS
from lookupd.errors import LookupdError
from lookupd.policies import example_policies_path, load_policies
from lookupd.server.answers import Answerer
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.tls import ServerTLS, peer_identities

# Every call has a deadline: a handshake that fails must not hang a test.
_TIMEOUT_S = 5.0
_ADDRESSES = ["1.1.1.1", "2001:4860:4860::8888", "10.0.0.1", "not-an-ip", "5.249.168.0"]
_WHOAMI = "/lookupd.test.Whoami/Names"


# ---------------------------------------------------------------------------------------
# Fixtures: the certificates, a TLS server and a mutual-TLS server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def db() -> Database:
    return lookupd.open()


@pytest.fixture(scope="module")
def answerer(db: Database) -> Answerer:
    return Answerer.load(db, load_policies(example_policies_path()))


def _serve(answerer: Answerer, tls: ServerTLS) -> LookupServer:
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0, tls=tls)).start()
    server.load(answerer)
    return server


@pytest.fixture(scope="module")
def tls_target(certs: Certs, answerer: Answerer) -> Iterator[str]:
    server = _serve(answerer, ServerTLS(certs.server_cert, certs.server_key))
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


@pytest.fixture(scope="module")
def mtls_target(certs: Certs, answerer: Answerer) -> Iterator[str]:
    server = _serve(answerer, ServerTLS(certs.server_cert, certs.server_key, client_ca=certs.ca))
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


def _client_tls(certs: Certs, **overrides: Any) -> ClientTLS:
    """Trust the test CA and present the trusted client certificate, unless overridden."""
    fields: dict[str, Any] = {"ca": certs.ca, "cert": certs.client_cert, "key": certs.client_key}
    fields.update(overrides)
    return ClientTLS(**fields)


def _assert_agrees(answers: Answers, db: Database) -> None:
    expected = db.lookup(_ADDRESSES)
    assert answers.countries_list() == expected.countries()
    assert answers.status.tolist() == expected.status.tolist()
    assert answers.countries_list()[:2] == ["AU", "US"]


def _lookup_fails(target: str, tls: ClientTLS | None) -> ServerError:
    with (
        Client(target, timeout_s=_TIMEOUT_S, tls=tls) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.lookup(_ADDRESSES)
    return caught.value


# ---------------------------------------------------------------------------------------
# TLS


def test_tls_client_trusting_the_ca_gets_answers(
    tls_target: str, certs: Certs, db: Database
) -> None:
    with Client(tls_target, timeout_s=_TIMEOUT_S, tls=ClientTLS(ca=certs.ca)) as client:
        _assert_agrees(client.lookup(_ADDRESSES), db)
        _assert_agrees(client.lookup(_ADDRESSES, text=True), db)
        assert len(client.info().data_version.id) == 64


def test_tls_server_name_override(tls_target: str, certs: Certs, db: Database) -> None:
    # The certificate names localhost too: checked for that name instead of 127.0.0.1.
    tls = ClientTLS(ca=certs.ca, server_name="localhost")
    assert tls.channel_options() == [("grpc.ssl_target_name_override", "localhost")]
    with Client(tls_target, timeout_s=_TIMEOUT_S, tls=tls) as client:
        _assert_agrees(client.lookup(_ADDRESSES), db)
    # A name the certificate does not carry fails verification.
    error = _lookup_fails(tls_target, ClientTLS(ca=certs.ca, server_name="lookupd.example"))
    assert error.code == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_against_a_tls_server_fails(tls_target: str) -> None:
    assert _lookup_fails(tls_target, None).code == grpc.StatusCode.UNAVAILABLE


def test_tls_client_not_trusting_the_ca_fails(tls_target: str, certs: Certs) -> None:
    error = _lookup_fails(tls_target, ClientTLS(ca=certs.other_ca))
    assert error.code == grpc.StatusCode.UNAVAILABLE


def test_tls_server_ignores_a_client_certificate(
    tls_target: str, certs: Certs, db: Database
) -> None:
    with Client(tls_target, timeout_s=_TIMEOUT_S, tls=_client_tls(certs)) as client:
        _assert_agrees(client.lookup(_ADDRESSES), db)


# ---------------------------------------------------------------------------------------
# Mutual TLS


def test_mtls_client_with_the_right_certificate_gets_answers(
    mtls_target: str, certs: Certs, db: Database
) -> None:
    with Client(mtls_target, timeout_s=_TIMEOUT_S, tls=_client_tls(certs)) as client:
        _assert_agrees(client.lookup(_ADDRESSES), db)
        checks = client.check("api-supported", _ADDRESSES)
        assert len(checks) == len(_ADDRESSES)


def test_mtls_client_without_a_certificate_fails(mtls_target: str, certs: Certs) -> None:
    error = _lookup_fails(mtls_target, ClientTLS(ca=certs.ca))
    assert error.code == grpc.StatusCode.UNAVAILABLE


def test_mtls_client_with_another_cas_certificate_fails(mtls_target: str, certs: Certs) -> None:
    tls = _client_tls(certs, cert=certs.other_client_cert, key=certs.other_client_key)
    assert _lookup_fails(mtls_target, tls).code == grpc.StatusCode.UNAVAILABLE


def test_mtls_plaintext_client_fails(mtls_target: str) -> None:
    assert _lookup_fails(mtls_target, None).code == grpc.StatusCode.UNAVAILABLE


def test_async_client_over_mtls(
    mtls_target: str, tls_target: str, certs: Certs, db: Database
) -> None:
    async def run() -> None:
        async with AsyncClient(mtls_target, timeout_s=_TIMEOUT_S, tls=_client_tls(certs)) as client:
            _assert_agrees(await client.lookup(_ADDRESSES), db)
            streamed = [answers async for answers in client.stream([_ADDRESSES])]
            _assert_agrees(streamed[0], db)
        async with AsyncClient(
            tls_target, timeout_s=_TIMEOUT_S, tls=ClientTLS(ca=certs.ca)
        ) as client:
            assert len((await client.info()).data_version.id) == 64
        async with AsyncClient(
            mtls_target, timeout_s=_TIMEOUT_S, tls=ClientTLS(ca=certs.ca)
        ) as client:
            with pytest.raises(ServerError) as caught:
                await client.lookup(_ADDRESSES)
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE

    asyncio.run(asyncio.wait_for(run(), 4 * _TIMEOUT_S))


# ---------------------------------------------------------------------------------------
# peer_identities, from a real server context


def _raw(data: bytes) -> bytes:
    return data


def _names(request: bytes, context: grpc.ServicerContext) -> bytes:
    return "\n".join(peer_identities(context)).encode()


_WHOAMI_HANDLER = grpc.method_handlers_generic_handler(
    "lookupd.test.Whoami", {"Names": grpc.unary_unary_rpc_method_handler(_names)}
)


def _whoami(tls: ServerTLS | None, client: ClientTLS | None) -> list[str]:
    """Start a server answering with peer_identities(); call it once; return the names."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), handlers=[_WHOAMI_HANDLER])
    try:
        address = "127.0.0.1:0"
        port = (
            server.add_secure_port(address, tls.credentials())
            if tls
            else server.add_insecure_port(address)
        )
        server.start()
        target = f"127.0.0.1:{port}"
        channel = (
            grpc.secure_channel(target, client.credentials(), client.channel_options())
            if client
            else grpc.insecure_channel(target)
        )
        with channel:
            answer: bytes = channel.unary_unary(_WHOAMI, _raw, _raw)(b"", timeout=_TIMEOUT_S)
    finally:
        server.stop(0)
    return answer.decode().split("\n") if answer else []


def test_peer_identities_over_mtls_are_the_client_certificates_names(certs: Certs) -> None:
    mtls = ServerTLS(certs.server_cert, certs.server_key, client_ca=certs.ca)
    # CN and DNS SAN are both CLIENT_NAME: each name once.
    assert _whoami(mtls, _client_tls(certs)) == [CLIENT_NAME]


def test_peer_identities_empty_without_a_client_certificate(certs: Certs) -> None:
    tls = ServerTLS(certs.server_cert, certs.server_key)
    assert _whoami(tls, ClientTLS(ca=certs.ca)) == []
    # A TLS-only server does not ask for a certificate: one the client has is not seen.
    assert _whoami(tls, _client_tls(certs)) == []
    assert _whoami(None, None) == []


def test_peer_identities_in_an_asyncio_server(certs: Certs) -> None:
    async def names(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return "\n".join(peer_identities(context)).encode()

    async def run() -> bytes:
        handler = grpc.method_handlers_generic_handler(
            "lookupd.test.Whoami", {"Names": grpc.unary_unary_rpc_method_handler(names)}
        )
        server = grpc.aio.server(handlers=[handler])
        mtls = ServerTLS(certs.server_cert, certs.server_key, client_ca=certs.ca)
        port = server.add_secure_port("127.0.0.1:0", mtls.credentials())
        await server.start()
        try:
            tls = _client_tls(certs)
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{port}", tls.credentials(), tls.channel_options()
            ) as channel:
                answer: bytes = await channel.unary_unary(_WHOAMI, _raw, _raw)(
                    b"", timeout=_TIMEOUT_S
                )
                return answer
        finally:
            await server.stop(0)

    assert asyncio.run(asyncio.wait_for(run(), 2 * _TIMEOUT_S)) == CLIENT_NAME.encode()


# ---------------------------------------------------------------------------------------
# Clear errors for unusable files


def test_missing_certificate_file(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(LookupdError, match=r"cannot read the TLS certificate .*nope\.pem"):
        ServerTLS(missing, certs.server_key).credentials()
    with pytest.raises(LookupdError, match=r"cannot read the TLS CA certificate .*nope\.pem"):
        ClientTLS(ca=missing).credentials()
    # The client reads its files when it is made, not at the first call.
    with pytest.raises(LookupdError, match=r"nope\.pem"):
        Client("127.0.0.1:1", tls=ClientTLS(ca=missing))


def test_key_given_as_certificate(certs: Certs) -> None:
    with pytest.raises(LookupdError, match="holds a private key, not a certificate") as caught:
        ServerTLS(certs.server_key, certs.server_key).credentials()
    assert str(certs.server_key) in str(caught.value)
    with pytest.raises(LookupdError, match="holds a certificate, not a key"):
        ServerTLS(certs.server_cert, certs.server_cert).credentials()
    with pytest.raises(LookupdError, match=r"CA certificate .* holds a private key"):
        ServerTLS(certs.server_cert, certs.server_key, client_ca=certs.client_key).credentials()


def test_not_pem_at_all(certs: Certs, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x30\x82\x01\x0a not PEM")
    with pytest.raises(LookupdError, match="holds no PEM certificate"):
        ServerTLS(junk, certs.server_key).credentials()
    with pytest.raises(LookupdError, match="holds no PEM key"):
        ServerTLS(certs.server_cert, junk).credentials()


def test_pem_that_does_not_parse(certs: Certs, tmp_path: Path) -> None:
    cert = tmp_path / "broken.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    key = tmp_path / "broken.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(LookupdError, match=r"certificate .*broken\.pem cannot be parsed"):
        ServerTLS(cert, certs.server_key).credentials()
    with pytest.raises(LookupdError, match=r"private key .*broken\.key cannot be parsed"):
        ServerTLS(certs.server_cert, key).credentials()


def test_encrypted_key_is_refused(certs: Certs, tmp_path: Path) -> None:
    key = tmp_path / "encrypted.key"
    key.write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    with pytest.raises(LookupdError, match="is encrypted"):
        ServerTLS(certs.server_cert, key).credentials()


def test_key_not_matching_the_certificate(certs: Certs, answerer: Answerer) -> None:
    mismatched = ServerTLS(certs.server_cert, certs.client_key)
    with pytest.raises(LookupdError, match="does not match the certificate"):
        mismatched.credentials()
    with pytest.raises(LookupdError, match="does not match the certificate"):
        mismatched.check()
    ServerTLS(certs.server_cert, certs.server_key, client_ca=certs.ca).check()
    # What the server's start says (it reads the credentials before binding).
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0, tls=mismatched))
    with pytest.raises(LookupdError, match=r"client\.key does not match .*server\.pem"):
        server.start()
    with pytest.raises(LookupdError, match="does not match the certificate"):
        ClientTLS(ca=certs.ca, cert=certs.client_cert, key=certs.server_key).credentials()


def test_grpc_itself_reports_a_mismatch_only_as_a_failed_bind(certs: Certs) -> None:
    """Why lookupd checks the pair first: gRPC's own error does not say what is wrong."""
    credentials = grpc.ssl_server_credentials(
        [(certs.client_key.read_bytes(), certs.server_cert.read_bytes())]
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        with pytest.raises(RuntimeError, match="Failed to bind"):
            server.add_secure_port("127.0.0.1:0", credentials)
    finally:
        server.stop(0)


def test_client_certificate_needs_its_key(certs: Certs) -> None:
    with pytest.raises(ValueError, match="both cert and key"):
        ClientTLS(ca=certs.ca, cert=certs.client_cert)
    with pytest.raises(ValueError, match="both cert and key"):
        ClientTLS(key=certs.client_key)


# ---------------------------------------------------------------------------------------
# Certificate rotation: the server follows its files, no restart


def _served_certificate(port: int) -> bytes:
    """The DER certificate a plain TLS handshake with the server gets (not verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as wrapped,
    ):
        certificate = wrapped.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def _der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_a_renewed_certificate_is_served_without_a_restart(
    tmp_path: Path, answerer: Answerer, caplog: pytest.LogCaptureFixture
) -> None:
    first = write_certs(tmp_path / "first")
    renewed = write_certs(tmp_path / "renewed")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server.key"
    for source, target in ((first.server_cert, cert), (first.server_key, key)):
        target.write_bytes(source.read_bytes())
    server = _serve(answerer, ServerTLS(cert, key))
    try:
        assert _served_certificate(server.port) == _der(first.server_cert)
        # A key that does not fit the certificate: refused, the current pair stays.
        (live / "new.pem").write_bytes(renewed.server_cert.read_bytes())
        (live / "new.pem").replace(cert)
        with caplog.at_level(logging.INFO, logger="lookupd"):
            assert _served_certificate(server.port) == _der(first.server_cert)
        failures = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(failures) == 1
        assert "does not match" in failures[0].getMessage()
        # The matching key arrives: new handshakes get the new certificate.
        (live / "new.key").write_bytes(renewed.server_key.read_bytes())
        (live / "new.key").replace(key)
        assert _served_certificate(server.port) == _der(renewed.server_cert)
        # A gRPC client trusting the new CA is answered; the old CA no longer works.
        with Client(f"127.0.0.1:{server.port}", tls=ClientTLS(ca=renewed.ca), timeout_s=5) as c:
            assert c.lookup(["1.1.1.1"]).countries.tolist() == ["AU"]
        _lookup_fails(f"127.0.0.1:{server.port}", ClientTLS(ca=first.ca))
    finally:
        server.stop(0)
