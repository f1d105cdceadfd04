"""The admin RPCs (``lookupd.v1.AdminService``): off unless enabled, then authenticated.

Enabled by a token file (callers send ``authorization: Bearer <token>`` metadata), by mTLS
(callers present a client certificate the server's client CA signed, optionally with one
of a list of names), or both (then both are required). Lookups never need any of it.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import grpc

from lookupd.errors import LookupdError
from lookupd.files import read_regular
from lookupd.server.logs import log_event
from lookupd.server.reload import ReloadOutcome
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

_LOGGER = logging.getLogger(__name__)

# A token is a line; a file much larger is not a token file.
_MOST_TOKEN_BYTES = 64 << 10
# The token files (and modes) already warned about: the check before the start and the
# server itself (and each worker forked after it) load the same file, and one warning is
# enough.
_WARNED: set[tuple[str, int]] = set()

_DISABLED = (
    "admin RPCs are off on this server: start it with --admin-token-file or --admin-mtls "
    "to enable them"
)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """Who may call the admin RPCs. Neither a token file nor mTLS: nobody (off)."""

    token_file: Path | None = None
    """A file holding the token callers must send (read once, at start)."""
    mtls: bool = False
    """Require a verified client certificate (the server needs a client CA)."""
    allowed_names: tuple[str, ...] = ()
    """With ``mtls``: the certificate names (CN or SAN) allowed; empty allows any."""
    token: str = field(default="", repr=False)
    """The token, once :meth:`loaded` has read it."""

    @property
    def enabled(self) -> bool:
        """Whether any caller may use the admin RPCs."""
        return self.token_file is not None or self.mtls

    def loaded(self) -> AdminConfig:
        """Return a copy with the token read from ``token_file``.

        A file others may read is loaded with a warning.

        Raises:
            LookupdError: the file cannot be read, is empty, or its token is too short.
        """
        if self.token_file is None:
            return self
        try:
            text = read_regular(self.token_file, limit=_MOST_TOKEN_BYTES).decode().strip()
            mode = os.stat(self.token_file).st_mode
        except (OSError, UnicodeDecodeError, LookupdError) as exc:
            msg = f"admin token file {self.token_file}: cannot read it: {exc}"
            raise LookupdError(msg) from exc
        if not text:
            msg = f"admin token file {self.token_file}: empty"
            raise LookupdError(msg)
        if len(text) < 16:
            msg = f"admin token file {self.token_file}: the token must be at least 16 characters"
            raise LookupdError(msg)
        if mode & 0o077 and (str(self.token_file), mode) not in _WARNED:
            _WARNED.add((str(self.token_file), mode))
            _LOGGER.warning(
                "admin token file %s can be read by other users (mode %o): chmod 600 it",
                self.token_file,
                mode & 0o777,
            )
        return AdminConfig(self.token_file, self.mtls, self.allowed_names, token=text)


class AdminServicer(lookup_pb2_grpc.AdminServiceServicer):
    """``lookupd.v1.AdminService``: every call is authorised before anything changes.

    Args:
        config: who may call (a :meth:`AdminConfig.loaded` one).
        reload: reloads this process's data and policies (None: before the first load).
        notify_others: tells the other worker processes to reload (multi-process serving).
    """

    def __init__(
        self,
        config: AdminConfig,
        reload: Callable[[str], ReloadOutcome | None] | None,
        notify_others: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._reload = reload
        self._notify_others = notify_others

    def Reload(self, request: pb.ReloadRequest, context: grpc.ServicerContext) -> pb.ReloadResponse:
        """Reload the data and policies of this process (and ask the others to)."""
        caller = self._authorise(context)
        outcome = None
        if self._reload is not None:
            log_event(_LOGGER, logging.INFO, "admin", "admin reload requested", caller=caller)
            outcome = self._reload("admin")
        if outcome is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "data not loaded yet")
        if outcome.busy:
            # Never wait for it: it may be slow, and every call thread could end up waiting.
            context.abort(grpc.StatusCode.ABORTED, outcome.error)
        if outcome.ok and self._notify_others is not None:
            # The other workers follow. Not after a failure: they would read the same files.
            self._notify_others()
        policy_set = outcome.answerer.policy_set
        if not outcome.ok:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"reload failed, still serving data {outcome.answerer.version.id}: {outcome.error}",
            )
        return pb.ReloadResponse(
            data_version=outcome.answerer.version_message(),
            policy_version=policy_set.version if policy_set is not None else "",
            data_changed=outcome.data_changed,
            policies_changed=outcome.policies_changed,
        )

    def _authorise(self, context: grpc.ServicerContext) -> str:
        """Return who is calling, or end the call with the reason it may not."""
        config = self._config
        if not config.enabled:
            _deny(context, grpc.StatusCode.PERMISSION_DENIED, _DISABLED)
        caller = context.peer()
        if config.token:
            sent = dict(context.invocation_metadata()).get("authorization", "")
            expected = f"Bearer {config.token}"
            if not isinstance(sent, str) or not hmac.compare_digest(
                sent.encode(), expected.encode()
            ):
                _deny(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    "admin RPCs need the admin token as 'authorization: Bearer <token>' metadata",
                )
        if config.mtls:
            from lookupd.server.tls import peer_identities

            names = peer_identities(context)
            if not names:
                _deny(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "admin RPCs need a client certificate (mTLS)",
                )
            if config.allowed_names and not set(names) & set(config.allowed_names):
                _deny(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client certificate {', '.join(names)} is not allowed admin RPCs",
                )
            caller = f"{caller} ({', '.join(names)})"
        return caller


def _deny(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    log_event(
        _LOGGER,
        logging.WARNING,
        "admin_denied",
        "admin call refused",
        peer=context.peer(),
        code=code.name,
    )
    context.abort(code, message)


def parse_names(text: str | None) -> tuple[str, ...]:
    """Names from a comma-separated setting, blanks dropped."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())
