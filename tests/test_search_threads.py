"""Thread safety: many threads search one shared table at once and get single-thread answers."""

import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core.constants import IPV4_MAPPED_PREFIX

_THREADS = 8
_ROUNDS = 10
_KEYS = 5_000
_TIMEOUT_S = 30.0


def _v4_table(rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    return np.unique(np.append(rng.integers(0, 1 << 32, 50_000), 0)).astype(np.uint32)


def _v6_table(rng: np.random.Generator) -> npt.NDArray[np.uint64]:
    rows = rng.integers(0, 1 << 63, (50_000, 2), dtype=np.uint64)
    rows[0] = 0
    # Unique rows in 128-bit order: sort by high word, then low word.
    rows = np.unique(rows, axis=0)
    return np.ascontiguousarray(rows[np.lexsort((rows[:, 1], rows[:, 0]))])


def test_threads_share_one_table(search_core: ModuleType) -> None:
    rng = np.random.default_rng(2024)
    v4 = _v4_table(rng)
    v6 = _v6_table(rng)
    v4_jump = search_core.jump_table_v4(v4)
    v6_jump = search_core.jump_table_v6(v6)
    v4_labels = rng.integers(0, 300, len(v4)).astype(np.uint16)
    v6_labels = rng.integers(0, 300, len(v6)).astype(np.uint16)

    def run(
        seed: int, start: threading.Barrier
    ) -> tuple[list[int], list[int], list[int], list[int]]:
        """Search a thread's own keys _ROUNDS times, once all threads are ready."""
        keys_rng = np.random.default_rng(seed)
        keys_v4 = keys_rng.integers(0, 1 << 32, _KEYS, dtype=np.uint32)
        keys = keys_rng.integers(0, 1 << 63, (_KEYS, 2), dtype=np.uint64)
        keys[::2, 0] = 0
        keys[::2, 1] = IPV4_MAPPED_PREFIX | keys_v4[::2].astype(np.uint64)
        rows_v4 = np.empty(_KEYS, dtype=np.int32)
        rows_v6 = np.empty(_KEYS, dtype=np.int32)
        labels = np.empty(_KEYS, dtype=np.uint16)
        status = np.full(_KEYS, Status.OK, dtype=np.uint8)
        start.wait(_TIMEOUT_S)
        for _ in range(_ROUNDS):
            search_core.find_many_v4(v4, v4_jump, keys_v4, rows_v4)
            search_core.find_many_v6(v6, v6_jump, keys, rows_v6)
            status[:] = Status.OK
            search_core.lookup_many(
                v4, v4_jump, v4_labels, v6, v6_jump, v6_labels, keys, status, labels
            )
        return rows_v4.tolist(), rows_v6.tolist(), labels.tolist(), status.tolist()

    expected = [run(seed, threading.Barrier(1)) for seed in range(_THREADS)]
    start = threading.Barrier(_THREADS)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        futures = [pool.submit(run, seed, start) for seed in range(_THREADS)]
        results = [future.result(timeout=_TIMEOUT_S) for future in futures]
    assert results == expected
    assert len({tuple(result[0]) for result in results}) == _THREADS  # the keys really differ
