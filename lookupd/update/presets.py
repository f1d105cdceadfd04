"""Presets: the documented download URLs of the data vendors lookupd reads.

Each preset turns a few options into one or more :class:`~lookupd.update.sources.Source`.
Every preset takes ``base_url`` to point it at a mirror (or, in the tests, at a local server
answering the same URL shapes): the vendors themselves cannot be reached from CI.

- ``maxmind``: GeoLite2/GeoIP2 from ``https://download.maxmind.com/geoip/databases/EDITION/
  download?suffix=tar.gz`` with HTTP basic auth (account ID, licence key), checked against
  ``suffix=tar.gz.sha256``; editions ending ``-CSV`` are the ``zip`` of CSVs.
- ``dbip``: DB-IP lite, ``https://download.db-ip.com/free/dbip-EDITION-YYYY-MM.csv.gz`` (or
  ``.mmdb.gz``), this month's file, last month's while this month's is not out (404).
- ``ip2location``: IP2Location LITE, ``https://www.ip2location.com/download/?token=TOKEN&
  file=DB1LITECSV`` (or ``DB1LITECSVIPV6``), a zip holding ``IP2LOCATION-LITE-DB1*.CSV``.
- ``ip-location-db``: ``https://cdn.jsdelivr.net/npm/@ip-location-db/DATASET/DATASET-ipv4.csv``
  and ``-ipv6.csv`` (or the ``DATASET-mmdb`` package's ``.mmdb`` files): two sources.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from lookupd.update.errors import ConfigError
from lookupd.update.secrets import Redactor, read_secret
from lookupd.update.sources import Source, url_source

MAXMIND_URL = "https://download.maxmind.com"
DBIP_URL = "https://download.db-ip.com"
IP2LOCATION_URL = "https://www.ip2location.com"
IP_LOCATION_DB_URL = "https://cdn.jsdelivr.net/npm/@ip-location-db"

_Options = Mapping[str, Any]


def _take(options: _Options, allowed: set[str], where: str) -> dict[str, Any]:
    unknown = set(options) - allowed
    if unknown:
        msg = f"{where}: unknown keys {', '.join(sorted(unknown))}"
        raise ConfigError(msg)
    return dict(options)


def _secret(options: _Options, key: str, where: str) -> str:
    return read_secret(
        env=options.get(f"{key}_env"), file=options.get(f"{key}_file"), what=f"{where}: {key}"
    )


def _base(options: _Options, default: str) -> str:
    return str(options.get("base_url") or default).rstrip("/")


def maxmind(options: _Options, redactor: Redactor, where: str) -> list[Source]:
    """MaxMind GeoLite2/GeoIP2: ``edition`` (default ``GeoLite2-Country``), credentials."""
    keys = {"edition", "base_url", "account_id_env", "account_id_file"}
    opts = _take(options, keys | {"license_key_env", "license_key_file"}, where)
    edition = str(opts.get("edition", "GeoLite2-Country"))
    account = _secret(opts, "account_id", where)
    licence = _secret(opts, "license_key", where)
    redactor.add(account, licence)
    csv = edition.endswith("-CSV")
    suffix = "zip" if csv else "tar.gz"
    url = f"{_base(opts, MAXMIND_URL)}/geoip/databases/{urllib.parse.quote(edition)}/download"
    source = url_source(
        f"{url}?suffix={suffix}",
        redactor,
        format="geolite2-csv" if csv else "mmdb",
        checksum_url=f"{url}?suffix={suffix}.sha256",
        extract=("*-Blocks-IPv4.csv", "*-Blocks-IPv6.csv", "*-Locations-en.csv")
        if csv
        else ("*.mmdb",),
        filename=f"{edition}.{suffix}",
        name=edition,
        where=where,
    )
    # Basic auth with the account ID and the licence key (MaxMind's documented scheme).
    return [_with_basic_auth(source, account, licence, redactor)]


def dbip(
    options: _Options,
    redactor: Redactor,
    where: str,
    *,
    today: Callable[[], datetime.date] = lambda: datetime.datetime.now(
        datetime.timezone.utc
    ).date(),
) -> list[Source]:
    """DB-IP lite: ``edition`` (``country-lite``), ``kind`` (``csv``/``mmdb``), ``month``."""
    opts = _take(options, {"edition", "kind", "month", "base_url"}, where)
    edition = str(opts.get("edition", "country-lite"))
    kind = str(opts.get("kind", "csv"))
    if kind not in ("csv", "mmdb"):
        msg = f"{where}: kind must be csv or mmdb, not {kind!r}"
        raise ConfigError(msg)
    base = _base(opts, DBIP_URL)
    day = today()
    month = str(opts.get("month") or f"{day:%Y-%m}")
    previous = (day.replace(day=1) - datetime.timedelta(days=1)).strftime("%Y-%m")

    def url(of: str) -> str:
        return f"{base}/free/dbip-{edition}-{of}.{kind}.gz"

    return [
        url_source(
            url(month),
            redactor,
            format="dbip-csv" if kind == "csv" else "mmdb",
            filename=f"dbip-{edition}.{kind}.gz",
            name=f"dbip-{edition}",
            fallback_url=None if opts.get("month") else url(previous),
            where=where,
        )
    ]


def ip2location(options: _Options, redactor: Redactor, where: str) -> list[Source]:
    """IP2Location LITE: ``token_env``/``token_file``, ``code`` (``DB1LITECSV``)."""
    opts = _take(options, {"code", "base_url", "token_env", "token_file"}, where)
    token = _secret(opts, "token", where)
    redactor.add(token)
    code = str(opts.get("code", "DB1LITECSV"))
    query = urllib.parse.urlencode({"token": token, "file": code})
    return [
        url_source(
            f"{_base(opts, IP2LOCATION_URL)}/download/?{query}",
            redactor,
            format="ip2location-csv",
            extract=("IP2LOCATION-LITE-DB1*.CSV",),
            filename=f"{code}.zip",
            name=code,
            where=where,
        )
    ]


def ip_location_db(options: _Options, redactor: Redactor, where: str) -> list[Source]:
    """ip-location-db: ``dataset`` (``geo-whois-asn-country``), ``kind`` (csv/mmdb)."""
    opts = _take(options, {"dataset", "kind", "base_url"}, where)
    dataset = str(opts.get("dataset", "geo-whois-asn-country"))
    kind = str(opts.get("kind", "csv"))
    if kind not in ("csv", "mmdb"):
        msg = f"{where}: kind must be csv or mmdb, not {kind!r}"
        raise ConfigError(msg)
    package = dataset if kind == "csv" else f"{dataset}-mmdb"
    base = _base(opts, IP_LOCATION_DB_URL)
    return [
        url_source(
            f"{base}/{package}/{dataset}-{family}.{kind}",
            redactor,
            format="location-csv" if kind == "csv" else "mmdb",
            name=f"{dataset}-{family}",
            where=where,
        )
        for family in ("ipv4", "ipv6")
    ]


def _with_basic_auth(source: Source, user: str, password: str, redactor: Redactor) -> Source:
    import base64
    import dataclasses

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    redactor.add(token)
    return dataclasses.replace(source, headers={"Authorization": f"Basic {token}"})


PRESETS: dict[str, Callable[[_Options, Redactor, str], list[Source]]] = {
    "maxmind": maxmind,
    "dbip": dbip,
    "ip2location": ip2location,
    "ip-location-db": ip_location_db,
}
"""Preset name -> the function turning its options into sources."""


def preset_sources(name: str, options: _Options, redactor: Redactor, *, where: str) -> list[Source]:
    """Return the sources of preset ``name`` with ``options``.

    Raises:
        ConfigError: unknown preset or option, or a credential that cannot be read.
    """
    if name not in PRESETS:
        msg = f"{where}: unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        raise ConfigError(msg)
    return PRESETS[name](options, redactor, f"{where} ({name})")
