"""ISO 3166 checks of labels: countries, subdivisions, non-ISO labels, did-you-mean."""

from __future__ import annotations

import pytest

import lookupd
from lookupd.core.labels import split_label
from lookupd.policies import iso3166


@pytest.mark.parametrize("code", ["US", "DE", "UA", "GB", "CW", "SX", "BQ", "SS", "AQ", "UM"])
def test_assigned_countries(code: str) -> None:
    assert iso3166.is_country(code)


@pytest.mark.parametrize(
    "code",
    [
        "EU",  # European Union: exceptionally reserved, not a country
        "AP",  # Asia/Pacific: a registry region
        "XK",  # Kosovo: user-assigned
        "ZZ",  # unknown: user-assigned
        "A1",  # anonymous proxy (legacy GeoIP)
        "A2",  # satellite provider (legacy GeoIP)
        "T1",  # Tor exit (legacy data)
        "AN",  # Netherlands Antilles: withdrawn 2010
        "UK",  # reserved for GB
        "us",  # ISO codes are upper case
        "USA",
        "",
        "U",
        "UA-43",
    ],
)
def test_not_countries(code: str) -> None:
    assert not iso3166.is_country(code)


def test_countries_are_the_249_assigned_codes() -> None:
    assert len(iso3166.countries()) == 249
    assert iso3166.countries() is iso3166.countries()  # built once


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("UA-43", True),  # Crimea
        ("UA-30", True),  # Kyiv
        ("US-CA", True),
        ("GB-ENG", True),
        ("FR-75C", True),
        ("UA-99", False),
        ("US-XX", False),
        ("UA", False),
        ("ua-43", False),
        ("", False),
    ],
)
def test_subdivisions(code: str, expected: bool) -> None:
    assert iso3166.is_subdivision(code) is expected


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("UA-43", ("UA", "UA-43")),
        ("US-CA", ("US", "US-CA")),
        ("GB-ENG", ("GB", "GB-ENG")),
        ("US", ("US", None)),
        ("EU", ("EU", None)),
        ("", ("", None)),
        ("-", ("", "-")),
    ],
)
def test_split_label(label: str, expected: tuple[str, str | None]) -> None:
    assert split_label(label) == expected


def test_non_iso_labels() -> None:
    labels = ["", "US", "DE", "UA-43", "EU", "AP", "XK", "ZZ", "A1", "T1", "AN", "UA-99", "ZZ-1"]
    labels += ["us", "US", "EU"]
    expected = ["A1", "AN", "AP", "EU", "T1", "UA-99", "XK", "ZZ", "ZZ-1", "us"]
    assert iso3166.non_iso_labels(labels) == expected
    assert iso3166.non_iso_labels(["US", "UA-43", ""]) == []
    assert iso3166.non_iso_labels([]) == []


def test_non_iso_labels_of_the_embedded_data() -> None:
    # This release of geo-whois-asn-country has no EU or AP rows: its only non-ISO codes
    # are Kosovo and the withdrawn Netherlands Antilles.
    assert iso3166.non_iso_labels(lookupd.open().label_names) == ["AN", "XK"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # Unambiguous: the answer comes alone.
        ("us", ["US"]),
        (" de ", ["DE"]),
        ("USA", ["US"]),
        ("deu", ["DE"]),
        ("840", ["US"]),
        ("Germany", ["DE"]),
        ("UK", ["GB"]),
        ("uk", ["GB"]),
        ("EL", ["GR"]),
        # Withdrawn codes: their successors first, then near typos.
        ("MI", ["UM", "IM", "MO", "MU", "NI"]),  # Midway Islands -> US Minor Outlying Is.
        ("ZR", ["CD", "AR", "SR"]),  # Zaire
        ("AN", ["CW", "SX", "BQ", "NA", "AM"]),  # Netherlands Antilles
        ("SU", ["RU", "US", "SI", "SY", "AU"]),  # USSR, and the swapped letters
        ("FX", ["FR", "CX"]),  # Metropolitan France
        ("TP", ["TL", "PT", "TO", "GP"]),  # East Timor
        # Typos: swapped letters, look-alike digits, QWERTY neighbours.
        ("N0", ["NO"]),
        ("5E", ["SE"]),
        ("GX", ["GD", "GS"]),
        ("XY", ["CY", "SY"]),
        # Nothing to suggest: already assigned, on purpose, or nothing near.
        ("US", []),
        ("EU", []),
        ("AP", []),
        ("XK", []),
        ("ZZ", []),
        ("A1", []),
        ("T1", []),
        ("", []),
        ("Q", []),
        ("Atlantis", []),
        ("UA-43", []),
    ],
)
def test_suggest_country(code: str, expected: list[str]) -> None:
    assert iso3166.suggest_country(code) == expected


def test_suggest_country_limit() -> None:
    assert iso3166.suggest_country("MI", limit=2) == ["UM", "IM"]
    assert iso3166.suggest_country("MI", limit=20)[5:] == ["MK", "KI"]
    assert all(iso3166.is_country(c) for c in iso3166.suggest_country("MI", limit=20))
