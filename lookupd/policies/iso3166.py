"""Check labels against ISO 3166-1 (countries) and ISO 3166-2 (subdivisions); suggest fixes.

Geolocation data uses a few codes that are not ISO 3166-1 countries: regional codes (``EU``
Europe, ``AP`` Asia/Pacific), user-assigned ones (``XK`` Kosovo, ``ZZ`` unknown, ``A1``/``A2``
anonymous proxy/satellite, ``T1`` Tor), and withdrawn ones (``AN`` Netherlands Antilles).
lookupd keeps them as labels; this module tells them apart so they can be reported.

The code lists come from ``pycountry`` (its ISO 3166 data), loaded on first use and kept as
frozensets. Codes are compared as written: ISO codes are upper case, so ``us`` is not one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import pycountry

from lookupd.core.labels import split_label

# Codes ISO 3166 reserves for a country that has another code: no doubt what was meant.
_RESERVED_FOR: dict[str, str] = {
    "UK": "GB",  # exceptionally reserved for the United Kingdom
    "EL": "GR",  # the European Union's code for Greece
}
# Withdrawn codes whose ISO 3166-3 entry names no single successor, mapped to the codes now
# in use, likeliest first.
_SUCCESSORS: dict[str, tuple[str, ...]] = {
    "AN": ("CW", "SX", "BQ"),  # Netherlands Antilles, split 2010
    "CS": ("RS", "ME"),  # Serbia and Montenegro (also Czechoslovakia: CZ, SK)
    "YU": ("RS", "ME"),  # Yugoslavia
    "SU": ("RU",),  # USSR
    "NT": ("SA", "IQ"),  # Saudi-Iraqi Neutral Zone
}
DATA_CONVENTIONS = frozenset({"EU", "AP", "XK", "ZZ", "XX", "A1", "A2", "O1", "T1"})
"""Codes geolocation data uses on purpose (regions, Kosovo, unknown, proxies, satellite,
Tor): not typos of a country, so :func:`suggest_country` suggests nothing for them."""
# ISO 3166-3 four-letter codes end in this when the country has no single successor.
_NO_SINGLE_SUCCESSOR = ("HH", "XX")
# Digits that a code typed from a scan or by hand may carry instead of letters.
_LOOKALIKES = {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z"}
_KEYBOARD_ROWS = ("QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM")
# Two letters this far apart or closer on a QWERTY keyboard are taken as a slip of a finger.
_NEAR_KEYS = 1.6


@functools.cache
def countries() -> frozenset[str]:
    """Return every officially assigned ISO 3166-1 alpha-2 code."""
    return frozenset(country.alpha_2 for country in pycountry.countries)


@functools.cache
def subdivisions() -> frozenset[str]:
    """Return every ISO 3166-2 subdivision code (``UA-43``, ``US-CA``, ...)."""
    return frozenset(subdivision.code for subdivision in pycountry.subdivisions)


def is_country(code: str) -> bool:
    """Tell whether ``code`` is an officially assigned ISO 3166-1 alpha-2 code.

    ``EU``, ``AP``, ``XK``, ``ZZ``, ``A1``, ``T1`` and withdrawn codes such as ``AN`` are not.
    """
    return code in countries()


def is_subdivision(code: str) -> bool:
    """Tell whether ``code`` is an ISO 3166-2 subdivision code such as ``UA-43``."""
    return code in subdivisions()


def non_iso_labels(labels: Iterable[str]) -> list[str]:
    """Return the labels that are not ISO codes, sorted, each once.

    A label is not ISO when its country part is not an ISO 3166-1 alpha-2 code, or it has a
    subdivision that is not an ISO 3166-2 code. The empty label (lookupd's "unknown", index
    0 of every label table) is skipped.
    """
    found: set[str] = set()
    for label in labels:
        if not label:
            continue
        country, subdivision = split_label(label)
        if not is_country(country) or (subdivision is not None and not is_subdivision(label)):
            found.add(label)
    return sorted(found)


def suggest_country(code: str, limit: int = 5) -> list[str]:
    """Suggest assigned ISO 3166-1 alpha-2 codes that ``code`` may have been meant as.

    For a configuration that names a country wrongly ("did you mean ...?"). An unambiguous
    answer comes alone: the same code in upper case (``us`` -> ``US``), the alpha-2 code of
    an alpha-3 or numeric code or of an exact country name (``USA``, ``840``, ``Germany``),
    or the code a reserved code stands for (``UK`` -> ``GB``, ``EL`` -> ``GR``). Otherwise
    the candidates, best first, are:

    1. the successor of a withdrawn code (``MI`` Midway Islands -> ``UM``, ``ZR`` ->
       ``CD``, ``AN`` -> ``CW``, ``SX``, ``BQ``);
    2. the two letters swapped (``SU`` -> ``US``, after its successor ``RU``);
    3. one letter changed: a digit for the letter it looks like (``N0`` -> ``NO``) first,
       then keys next to each other on a QWERTY keyboard, nearest first, keeping the
       first letter before keeping the second (``MI`` -> ``MO``, ``MU``, ``NI``, ``MK``).

    Only QWERTY neighbours count as slips: letters further apart (``MI`` -> ``MP``) would
    make every code suggest a dozen others. Returns an empty list for an assigned code, for
    the codes data uses on purpose (:data:`DATA_CONVENTIONS`: ``EU``, ``XK``, ``ZZ``, ...),
    and when nothing is close.
    """
    text = code.strip()
    upper = text.upper()
    if is_country(code) or not text or upper in DATA_CONVENTIONS:
        return []
    exact = (upper, _RESERVED_FOR.get(upper, ""), *_from_other_forms(text))
    certain = [c for c in dict.fromkeys(exact) if is_country(c)]
    if certain:
        return certain[:limit]
    found: list[str] = []

    def offer(*candidates: str) -> None:
        for candidate in candidates:
            if is_country(candidate) and candidate not in found:
                found.append(candidate)

    offer(*_successors(upper))
    if len(upper) == 2:
        offer(upper[::-1])
        offer(*(candidate for _, candidate in sorted(_one_letter_changes(upper))))
    return found[:limit]


def _from_other_forms(text: str) -> list[str]:
    """Alpha-2 codes for an alpha-3 code, a numeric code, or an exact name."""
    try:
        country = pycountry.countries.lookup(text)
    except LookupError:
        return []
    return [country.alpha_2]


def _successors(code: str) -> tuple[str, ...]:
    if code in _SUCCESSORS:
        return _SUCCESSORS[code]
    for historic in _historic(code):
        successor = historic[2:]
        if successor not in _NO_SINGLE_SUCCESSOR:
            return (successor,)
    return ()


@functools.cache
def _historic_codes() -> dict[str, tuple[str, ...]]:
    """Withdrawn alpha-2 code -> its ISO 3166-3 four-letter codes."""
    codes: dict[str, tuple[str, ...]] = {}
    for country in pycountry.historic_countries:
        codes[country.alpha_2] = (*codes.get(country.alpha_2, ()), country.alpha_4)
    return codes


def _historic(code: str) -> tuple[str, ...]:
    return _historic_codes().get(code, ())


def _one_letter_changes(code: str) -> list[tuple[tuple[int, float, int], str]]:
    """Assigned codes one letter away from ``code``, with a sort key (best first)."""
    changes: list[tuple[tuple[int, float, int], str]] = []
    for position in (1, 0):
        typed = code[position]
        for letter in map(chr, range(ord("A"), ord("Z") + 1)):
            if letter == typed:
                continue
            candidate = code[:position] + letter + code[position + 1 :]
            if not is_country(candidate):
                continue
            if _LOOKALIKES.get(typed) == letter:
                changes.append(((0, 0.0, 1 - position), candidate))
                continue
            distance = _key_distance(typed, letter)
            if distance <= _NEAR_KEYS:
                # Keeping the first letter (changing position 1) ranks first on ties.
                changes.append(((1, distance, 1 - position), candidate))
    return changes


@functools.cache
def _key_positions() -> dict[str, tuple[float, float]]:
    """QWERTY key -> (column, row), with the rows' real stagger."""
    positions: dict[str, tuple[float, float]] = {}
    for row, (keys, offset) in enumerate(zip(_KEYBOARD_ROWS, (0.0, 0.25, 0.75), strict=True)):
        for column, key in enumerate(keys):
            positions[key] = (column + offset, float(row))
    return positions


def _key_distance(a: str, b: str) -> float:
    positions = _key_positions()
    if a not in positions or b not in positions:
        return math.inf
    (ax, ay), (bx, by) = positions[a], positions[b]
    return math.hypot(ax - bx, ay - by)
