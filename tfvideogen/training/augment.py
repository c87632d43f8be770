"""Differentiable augmentation for GAN training (DiffAugment, Zhao et al. 2020).

Applied with the same policy to real and generated clips before D, so D
never sees an augmentation only one side has, and G receives gradients through
it. Parameters are drawn per clip and held over time, so augmentations never
create motion that is not in the clip. Videos: float [B, T, H, W, C] in [-1, 1].

Under tf.distribute, `rows`/`total` make the draws those of the global batch:
parameters are drawn for `total` clips and each replica takes its `rows`, so
N replicas augment exactly as one device does (same seed on every replica).
"""

from __future__ import annotations

import tensorflow as tf

POLICIES = ("color", "translation", "cutout")


def check_policy(policy: str) -> list[str]:
    parts = [p for p in policy.split(",") if p]
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown augmentation {bad[0]!r}; valid: {', '.join(POLICIES)}")
    return parts


def augment(video: tf.Tensor, policy: str, seed: tf.Tensor, rows: tf.Tensor | None = None,
            total=None) -> tf.Tensor:
    """Applies the comma-separated `policy` with stateless randomness `seed` [2].

    `rows` int [B] (optional): the clips' positions in a virtual batch of `total`
    clips whose parameters are drawn; default: the clips are that batch.
    """
    for i, name in enumerate(check_policy(policy)):
        s = tf.random.experimental.stateless_fold_in(seed, i)
        op = {"color": color, "translation": translation, "cutout": cutout}[name]
        video = op(video, s, rows=rows, total=total)
    return video


def _per_clip(draw, video: tf.Tensor, rows, total) -> tf.Tensor:
    """`draw(n)` -> [..., n] parameters; this batch's columns of it."""
    if rows is None:
        return draw(tf.shape(video)[0])
    return tf.gather(draw(total), rows, axis=-1)


def color(video: tf.Tensor, seed: tf.Tensor, rows=None, total=None) -> tf.Tensor:
    """Per-clip brightness (+-0.5), saturation (0-2x) and contrast (0.5-1.5x)."""
    shape = [-1, 1, 1, 1, 1]
    u = _per_clip(lambda n: tf.random.stateless_uniform([3, n], seed=seed, dtype=video.dtype),
                  video, rows, total)
    video = video + tf.reshape(u[0] - 0.5, shape)
    mean = tf.reduce_mean(video, axis=-1, keepdims=True)
    video = (video - mean) * tf.reshape(u[1] * 2.0, shape) + mean
    mean = tf.reduce_mean(video, axis=[1, 2, 3, 4], keepdims=True)
    return (video - mean) * tf.reshape(u[2] + 0.5, shape) + mean


def translation(video: tf.Tensor, seed: tf.Tensor, ratio: float = 0.125, rows=None,
                total=None) -> tf.Tensor:
    """Per-clip integer shift of up to `ratio` of the frame; uncovered pixels are black (-1)."""
    b, t, h, w, c = tf.unstack(tf.shape(video))
    max_y = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    max_x = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    dy = _per_clip(lambda n: tf.random.stateless_uniform([n], s1, -max_y, max_y + 1,
                                                         dtype=tf.int32), video, rows, total)
    dx = _per_clip(lambda n: tf.random.stateless_uniform([n], s2, -max_x, max_x + 1,
                                                         dtype=tf.int32), video, rows, total)
    ys = tf.range(h)[None, :] - dy[:, None]  # [B, H] source rows
    xs = tf.range(w)[None, :] - dx[:, None]
    valid = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    # One gather over the flattened frame, whose extra last pixel is the
    # background -1: uncovered pixels index it. Half the time of a gather per
    # axis and a select (forward + backward), and the same values and gradients.
    source = tf.where(valid, ys[:, :, None] * w + xs[:, None, :], h * w)  # [B, H, W]
    flat = tf.concat([tf.reshape(video, [b, t, h * w, c]),
                      -tf.ones([b, t, 1, c], video.dtype)], axis=2)
    out = tf.gather(flat, tf.reshape(source, [b, h * w]), axis=2, batch_dims=1)
    return tf.reshape(out, tf.shape(video))


def cutout(video: tf.Tensor, seed: tf.Tensor, ratio: float = 0.5, rows=None,
           total=None) -> tf.Tensor:
    """Per-clip square hole of `ratio` x the frame side, set to -1 in every frame."""
    h, w = tf.shape(video)[2], tf.shape(video)[3]
    size_y = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    size_x = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    cy = _per_clip(lambda n: tf.random.stateless_uniform([n], s1, 0, h + 1 - size_y % 2,
                                                         dtype=tf.int32), video, rows, total)
    cx = _per_clip(lambda n: tf.random.stateless_uniform([n], s2, 0, w + 1 - size_x % 2,
                                                         dtype=tf.int32), video, rows, total)
    ys, xs = tf.range(h)[None, :], tf.range(w)[None, :]
    in_y = tf.abs(ys - cy[:, None]) < (size_y + 1) // 2  # [B, H]
    in_x = tf.abs(xs - cx[:, None]) < (size_x + 1) // 2
    hole = in_y[:, None, :, None, None] & in_x[:, None, None, :, None]
    return tf.where(hole, -tf.ones_like(video), video)
