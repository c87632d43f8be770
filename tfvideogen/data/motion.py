"""Shared motion and caption helpers for the procedural datasets (graph ops)."""

from __future__ import annotations

import tensorflow as tf

MOTIONS = ("left and right", "up and down")


def bounce(start: tf.Tensor, speed: tf.Tensor, extent: tf.Tensor, frames: int) -> tf.Tensor:
    """Positions [T] of a point bouncing off 0 and `extent` (a triangle wave).

    `start` in [0, 2*extent) encodes both the start position and direction
    (the phase); `speed` is in pixels per frame.
    """
    t = tf.range(frames, dtype=tf.float32)
    extent = tf.maximum(extent, 1e-3)
    u = tf.math.floormod(start + speed * t, 2.0 * extent)
    return extent - tf.abs(extent - u)


def uniform(u: tf.Tensor, low: float | tf.Tensor, high: float | tf.Tensor) -> tf.Tensor:
    return low + (high - low) * u


def element_seed(seed: int, index: tf.Tensor) -> tf.Tensor:
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])


def indexed(make_element, num_examples: int | None, start: int) -> tf.data.Dataset:
    """`make_element(index)` over indices start, start+1, ... (finite or not)."""
    stop = start + num_examples if num_examples is not None else tf.int64.max
    ds = tf.data.Dataset.range(start, stop)
    return ds.map(make_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
