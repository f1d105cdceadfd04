"""``lookupd update``: download the configured sources, verify them, build and place a snapshot.

Each module one concept: ``errors`` and ``secrets`` (credentials and their redaction) at
the bottom; ``sources``, ``presets`` and ``config`` (what to download); ``http`` (one
conditional, retried, size-bounded download), ``archives`` (safe unpacking) and
``fetching`` (checksum, then unpack); ``lock`` and ``state`` (the files beside the
output); ``change`` (how much a release relabels); ``run`` (one update and its decision);
``loop`` and ``metrics`` (``--every``).
"""
