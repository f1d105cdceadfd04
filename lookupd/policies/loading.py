"""Read policy files: YAML with YAML 1.2 booleans and no duplicate keys, then validation."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Hashable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from lookupd.errors import LookupdError
from lookupd.files import read_regular
from lookupd.policies.model import PolicyError
from lookupd.policies.policy_set import PolicySet
from lookupd.policies.validation import validate_document

EXAMPLE_POLICIES = "example-policies.yaml"
# Far more than any real policy file (a few KB): a larger file is not one.
_MOST_POLICY_BYTES = 16 << 20


def example_policies_path() -> Path:
    """Return the path of the example policy file installed with lookupd."""
    return Path(__file__).parent.parent / "data" / EXAMPLE_POLICIES


def load_policies(path: str | os.PathLike[str]) -> PolicySet:
    """Load and validate a policy file.

    Only a regular file is read, and opening it never blocks: a FIFO or a device put in
    its place is refused rather than waited on.

    Raises:
        PolicyError: the file cannot be read, is not a regular file, is larger than 16 MiB,
            is not valid YAML, or breaks a rule of the schema (see :mod:`lookupd.policies`);
            the message names the file, the policy and the field.
    """
    path = Path(path)
    try:
        data = read_regular(path, limit=_MOST_POLICY_BYTES)
    except OSError as exc:
        msg = f"{path}: cannot read the policy file: {exc.strerror or exc}"
        raise PolicyError(msg) from exc
    except LookupdError as exc:  # not a regular file, or too large
        msg = f"cannot read the policy file: {exc}"
        raise PolicyError(msg) from exc
    return parse_policies(data, source=str(path))


def parse_policies(text: str | bytes, source: str = "<string>") -> PolicySet:
    """Parse and validate policies from YAML text; ``source`` names it in errors.

    Raises:
        PolicyError: as :func:`load_policies`.
    """
    data = text.encode() if isinstance(text, str) else bytes(text)
    policies = validate_document(source, _read_yaml(data, source))
    return PolicySet(MappingProxyType(policies), source, hashlib.sha256(data).hexdigest())


def _read_yaml(data: bytes, source: str) -> object:
    """Read one YAML document as plain data.

    Raises:
        PolicyError: ``data`` is not valid YAML, or repeats a key.
    """
    try:
        # _Loader is a SafeLoader: it builds only plain data, never Python objects.
        document: object = yaml.load(data, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        msg = f"{source}: {at}not valid YAML: {problem}"
        raise PolicyError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{source}: not valid YAML: {exc}"
        raise PolicyError(msg) from exc
    return document


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2 booleans and duplicate keys refused.

    YAML 1.1 reads ``NO``, ``no``, ``on``, ``off``, ``yes`` as booleans, so
    ``allow_countries: [NO, SE]`` would lose Norway; here only true/false are booleans.
    A repeated key (two policies of the same name) would silently keep the last one.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
