"""Where the time of ``lookup(strs).countries()`` goes, beside iptocc, in one process.

    PYTHONPATH=. python bench/profile_strings.py

1M IPv4 strings drawn row-uniformly from the embedded data (a segment uniformly, then an
address inside it), as bench_lookup.py's row-uniform workload; each step timed 7 times by
``time.process_time``, the best kept, in ns per address.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

import iptocc
import numpy as np

import lookupd
from lookupd.core import _parse

_N = 1_000_000


def _best(run: Callable[[], object], rounds: int = 7) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times) * 1e9 / _N


def main() -> None:
    db = lookupd.open()
    rng = np.random.default_rng(1)
    starts = db.v4.starts.astype(np.int64)
    ends = np.append(starts[1:] - 1, 2**32 - 1)
    index = rng.integers(0, len(starts), _N)
    values = starts[index] + (rng.random(_N) * (ends[index] - starts[index] + 1)).astype(np.int64)
    strs = [str(ipaddress.IPv4Address(int(value))) for value in values]
    keys = np.empty((_N, 2), np.uint64)
    status = np.empty(_N, np.uint8)
    answers = db.lookup(strs)
    print(f"parse_many {_best(lambda: _parse.parse_many(strs, keys, status)):.1f} ns")
    print(f"lookup {_best(lambda: db.lookup(strs)):.1f} ns")
    print(f"lookup(...).countries() {_best(lambda: db.lookup(strs).countries()):.1f} ns")
    print(f"countries() alone {_best(answers.countries):.1f} ns")
    print(f"iptocc {_best(lambda: iptocc.country_code(strs)):.1f} ns")


if __name__ == "__main__":
    main()
