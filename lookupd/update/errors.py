"""Why an update failed: one error class per reason, each naming its metrics label."""

from __future__ import annotations

from lookupd.errors import LookupdError


class UpdateError(LookupdError):
    """An update failed; the current snapshot is untouched."""

    reason = "error"
    """The ``reason`` label of ``lookupd_update_failures_total``."""


class ConfigError(UpdateError):
    """The update configuration (file or flags) is invalid, or a credential is missing."""

    reason = "config"


class DownloadError(UpdateError):
    """A source could not be downloaded: HTTP error, timeout, truncated or oversized body."""

    reason = "download"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of the last answer, if there was one."""


class ChecksumError(UpdateError):
    """A download's SHA-256 is not the one expected."""

    reason = "checksum"


class ArchiveError(UpdateError):
    """An archive is unsafe (path escape, link, device, bomb) or lacks the needed members."""

    reason = "archive"


class BuildError(UpdateError):
    """The downloaded files could not be read or built into a snapshot."""

    reason = "build"


class LockedError(UpdateError):
    """Another ``lookupd update`` holds the lock on the same output."""

    reason = "locked"
