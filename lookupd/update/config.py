"""What to download: sources from a YAML file or from flags, and the update's settings.

A configuration file::

    output: /var/lib/lookupd/countries.lkd     # optional; --output wins
    mmdb_output: /var/lib/lookupd/countries.mmdb  # optional; --mmdb-output wins
    max_change: 0.05                           # optional; --max-change wins
    sources:                                   # laid over each other in order
      - preset: maxmind                        # see lookupd.update.presets
        edition: GeoLite2-Country
        account_id_env: MAXMIND_ACCOUNT_ID
        license_key_file: /run/secrets/maxmind-licence-key
      - url: https://mirror.example/corrections.csv.gz
        format: location-csv                   # as `lookupd build --format`
        sha256: 3a7b...                        # or checksum_url: https://.../x.sha256
        username_env: MIRROR_USER              # HTTP basic auth, or
        password_file: /run/secrets/mirror     # bearer_token_env / bearer_token_file
      - path: /etc/lookupd/corrections.csv     # a local file is a source too
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lookupd.datafiles.formats import FORMATS
from lookupd.files import open_regular
from lookupd.update.errors import ConfigError
from lookupd.update.presets import PRESETS, preset_sources
from lookupd.update.secrets import Redactor
from lookupd.update.sources import Source, url_source

_MAX_CONFIG_BYTES = 1 << 20
_URL_KEYS = frozenset(
    {
        "url",
        "format",
        "sha256",
        "checksum_url",
        "extract",
        "filename",
        "username",
        "username_env",
        "username_file",
        "password_env",
        "password_file",
        "bearer_token_env",
        "bearer_token_file",
    }
)


def load_config(path: Path, redactor: Redactor) -> tuple[list[Source], dict[str, Any]]:
    """Read a YAML configuration; return its sources and its other settings.

    Credentials it names are read now and added to ``redactor``.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown keys, missing credentials.
    """
    try:
        with open_regular(path) as handle:
            text = handle.read(_MAX_CONFIG_BYTES + 1)
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read: {exc}"
        raise ConfigError(msg) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(document, dict) or not isinstance(document.get("sources"), list):
        msg = f"{path}: expected a mapping with a list of 'sources'"
        raise ConfigError(msg)
    unknown = set(document) - {"sources", "output", "mmdb_output", "max_change"}
    if unknown:
        msg = f"{path}: unknown keys {', '.join(sorted(map(str, unknown)))}"
        raise ConfigError(msg)
    sources = [
        source
        for n, entry in enumerate(document["sources"], start=1)
        for source in sources_from_mapping(entry, redactor, where=f"{path}: source {n}")
    ]
    if not sources:
        msg = f"{path}: no sources"
        raise ConfigError(msg)
    keys = ("output", "mmdb_output", "max_change")
    settings = {key: document[key] for key in keys if key in document}
    return sources, settings


def sources_from_mapping(entry: object, redactor: Redactor, *, where: str) -> list[Source]:
    """Return the source one entry of the configuration describes.

    Raises:
        ConfigError: the entry is malformed (the message says ``where``).
    """
    if not isinstance(entry, dict) or not all(isinstance(k, str) for k in entry):
        msg = f"{where}: expected a mapping"
        raise ConfigError(msg)
    if "preset" in entry:
        name = entry["preset"]
        if name not in PRESETS:
            msg = f"{where}: unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}"
            raise ConfigError(msg)
        options = {k: v for k, v in entry.items() if k != "preset"}
        return preset_sources(name, options, redactor, where=where)
    if "path" in entry:
        extra = set(entry) - {"path", "format"}
        if extra:
            msg = (
                f"{where}: a path source takes 'path' and 'format' only: {', '.join(sorted(extra))}"
            )
            raise ConfigError(msg)
        path = Path(str(entry["path"]))
        return [Source(path.name, path=path, format=_format(entry.get("format"), where))]
    if "url" not in entry:
        msg = f"{where}: give 'url', 'path' or 'preset'"
        raise ConfigError(msg)
    unknown = set(entry) - _URL_KEYS
    if unknown:
        msg = f"{where}: unknown keys {', '.join(sorted(unknown))}"
        raise ConfigError(msg)
    source = url_source(
        str(entry["url"]),
        redactor,
        format=_format(entry.get("format"), where),
        sha256=entry.get("sha256"),
        checksum_url=entry.get("checksum_url"),
        extract=_patterns(entry.get("extract"), where),
        filename=entry.get("filename"),
        username=entry.get("username"),
        username_env=entry.get("username_env"),
        username_file=entry.get("username_file"),
        password_env=entry.get("password_env"),
        password_file=entry.get("password_file"),
        bearer_token_env=entry.get("bearer_token_env"),
        bearer_token_file=entry.get("bearer_token_file"),
        where=where,
    )
    return [source]


def _format(value: object, where: str) -> str | None:
    if value is None:
        return None
    if value not in FORMATS:
        msg = f"{where}: unknown format {value!r}; known: {', '.join(sorted(FORMATS))}"
        raise ConfigError(msg)
    return str(value)


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    msg = f"{where}: 'extract' must be a pattern or a list of patterns"
    raise ConfigError(msg)
