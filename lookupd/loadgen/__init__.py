"""``lookupd bench``: a load generator for any running lookupd, measured as a client sees it.

The modules: :mod:`~lookupd.loadgen.addresses` (what to send),
:mod:`~lookupd.loadgen.calls` (the RPCs as prebuilt request bytes),
:mod:`~lookupd.loadgen.worker` (one client process: closed or open loop),
:mod:`~lookupd.loadgen.run` (several processes, merged), :mod:`~lookupd.loadgen.report`.
"""
