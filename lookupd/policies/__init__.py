"""Supported-region policies: named allow/deny rules loaded from YAML, decided in bulk.

A policy file is a YAML mapping with one key, ``policies``, naming each policy::

    policies:
      api-supported:
        description: Countries and territories the API is offered in.
        allow_countries: [US, GB, UA, ...]      # or deny_countries: exactly one of the two
        deny_subdivisions: [UA-43, UA-14]       # ISO 3166-2 exceptions in allowed countries
        allow_subdivisions: []                  # ISO 3166-2 exceptions in denied countries
        networks:                               # overrides, by CIDR
          allow: [203.0.113.0/24]
          deny: [2001:db8:bad::/48]
        unknown: deny                           # default deny
        reserved: allow                         # default allow

Fields:

- ``description`` (required): free text.
- ``allow_countries`` *or* ``deny_countries`` (exactly one): ISO 3166-1 alpha-2 codes. An
  allow-list allows only its countries; a deny-list denies its countries and allows the
  rest. The codes geolocation data uses on purpose (``XK`` Kosovo, ``EU``, ``AP``, ``A1``,
  ``A2``, ``O1``, ``T1``) may be listed too; ``ZZ``/``XX`` (the data's "unknown") may not:
  ``unknown`` decides those.
- ``deny_subdivisions``: ISO 3166-2 codes (``UA-43``) denied inside countries the country
  rule allows. ``allow_subdivisions``: codes allowed inside countries it denies. A code
  whose country the rule already treats that way is an error (it would change nothing).
  Subdivisions only act on data that carries them (city-level data with ``UA-43`` labels);
  :meth:`PolicySet.compile` warns when the data has none.
- ``networks``: ``allow`` and ``deny`` lists of CIDR networks (IPv4 or IPv6, no host bits
  set). IPv6 networks cover IPv4 addresses only when written IPv4-mapped
  (``::ffff:192.0.2.0/120`` is ``192.0.2.0/24``): ``::/0`` means all IPv6, not IPv4 too.
- ``unknown``: ``allow`` or ``deny`` (default ``deny``) for valid addresses the data has no
  country for. Default deny: a supported-region check should fail closed.
- ``reserved``: ``allow`` or ``deny`` (default ``allow``) for private, loopback, link-local,
  documentation, multicast and other special-purpose addresses (``Status.RESERVED``). Such
  an address never comes from the open Internet: it is the operator's own infrastructure
  (health checks, internal clients, a proxy), which must usually pass.

Precedence, first match wins:

1. an invalid address: ``DENY`` (reason ``INVALID``), always;
2. a network override: the most specific network (longest prefix) covering the address
   decides, ``deny`` winning over ``allow`` at equal prefix. An explicit override beats
   every rule below, reserved included: allowing ``10.0.0.0/8`` outright allows it even
   with ``reserved: deny``;
3. a reserved address: the ``reserved`` verdict;
4. no country (``Status.NOT_FOUND``, or a ``ZZ``/``XX`` label): the ``unknown`` verdict;
5. a subdivision exception (``UA-43``);
6. the country rule.

Loading validates everything and refuses the file with one clear message naming the file,
the policy and the field (:class:`PolicyError`): unknown fields (with a did-you-mean),
unknown ISO codes (``MI``: did you mean UM, ...?), networks with host bits set (suggesting
the network), wrong types, duplicate keys. YAML is read with PyYAML's safe loader, except
that only ``true``/``false`` are booleans (YAML 1.2), so ``NO`` stays Norway.

Compiling against a :class:`~lookupd.Database` turns each policy into a verdict and a reason
per (status, label) pair and a small range table of its networks; evaluation is then a few
numpy gathers and one search-core pass, with no Python loop per address.

The modules, each importing at run time only those listed before it:
:mod:`~lookupd.policies.iso3166` (country and subdivision codes),
:mod:`~lookupd.policies.model` (:class:`Policy`, :class:`Decisions`, :class:`PolicyError`),
:mod:`~lookupd.policies.compiled` (:class:`CompiledPolicies`),
:mod:`~lookupd.policies.policy_set` (:class:`PolicySet`),
:mod:`~lookupd.policies.validation` (the schema's rules) and
:mod:`~lookupd.policies.loading` (files and YAML: the only module that imports PyYAML).
"""

from lookupd.codes import Reason, Verdict
from lookupd.policies.compiled import CompiledPolicies
from lookupd.policies.loading import (
    EXAMPLE_POLICIES,
    example_policies_path,
    load_policies,
    parse_policies,
)
from lookupd.policies.model import Decisions, Network, Policy, PolicyError
from lookupd.policies.policy_set import PolicySet

__all__ = [
    "EXAMPLE_POLICIES",
    "CompiledPolicies",
    "Decisions",
    "Network",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Reason",
    "Verdict",
    "example_policies_path",
    "load_policies",
    "parse_policies",
]
