"""Datasets as `tf.data` pipelines of `{"video", "caption"}` elements.

    ds = tfvideogen.data.load("moving_shapes", split="train", frames=16,
                              height=32, width=32, seed=0, num_examples=100)

Every element: `video` float32 [T,H,W,3] in [-1, 1], `caption` tf.string [].
"""

from __future__ import annotations

import tensorflow as tf

from tfvideogen.data import bouncing_digits, moving_shapes  # noqa: F401  (registers)
from tfvideogen.data.registry import BuiltinDataset, available, get

__all__ = ["BuiltinDataset", "available", "get", "load", "batched"]


def load(name: str = "moving_shapes", split: str = "train", frames: int = 16,
         height: int = 32, width: int = 32, seed: int = 0,
         num_examples: int | None = None, start: int = 0, **options) -> tf.data.Dataset:
    """An unbatched pipeline of the built-in dataset `name`.

    `num_examples=None` is an endless stream; `start` skips to element `start`
    in O(1) (elements are indexed, so resuming needs no replay).
    Options: `num_objects` (moving_shapes), `mnist_path` (bouncing_digits).
    """
    for key, value in (("frames", frames), ("height", height), ("width", width)):
        if int(value) <= 0:
            raise ValueError(f"{key} must be positive, got {value}")
    if num_examples is not None and num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    dataset = get(name, **options)
    dataset.check_split(split)
    return dataset.make(split, int(frames), int(height), int(width), int(seed),
                        num_examples, int(start))


def batched(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Static-shape batches, prefetched (what the train step consumes)."""
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
