"""Opening operators' files: only regular files, never blocking, bounded in size."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from lookupd.errors import LookupdError
from lookupd.files import FileTooLargeError, NotARegularFileError, open_regular, read_regular


def test_a_regular_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with open_regular(path) as handle:
        assert handle.read() == b"abc"
    assert read_regular(path, limit=3) == b"abc"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    # Opening a FIFO with no writer blocks for ever unless the open is non-blocking.
    path = tmp_path / "policies.yaml"
    os.mkfifo(path)
    with pytest.raises(NotARegularFileError, match="is a FIFO, not a regular file"):
        open_regular(path)


def test_a_directory_and_a_socket_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotARegularFileError, match="is a directory"):
        open_regular(tmp_path)
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(OSError):  # ENXIO: a socket cannot be opened at all
            open_regular(path)


def test_a_device_is_refused() -> None:
    with pytest.raises(NotARegularFileError, match="is a device"):
        open_regular("/dev/zero")


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 11)
    with pytest.raises(FileTooLargeError, match="larger than 10 bytes"):
        read_regular(path, limit=10)
    assert issubclass(FileTooLargeError, LookupdError)
