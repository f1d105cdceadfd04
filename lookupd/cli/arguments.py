"""Argument types shared by the commands' parsers."""

from __future__ import annotations

import argparse


def whole_number(text: str) -> int:
    """A count, 0 or more (``--limit``, ``--trusted-hops``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"not a whole number, 0 or more: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value
