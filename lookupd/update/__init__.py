"""``lookupd update``: download the configured sources, verify them, build and place a snapshot.

Layers inside the package, each module one concept: ``errors`` and ``secrets`` (credentials
and their redaction) at the bottom; ``config`` and ``presets`` (what to download); ``http``
(one conditional, retried, size-bounded download), ``archives`` (safe unpacking), ``lock``
and ``state`` (the files beside the output); ``run`` (one update and its decision); ``loop``
and ``metrics`` (``--every``).
"""
