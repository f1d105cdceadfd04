"""Numbers of the address spaces and label tables, shared by both cores and the Python layer."""

# 2**32 - 1: last IPv4 address.
IPV4_MAX = 0xFFFF_FFFF
# 2**128 - 1: last IPv6 address.
IPV6_MAX = (1 << 128) - 1
# ::ffff:0:0/96 -- IPv4-mapped IPv6 addresses are answered from the IPv4 table.
IPV4_MAPPED_PREFIX = 0xFFFF_0000_0000
# Label index 0 in every label table means "no country" (a gap in the data).
UNKNOWN_LABEL = 0
