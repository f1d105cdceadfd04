"""A policy file's policies, named and versioned, ready to compile against a database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lookupd.core.database import Database
from lookupd.policies.compiled import CompiledPolicies
from lookupd.policies.model import Policy


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The policies of one file."""

    policies: Mapping[str, Policy]
    """Policies by name, in file order."""
    source: str
    """Where they came from (a path, or ``<string>``)."""
    version: str
    """SHA-256 (hex) of the file's bytes."""

    def compile(self, db: Database) -> CompiledPolicies:
        """Bind the policies to ``db``'s label table for evaluation."""
        return CompiledPolicies(self, db)
