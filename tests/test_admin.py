"""The admin RPCs (AdminService.Reload) against in-process servers on 127.0.0.1: off by
default, a bearer token, mTLS with allowed names, both together; AdminConfig.loaded()."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from certs import CLIENT_NAME, Certs, write_certs
from versions import (
    CHANGING_ADDRESS,
    STABLE_ADDRESS,
    country_of_version,
    replace_atomically,
    write_data,
    write_policies,
)

from lookupd.client.tls import ClientTLS
from lookupd.errors import LookupdError
from lookupd.server.admin import AdminConfig
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.reload import Loader
from lookupd.server.tls import ServerTLS
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

# Every call has a deadline: a refused handshake or a stuck server must not hang a test.
_TIMEOUT_S = 10.0
_TOKEN = "admin-token-for-tests-0123456789"
_BEARER = (("authorization", f"Bearer {_TOKEN}"),)


# ---------------------------------------------------------------------------------------
# Fixtures and helpers: the data and policy files, a server with a Loader behind Reload


@dataclass(frozen=True, slots=True)
class _Files:
    data: Path
    policies: Path


@pytest.fixture
def files(tmp_path: Path) -> _Files:
    data, policies = tmp_path / "data.lookupd", tmp_path / "policies.yaml"
    write_data(data, 0)
    write_policies(policies, 0)
    return _Files(data, policies)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-token"
    path.write_text(f"{_TOKEN}\n")
    path.chmod(0o600)
    return path


class _Counter:
    """A ``notify_others`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@dataclass(frozen=True, slots=True)
class _Served:
    server: LookupServer
    loader: Loader
    admin: Any  # AdminServiceStub
    lookup: Any  # LookupServiceStub


@contextlib.contextmanager
def _serve(
    files: _Files,
    admin: AdminConfig,
    *,
    tls: ServerTLS | None = None,
    client_tls: ClientTLS | None = None,
    notify_others: Callable[[], None] | None = None,
) -> Iterator[_Served]:
    """A started server answering from ``files`` (loaded), and stubs on a channel to it."""
    config = ServerConfig(host="127.0.0.1", port=0, tls=tls, admin=admin, watch_interval_s=0)
    loader: Loader | None = None

    def reload(trigger: str) -> Any:
        assert loader is not None
        return loader.reload(trigger)

    server = LookupServer(config, reload=reload, notify_others=notify_others)
    loader = Loader(files.data, files.policies, publish=server.load)
    server.start()
    try:
        loader.load()
        target = f"127.0.0.1:{server.port}"
        channel = (
            grpc.secure_channel(target, client_tls.credentials(), client_tls.channel_options())
            if client_tls is not None
            else grpc.insecure_channel(target)
        )
        with channel:
            grpc.channel_ready_future(channel).result(timeout=_TIMEOUT_S)
            yield _Served(
                server,
                loader,
                lookup_pb2_grpc.AdminServiceStub(channel),  # type: ignore[no-untyped-call]
                lookup_pb2_grpc.LookupServiceStub(channel),  # type: ignore[no-untyped-call]
            )
    finally:
        server.stop(0, drain_s=0)


def _reload(served: _Served, metadata: tuple[tuple[str, str], ...] = ()) -> pb.ReloadResponse:
    response: pb.ReloadResponse = served.admin.Reload(
        pb.ReloadRequest(), timeout=_TIMEOUT_S, metadata=metadata
    )
    return response


def _refused(
    served: _Served, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.StatusCode, str]:
    """Call Reload expecting a failure; return its code and details."""
    with pytest.raises(grpc.RpcError) as caught:
        _reload(served, metadata)
    error: Any = caught.value  # a grpc.Call too
    return error.code(), str(error.details() or "")


def _country(served: _Served, address: str = CHANGING_ADDRESS) -> str:
    response = served.lookup.Lookup(pb.LookupRequest(addresses=[address]), timeout=_TIMEOUT_S)
    (country,) = response.countries
    return str(country)


def _data_version(served: _Served) -> str:
    info = served.lookup.GetInfo(pb.GetInfoRequest(), timeout=_TIMEOUT_S)
    return str(info.data_version.id)


def _mtls(certs: Certs) -> ServerTLS:
    return ServerTLS(certs.server_cert, certs.server_key, client_ca=certs.ca)


def _client(certs: Certs) -> ClientTLS:
    return ClientTLS(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)


# ---------------------------------------------------------------------------------------
# Off by default


def test_admin_is_off_by_default(files: _Files) -> None:
    notified = _Counter()
    with _serve(files, AdminConfig(), notify_others=notified) as served:
        before = _data_version(served)
        write_data(files.data, 1)
        write_policies(files.policies, 1)
        for metadata in ((), _BEARER):
            code, details = _refused(served, metadata)
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert "--admin-token-file" in details
            assert "--admin-mtls" in details
        # Nothing was reloaded: version 0 still answers.
        assert _data_version(served) == before
        assert _country(served) == country_of_version(0)
    assert notified.calls == 0


# ---------------------------------------------------------------------------------------
# Token


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer wrong-token-of-enough-length"),),
        (("authorization", f"Bearer {_TOKEN[:-1]}"),),  # a prefix of the token
        (("authorization", f"Bearer {_TOKEN}x"),),  # the token and more
        (("authorization", _TOKEN),),  # without the scheme
        (("authorization", f"Basic {_TOKEN}"),),
        (("x-admin-token", _TOKEN),),  # the right token in the wrong place
    ],
    ids=["none", "wrong", "prefix", "longer", "no-scheme", "basic", "other-key"],
)
def test_token_missing_or_wrong_is_unauthenticated(
    files: _Files, token_file: Path, metadata: tuple[tuple[str, str], ...]
) -> None:
    notified = _Counter()
    with _serve(files, AdminConfig(token_file=token_file), notify_others=notified) as served:
        before = _data_version(served)
        write_data(files.data, 1)
        code, details = _refused(served, metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer <token>" in details
        assert _TOKEN not in details
        assert _data_version(served) == before
        assert _country(served) == country_of_version(0)
    assert notified.calls == 0


def test_token_reload_reports_the_new_versions(files: _Files, token_file: Path) -> None:
    notified = _Counter()
    with _serve(files, AdminConfig(token_file=token_file), notify_others=notified) as served:
        version_0 = _data_version(served)
        # Both files changed.
        data_1 = write_data(files.data, 1)
        policies_1 = write_policies(files.policies, 1)
        response = _reload(served, _BEARER)
        assert data_1 != version_0
        assert response.data_version.id == data_1
        assert response.policy_version == policies_1
        assert (response.data_changed, response.policies_changed) == (True, True)
        assert notified.calls == 1
        assert _country(served) == country_of_version(1)
        assert _country(served, STABLE_ADDRESS) == "AU"
        assert _data_version(served) == data_1
        # Nothing changed.
        response = _reload(served, _BEARER)
        assert (response.data_version.id, response.policy_version) == (data_1, policies_1)
        assert (response.data_changed, response.policies_changed) == (False, False)
        assert notified.calls == 2
        # Only the policies changed.
        policies_2 = write_policies(files.policies, 2)
        response = _reload(served, _BEARER)
        assert (response.data_version.id, response.policy_version) == (data_1, policies_2)
        assert (response.data_changed, response.policies_changed) == (False, True)
        assert notified.calls == 3
        # Only the data changed.
        data_3 = write_data(files.data, 3)
        response = _reload(served, _BEARER)
        assert (response.data_version.id, response.policy_version) == (data_3, policies_2)
        assert (response.data_changed, response.policies_changed) == (True, False)
        assert notified.calls == 4
        assert _country(served) == country_of_version(3)


def test_reload_of_a_broken_file_fails_and_keeps_the_old_version(
    files: _Files, token_file: Path
) -> None:
    with _serve(files, AdminConfig(token_file=token_file)) as served:
        version_0 = _data_version(served)
        write_data(files.data, 1)
        replace_atomically(files.policies, b"policies: 3\n")
        code, details = _refused(served, _BEARER)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "reload failed" in details
        assert f"still serving data {version_0}" in details
        assert str(files.policies) in details
        assert "'policies' must map policy names to policies, got the number 3" in details
        # The old data and the old policies still answer.
        assert _data_version(served) == version_0
        assert _country(served) == country_of_version(0)
        check = served.lookup.CheckRegion(
            pb.CheckRegionRequest(policy="deny-changing", addresses=[CHANGING_ADDRESS]),
            timeout=_TIMEOUT_S,
        )
        assert list(check.verdicts) == [pb.VERDICT_DENY]
        # A broken data file likewise.
        write_policies(files.policies, 1)
        replace_atomically(files.data, b"not a snapshot at all\n")
        code, details = _refused(served, _BEARER)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert f"still serving data {version_0}" in details
        assert str(files.data) in details
        assert _country(served) == country_of_version(0)
        # Fixed files reload.
        data_2 = write_data(files.data, 2)
        response = _reload(served, _BEARER)
        assert response.data_version.id == data_2
        assert _country(served) == country_of_version(2)


def test_lookups_never_need_admin_credentials(
    files: _Files, token_file: Path, certs: Certs
) -> None:
    admin = AdminConfig(token_file=token_file, mtls=True, allowed_names=("someone-else",))
    with _serve(files, admin, tls=_mtls(certs), client_tls=_client(certs)) as served:
        assert _country(served) == country_of_version(0)
        assert _country(served, STABLE_ADDRESS) == "AU"
        packed = served.lookup.LookupPacked(
            pb.PackedLookupRequest(ipv4=bytes([11, 0, 0, 1])), timeout=_TIMEOUT_S
        )
        assert packed.ipv4_countries == country_of_version(0).encode()
        assert len(_data_version(served)) == 64
        # While this client may not reload.
        code, _ = _refused(served, _BEARER)
        assert code == grpc.StatusCode.PERMISSION_DENIED
    with _serve(files, AdminConfig(token_file=token_file)) as served:
        assert _country(served) == country_of_version(0)


def _call_unloaded(token_file: Path, reload: Callable[[str], Any] | None) -> tuple[Any, str]:
    """Reload on a server whose data is not loaded yet; return the code and details."""
    config = ServerConfig(host="127.0.0.1", port=0, admin=AdminConfig(token_file=token_file))
    server = LookupServer(config, reload=reload).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            admin: Any = lookup_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as caught:
                admin.Reload(pb.ReloadRequest(), timeout=_TIMEOUT_S, metadata=_BEARER)
    finally:
        server.stop(0, drain_s=0)
    error: Any = caught.value
    return error.code(), str(error.details() or "")


def test_reload_without_a_reloader_is_unavailable(token_file: Path) -> None:
    assert _call_unloaded(token_file, None) == (
        grpc.StatusCode.UNAVAILABLE,
        "data not loaded yet",
    )


def test_reload_before_the_first_load_is_unavailable(token_file: Path) -> None:
    # What serve() passes as reload before its Loader has loaded.
    def not_loaded_yet(trigger: str) -> None:
        return None

    code, details = _call_unloaded(token_file, not_loaded_yet)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "not loaded" in details


# ---------------------------------------------------------------------------------------
# AdminConfig.loaded()


def test_loaded_reads_and_strips_the_token(
    token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = AdminConfig(token_file=token_file)
    assert config.token == ""
    with caplog.at_level(logging.WARNING, logger="lookupd.server.admin"):
        loaded = config.loaded()
    assert loaded.token == _TOKEN  # without the newline
    assert (loaded.token_file, loaded.mtls, loaded.allowed_names) == (token_file, False, ())
    assert loaded.enabled
    assert _TOKEN not in repr(loaded)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_loaded_without_a_token_file_is_the_same_config() -> None:
    config = AdminConfig(mtls=True, allowed_names=("a",))
    assert config.loaded() is config
    assert AdminConfig().loaded() == AdminConfig()
    assert not AdminConfig().enabled
    assert AdminConfig(mtls=True).enabled


def test_loaded_of_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    with pytest.raises(LookupdError, match="cannot read it") as caught:
        AdminConfig(token_file=missing).loaded()
    assert str(missing) in str(caught.value)
    with pytest.raises(LookupdError, match="cannot read it"):
        AdminConfig(token_file=tmp_path).loaded()  # a directory


@pytest.mark.parametrize("text", ["", "\n", "   \n\t\n"])
def test_loaded_of_an_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(LookupdError, match=r"admin token file .*: empty$"):
        AdminConfig(token_file=path).loaded()


def test_loaded_of_a_too_short_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 15 + "\n")
    path.chmod(0o600)
    with pytest.raises(LookupdError, match="the token must be at least 16 characters"):
        AdminConfig(token_file=path).loaded()
    path.write_text("x" * 16 + "\n")
    assert AdminConfig(token_file=path).loaded().token == "x" * 16


def test_loaded_of_a_token_file_others_can_read_warns(
    token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="lookupd.server.admin"):
        loaded = AdminConfig(token_file=token_file).loaded()
    assert loaded.token == _TOKEN
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.name == "lookupd.server.admin"
    message = warning.getMessage()
    assert str(token_file) in message
    assert "mode 644" in message
    assert "chmod 600" in message
    assert _TOKEN not in message


def test_server_refuses_to_build_with_a_bad_token_file(files: _Files, tmp_path: Path) -> None:
    config = ServerConfig(host="127.0.0.1", port=0, admin=AdminConfig(token_file=tmp_path / "x"))
    with pytest.raises(LookupdError, match="cannot read it"):
        LookupServer(config)


# ---------------------------------------------------------------------------------------
# mTLS


def test_mtls_allowed_name_may_reload(files: _Files, certs: Certs) -> None:
    notified = _Counter()
    admin = AdminConfig(mtls=True, allowed_names=("another-client", CLIENT_NAME))
    with _serve(
        files, admin, tls=_mtls(certs), client_tls=_client(certs), notify_others=notified
    ) as served:
        data_1 = write_data(files.data, 1)
        response = _reload(served)
        assert response.data_version.id == data_1
        assert (response.data_changed, response.policies_changed) == (True, False)
        assert _country(served) == country_of_version(1)
    assert notified.calls == 1


def test_mtls_name_not_allowed_is_denied(files: _Files, certs: Certs) -> None:
    notified = _Counter()
    admin = AdminConfig(mtls=True, allowed_names=("another-client",))
    with _serve(
        files, admin, tls=_mtls(certs), client_tls=_client(certs), notify_others=notified
    ) as served:
        write_data(files.data, 1)
        code, details = _refused(served)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert f"client certificate {CLIENT_NAME} is not allowed" in details
        assert _country(served) == country_of_version(0)
    assert notified.calls == 0


def test_mtls_without_allowed_names_allows_any_verified_certificate(
    files: _Files, certs: Certs
) -> None:
    with _serve(
        files, AdminConfig(mtls=True), tls=_mtls(certs), client_tls=_client(certs)
    ) as served:
        data_1 = write_data(files.data, 1)
        assert _reload(served).data_version.id == data_1


def test_mtls_admin_on_a_server_without_a_client_ca_is_denied(files: _Files, certs: Certs) -> None:
    # TLS without client_ca: gRPC asks for no client certificate, so no caller has names.
    tls = ServerTLS(certs.server_cert, certs.server_key)
    with _serve(files, AdminConfig(mtls=True), tls=tls, client_tls=_client(certs)) as served:
        code, details = _refused(served)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "need a client certificate" in details


def test_token_and_mtls_are_both_required(files: _Files, certs: Certs, token_file: Path) -> None:
    notified = _Counter()
    both = AdminConfig(token_file=token_file, mtls=True, allowed_names=(CLIENT_NAME,))
    with _serve(
        files, both, tls=_mtls(certs), client_tls=_client(certs), notify_others=notified
    ) as served:
        # The right certificate without the token.
        code, _ = _refused(served)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _ = _refused(served, (("authorization", "Bearer wrong-token-of-enough-length"),))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert notified.calls == 0
        # Both.
        data_1 = write_data(files.data, 1)
        assert _reload(served, _BEARER).data_version.id == data_1
        assert notified.calls == 1
    # The right token with a certificate whose name is not allowed.
    other = AdminConfig(token_file=token_file, mtls=True, allowed_names=("another-client",))
    with _serve(files, other, tls=_mtls(certs), client_tls=_client(certs)) as served:
        code, details = _refused(served, _BEARER)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert CLIENT_NAME in details
