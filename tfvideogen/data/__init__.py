"""Datasets as `tf.data` pipelines of `{"video", "caption"}` elements.

    ds = tfvideogen.data.load("moving_shapes", split="train", frames=16,
                              height=32, width=32, seed=0, num_examples=100)
    ds = tfvideogen.data.load("tfrecord:/data/clips/train-*.tfrecord", frames=16,
                              height=64, width=64)

Names: the built-in datasets (`available()`) or reader specs (`readers()`):
`tfrecord:<glob>` (shards from prepare_data.py), `videos:<dir|glob>` (video
files decoded on the fly), `moving_mnist:<path to mnist_test_seq.npy>`.
Every element: `video` float32 [T,H,W,3] in [-1, 1], `caption` tf.string [].
"""

from __future__ import annotations

import tensorflow as tf

# Imported to register the built-in datasets and the readers.
from tfvideogen.data import (  # noqa: F401
    bouncing_digits,
    files,
    moving_mnist,
    moving_shapes,
    tfrecord,
)
from tfvideogen.data.registry import BuiltinDataset, available, get, own_words, readers

__all__ = ["BuiltinDataset", "available", "get", "load", "batched", "own_words", "readers"]


def load(name: str = "moving_shapes", split: str = "train", frames: int = 16,
         height: int = 32, width: int = 32, seed: int = 0,
         num_examples: int | None = None, start: int = 0, **options) -> tf.data.Dataset:
    """An unbatched pipeline of the dataset `name` (built-in name or reader spec).

    `num_examples=None` is an endless stream. `start` is the element index to
    resume from: built-in and `moving_mnist:` elements are indexed, so it skips
    there in O(1); shuffled file data (`tfrecord:`, `videos:`) cannot restore
    an exact position, so `start` reseeds their shuffles instead (a resumed
    run sees a fresh order, not a replay).
    Options: `num_objects` (moving_shapes), `mnist_path` (bouncing_digits),
    `shuffle_buffer`/`flip`/`frame_stride` (tfrecord, videos), `captions`/
    `class_folders`/`short_videos` (videos); unused options are ignored.
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
