"""The installed lookupd's version, as its package metadata gives it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lookupd")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
