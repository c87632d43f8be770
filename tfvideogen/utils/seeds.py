"""The per-caption seed rule shared by `TextToVideo.generate` and the serving clients."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_caption_seeds(seed: int | Sequence[int], count: int) -> np.ndarray:
    """`seed` int (caption i gets seed + i) or one seed per caption -> int64 [count]."""
    if np.ndim(seed) == 0:
        return np.arange(count, dtype=np.int64) + int(seed)
    seeds = np.asarray(seed, dtype=np.int64)
    if seeds.shape != (count,):
        raise ValueError(f"got {seeds.size} seeds for {count} captions")
    return seeds
