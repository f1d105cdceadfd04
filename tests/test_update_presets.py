"""Each preset's URL shape, credentials and unpacking, against a local origin serving the
vendors' shapes (the vendors themselves cannot be reached from the tests)."""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import io
import lzma
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA_DIR
from origin import Origin, Reply, running_origin
from update_data import country

from lookupd.update.config import load_config
from lookupd.update.errors import ConfigError
from lookupd.update.http import Policy
from lookupd.update.presets import dbip, preset_sources
from lookupd.update.run import Outcome, Settings, update_once
from lookupd.update.secrets import Redactor
from lookupd.update.sources import Source

_POLICY = Policy(timeout_s=5, attempts=1)
_MMDB = DATA_DIR / "maxmind-test" / "test-data" / "GeoLite2-Country-Test.mmdb"
_ACCOUNT, _KEY = "123456", "li-cen-ce_KEY_s3cret"
_BASIC = "Basic " + base64.b64encode(f"{_ACCOUNT}:{_KEY}".encode()).decode()


@pytest.fixture
def origin() -> Iterator[Origin]:
    with running_origin() as server:
        yield server


@pytest.fixture
def maxmind_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MM_ACCOUNT", _ACCOUNT)
    monkeypatch.setenv("MM_KEY", _KEY)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, body in members.items():
            bundle.writestr(name, body)
    return buffer.getvalue()


def _run(sources: list[Source], tmp_path: Path) -> tuple[Settings, Outcome, str | None]:
    settings = Settings(tmp_path / "countries.lkd", policy=_POLICY)
    result = update_once(sources, settings)
    return settings, result.outcome, result.error


def test_maxmind_mmdb_edition(origin: Origin, tmp_path: Path, maxmind_env: None) -> None:
    archive = _tar_gz(
        {
            "GeoLite2-Country_20261201/GeoLite2-Country.mmdb": _MMDB.read_bytes(),
            "GeoLite2-Country_20261201/LICENSE.txt": b"licence",
        }
    )
    digest = hashlib.sha256(archive).hexdigest()
    path = "/geoip/databases/GeoLite2-Country/download"
    disposition = {"Content-Disposition": "attachment; filename=GeoLite2-Country_20261201.tar.gz"}
    origin.serve(
        f"{path}?suffix=tar.gz",
        Reply(body=archive, headers=disposition, etag='"v1"', require_auth=_BASIC),
    )
    origin.serve(
        f"{path}?suffix=tar.gz.sha256",
        Reply(body=f"{digest}  GeoLite2-Country_20261201.tar.gz\n".encode(), require_auth=_BASIC),
    )
    options = {
        "edition": "GeoLite2-Country",
        "account_id_env": "MM_ACCOUNT",
        "license_key_env": "MM_KEY",
        "base_url": origin.url(""),
    }
    redactor = Redactor()
    sources = preset_sources("maxmind", options, redactor, where="test")
    assert [s.format for s in sources] == ["mmdb"]
    settings, outcome, error = _run(sources, tmp_path)
    assert outcome is Outcome.UPDATED, error
    assert country(settings.output, "2.125.160.216") == "GB"
    hits = origin.hits(path)
    assert [h.query["suffix"] for h in hits] == [["tar.gz"], ["tar.gz.sha256"]]
    assert {h.headers["Authorization"] for h in hits} == {_BASIC}
    # The licence key never travels in the URL, and the redactor knows it.
    assert all(_KEY not in str(h.query) for h in hits)
    assert redactor(f"x {_KEY} {_BASIC}") == "x *** Basic ***"
    # A second run sends the ETag and gets a 304 (with the credentials again).
    again = update_once(sources, settings)
    assert again.outcome is Outcome.UNCHANGED
    assert origin.hits(path)[-1].headers["If-None-Match"] == '"v1"'


