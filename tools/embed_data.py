"""Compile the vendored geo-whois-asn-country CSVs into the package's embedded data.

Run from the repository root after updating tests/data/geo-whois-asn-country/:
    python tools/embed_data.py
"""

import hashlib
import lzma
from pathlib import Path

from lookupd.datafiles.formats.location_csv import read_location_csv
from lookupd.datafiles.npz import save_compiled
from lookupd.datafiles.open import EMBEDDED_DATA

_ROOT = Path(__file__).resolve().parent.parent
_SOURCE_DIR = _ROOT / "tests" / "data" / "geo-whois-asn-country"
_SOURCES = ("geo-whois-asn-country-ipv4.csv.xz", "geo-whois-asn-country-ipv6.csv.xz")


def main() -> None:
    rows = None
    sources = []
    for name in _SOURCES:
        path = _SOURCE_DIR / name
        rows = read_location_csv(path, rows)
        raw = lzma.decompress(path.read_bytes())
        sources.append(
            {"name": name.removesuffix(".xz"), "sha256": hashlib.sha256(raw).hexdigest()}
        )
    assert rows is not None
    v4, v6 = rows.tables()
    metadata = {
        "name": "geo-whois-asn-country",
        "version": "2.3.2026061719",
        "date": "2026-06-17",
        "source": "ip-location-db (npm @ip-location-db/geo-whois-asn-country)",
        "license": "CC0-1.0; WHOIS part CC BY 4.0, (c) Number Resource Organization (nro.net)",
        "sources": sources,
        "rows": {"ipv4": len(rows.v4[0]), "ipv6": len(rows.v6[0])},
    }
    out = _ROOT / "lookupd" / "data" / EMBEDDED_DATA
    save_compiled(out, v4, v6, rows.label_names, metadata)
    print(
        f"wrote {out}: {len(v4)} IPv4 and {len(v6)} IPv6 segments, "
        f"{len(rows.label_names) - 1} labels, {out.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
