"""What the server and its clients agree on beyond the messages: service names and codes.

The names come from the compiled proto, so they cannot drift from it.
"""

from __future__ import annotations

from lookupd.v1 import lookup_pb2 as _pb

LOOKUP_SERVICE: str = _pb.DESCRIPTOR.services_by_name["LookupService"].full_name
"""``lookupd.v1.LookupService``."""
ADMIN_SERVICE: str = _pb.DESCRIPTOR.services_by_name["AdminService"].full_name
"""``lookupd.v1.AdminService``."""
HEALTH_SERVICE_NAMES = ("", LOOKUP_SERVICE)
"""The names ``grpc.health.v1.Health`` reports on: the server as a whole, and the lookups."""
NO_COUNTRY_CODE = b"--"
"""Two ASCII bytes per address in packed answers: no country (any status but OK)."""
ODD_COUNTRY_CODE = b"??"
"""Two ASCII bytes for a data label whose country part is not two ASCII characters."""