def test_maxmind_wrong_credentials_fail_with_401(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MM_ACCOUNT", _ACCOUNT)
    monkeypatch.setenv("MM_KEY", "wrong-key-value")
    origin.serve(
        "/geoip/databases/GeoLite2-Country/download", Reply(body=b"x", require_auth=_BASIC)
    )
    options = {
        "account_id_env": "MM_ACCOUNT",
        "license_key_env": "MM_KEY",
        "base_url": origin.url(""),
    }
    sources = preset_sources("maxmind", options, Redactor(), where="test")
    _, outcome, error = _run(sources, tmp_path)
    assert outcome is Outcome.FAILED
    assert "HTTP 401" in (error or "")
    assert "wrong-key-value" not in (error or "")
    assert len(origin.hits("/geoip/databases/GeoLite2-Country/download")) == 1


def test_maxmind_csv_edition_extracts_blocks_and_english_locations(
    origin: Origin, tmp_path: Path, maxmind_env: None
) -> None:
    blocks = (
        "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,"
        "is_anonymous_proxy,is_satellite_provider\n"
    )
    locations = (
        "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,"
        "is_in_european_union\n2077456,en,OC,Oceania,AU,Australia,0\n"
    )
    prefix = "GeoLite2-Country-CSV_20261201/GeoLite2-Country"
    archive = _zip(
        {
            f"{prefix}-Blocks-IPv4.csv": (blocks + "1.0.0.0/24,2077456,2077456,,0,0\n").encode(),
            f"{prefix}-Blocks-IPv6.csv": (blocks + "2001:db8::/32,2077456,,,0,0\n").encode(),
            f"{prefix}-Locations-en.csv": locations.encode(),
            f"{prefix}-Locations-de.csv": b"not read",
            "GeoLite2-Country-CSV_20261201/COPYRIGHT.txt": b"c",
        }
    )
    path = "/geoip/databases/GeoLite2-Country-CSV/download"
    digest = hashlib.sha256(archive).hexdigest()
    origin.serve(f"{path}?suffix=zip", Reply(body=archive, require_auth=_BASIC))
    origin.serve(f"{path}?suffix=zip.sha256", Reply(body=digest.encode(), require_auth=_BASIC))
    options = {
        "edition": "GeoLite2-Country-CSV",
        "account_id_env": "MM_ACCOUNT",
        "license_key_env": "MM_KEY",
        "base_url": origin.url(""),
    }
    sources = preset_sources("maxmind", options, Redactor(), where="test")
    settings, outcome, error = _run(sources, tmp_path)
    assert outcome is Outcome.UPDATED, error
    assert country(settings.output, "1.0.0.1") == "AU"
    cached = sorted(p.name for p in settings.output.parent.glob(".countries.lkd.sources/*/*"))
    assert cached == [
        "GeoLite2-Country-Blocks-IPv4.csv",
        "GeoLite2-Country-Blocks-IPv6.csv",
        "GeoLite2-Country-Locations-en.csv",
    ]


def test_maxmind_needs_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MM_KEY", raising=False)
    monkeypatch.setenv("MM_ACCOUNT", _ACCOUNT)
    options = {"account_id_env": "MM_ACCOUNT", "license_key_env": "MM_KEY"}
    with pytest.raises(ConfigError, match="MM_KEY is not set"):
        preset_sources("maxmind", options, Redactor(), where="test")


def test_dbip_takes_this_month_and_falls_back_to_the_last(origin: Origin, tmp_path: Path) -> None:
    body = gzip.compress(b"1.0.0.0,1.0.0.255,AU\n2001:db8::,2001:db8::ffff,NZ\n")
    origin.serve("/free/dbip-country-lite-2026-11.csv.gz", Reply(body=body))
    options = {"base_url": origin.url("")}
    today = datetime.date(2026, 12, 2)
    sources = dbip(options, Redactor(), "test", today=lambda: today)
    (source,) = sources
    assert source.url == origin.url("/free/dbip-country-lite-2026-12.csv.gz")
    assert source.format == "dbip-csv"
    settings, outcome, error = _run(sources, tmp_path)
    assert outcome is Outcome.UPDATED, error
    assert [h.path for h in origin.requests] == [
        "/free/dbip-country-lite-2026-12.csv.gz",
        "/free/dbip-country-lite-2026-11.csv.gz",
    ]
    assert country(settings.output, "1.0.0.1") == "AU"


def test_dbip_mmdb_is_unpacked_once(origin: Origin, tmp_path: Path) -> None:
    origin.serve(
        "/free/dbip-country-lite-2026-12.mmdb.gz", Reply(body=gzip.compress(_MMDB.read_bytes()))
    )
    options = {"base_url": origin.url(""), "kind": "mmdb"}
    sources = dbip(options, Redactor(), "test", today=lambda: datetime.date(2026, 12, 2))
    settings, outcome, error = _run(sources, tmp_path)
    assert outcome is Outcome.UPDATED, error
    assert country(settings.output, "2.125.160.216") == "GB"


def test_ip2location_token_and_zip(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "ip2l-T0KEN-value"
    monkeypatch.setenv("IP2L_TOKEN", token)
    rows = b'"16777216","16777471","AU","Australia"\n"16777472","16778239","-","-"\n'
    origin.serve(
        "/download/",
        Reply(body=_zip({"IP2LOCATION-LITE-DB1.CSV": rows, "README_LITE.TXT": b"r"})),
    )
    redactor = Redactor()
    options = {"token_env": "IP2L_TOKEN", "base_url": origin.url("")}
    sources = preset_sources("ip2location", options, redactor, where="test")
    assert redactor(sources[0].url or "") == origin.url("/download/?token=***&file=DB1LITECSV")
    settings, outcome, error = _run(sources, tmp_path)
    assert outcome is Outcome.UPDATED, error
    (hit,) = origin.hits("/download/")
    assert hit.query == {"token": [token], "file": ["DB1LITECSV"]}
    assert country(settings.output, "1.0.0.1") == "AU"


def test_ip_location_db_is_two_csv_sources(origin: Origin, tmp_path: Path) -> None:
    folder = DATA_DIR / "geo-whois-asn-country"
    for family in ("ipv4", "ipv6"):
        text = lzma.decompress((folder / f"geo-whois-asn-country-{family}.csv.xz").read_bytes())
        head = b"".join(text.splitlines(keepends=True)[:500])
        origin.file(f"/geo-whois-asn-country/geo-whois-asn-country-{family}.csv", head)
    sources = preset_sources(
        "ip-location-db", {"base_url": origin.url("")}, Redactor(), where="test"
    )
    assert [s.name for s in sources] == [
        "geo-whois-asn-country-ipv4",
        "geo-whois-asn-country-ipv6",
    ]
    assert [s.format for s in sources] == ["location-csv", "location-csv"]
    settings, outcome, error = _run(sources, tmp_path)
    assert outcome is Outcome.UPDATED, error
    assert country(settings.output, "1.0.0.1") == "AU"
    mmdb = preset_sources(
        "ip-location-db",
        {"kind": "mmdb", "base_url": "https://m.example/npm"},
        Redactor(),
        where="t",
    )
    assert [s.url for s in mmdb] == [
        "https://m.example/npm/geo-whois-asn-country-mmdb/geo-whois-asn-country-ipv4.mmdb",
        "https://m.example/npm/geo-whois-asn-country-mmdb/geo-whois-asn-country-ipv6.mmdb",
    ]


def test_default_urls_are_the_vendors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MM_ACCOUNT", _ACCOUNT)
    monkeypatch.setenv("MM_KEY", _KEY)
    monkeypatch.setenv("IP2L_TOKEN", "t")
    redactor = Redactor()
    (mm,) = preset_sources(
        "maxmind",
        {"edition": "GeoLite2-City", "account_id_env": "MM_ACCOUNT", "license_key_env": "MM_KEY"},
        redactor,
        where="t",
    )
    assert (
        mm.url
        == "https://download.maxmind.com/geoip/databases/GeoLite2-City/download?suffix=tar.gz"
    )
    assert mm.checksum_url == mm.url + ".sha256"
    (ip2l,) = preset_sources(
        "ip2location", {"token_env": "IP2L_TOKEN", "code": "DB1LITECSVIPV6"}, redactor, where="t"
    )
    assert ip2l.url == "https://www.ip2location.com/download/?token=t&file=DB1LITECSVIPV6"
    (db,) = dbip({}, redactor, "t", today=lambda: datetime.date(2027, 1, 5))
    assert db.url == "https://download.db-ip.com/free/dbip-country-lite-2027-01.csv.gz"
    assert db.fallback_url == "https://download.db-ip.com/free/dbip-country-lite-2026-12.csv.gz"
    ild = preset_sources("ip-location-db", {}, redactor, where="t")
    assert ild[0].url == (
        "https://cdn.jsdelivr.net/npm/@ip-location-db/geo-whois-asn-country/"
        "geo-whois-asn-country-ipv4.csv"
    )


def test_a_config_file_lists_presets_urls_and_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MM_ACCOUNT", _ACCOUNT)
    (tmp_path / "key").write_text(_KEY + "\n")
    config = tmp_path / "update.yaml"
    config.write_text(
        f"""
output: {tmp_path}/countries.lkd
max_change: 0.1
sources:
  - preset: maxmind
    account_id_env: MM_ACCOUNT
    license_key_file: {tmp_path}/key
  - url: https://mirror.example/extra.csv.gz
    format: location-csv
    sha256: {"a" * 64}
  - path: {tmp_path}/corrections.csv
"""
    )
    redactor = Redactor()
    sources, settings = load_config(config, redactor)
    assert [s.name for s in sources] == ["GeoLite2-Country", "extra.csv.gz", "corrections.csv"]
    assert settings == {"output": f"{tmp_path}/countries.lkd", "max_change": 0.1}
    assert redactor(_KEY) == "***"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sources: []", "no sources"),
        ("nope: 1\nsources: [{path: x}]", "unknown keys nope"),
        ("sources: [{preset: nope}]", "unknown preset 'nope'"),
        ("sources: [{url: 'ftp://x/y'}]", "not an http"),
        ("sources: [{url: 'https://u:p@x/y'}]", "credentials in the URL"),
        ("sources: [{url: 'https://x/y', format: nope}]", "unknown format 'nope'"),
        ("sources: [{url: 'https://x/y', sha256: abc}]", "64 hex digits"),
        ("sources: [{url: 'https://x/y', password: pw}]", "unknown keys password"),
        ("sources: [{preset: dbip, kind: bin}]", "kind must be csv or mmdb"),
        ("sources: [", "not valid YAML"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, problem: str) -> None:
    config = tmp_path / "update.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_config(config, Redactor())
