"""Read + decode tile batches in worker threads while the encoder runs.

At most ``max_pending`` batches exist at any time (being read or waiting), so memory is
``(max_pending + 1) * batch_size * 224*224*3`` bytes whatever the slide size. OpenSlide
handles are thread-safe and its ctypes calls release the GIL, so threads overlap decoding with
ONNX Runtime (which releases the GIL too). Batches come out in order.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .reader import TILE

ReadTile = Callable[[int, int], np.ndarray]


def _read_batch(read_tile: ReadTile, coords: np.ndarray) -> np.ndarray:
    out = np.empty((len(coords), TILE, TILE, 3), np.uint8)
    for k, (x, y) in enumerate(coords):
        out[k] = read_tile(int(x), int(y))
    return out


def prefetch_batches(read_tile: ReadTile, coords: np.ndarray, batch_size: int = 64,
                     workers: int = 2, max_pending: int | None = None
                     ) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, tiles)``: rows of ``coords`` and their (B, 224, 224, 3) uint8 tiles."""
    if batch_size < 1 or workers < 0:
        raise ValueError("batch_size must be >= 1 and workers >= 0")
    n = len(coords)
    starts = range(0, n, batch_size)
    if workers == 0:                                   # synchronous (debugging, tiny inputs)
        for s in starts:
            yield slice(s, min(s + batch_size, n)), _read_batch(read_tile, coords[s:s + batch_size])
        return
    max_pending = max_pending or 2 * workers
    pending: deque[tuple[slice, Future]] = deque()
    it = iter(starts)
    with ThreadPoolExecutor(workers, thread_name_prefix="tile-read") as pool:
        try:
            while True:
                while len(pending) < max_pending:
                    s = next(it, None)
                    if s is None:
                        break
                    rows = slice(s, min(s + batch_size, n))
                    pending.append((rows, pool.submit(_read_batch, read_tile, coords[rows])))
                if not pending:
                    return
                rows, fut = pending.popleft()
                yield rows, fut.result()               # re-raises a worker's SlideError here
        finally:
            for _, fut in pending:                     # consumer stopped early or failed
                fut.cancel()
