"""TensorBoard writers: scalars and animated-GIF video summaries."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorboard.plugins.image import metadata as image_metadata

from tfvideogen.utils import video as video_lib


def gif_summary(tag: str, clip: np.ndarray, step: int, fps: int = 8) -> None:
    """Writes an animated GIF the TensorBoard image dashboard plays.

    The image plugin stores [width, height, encoded...] strings and lets the
    browser decode them, so GIF bytes animate where `tf.summary.image`
    (PNG, one frame) cannot.
    """
    t, h, w, _ = np.asarray(clip).shape
    data = video_lib.gif_bytes(clip, fps)
    meta = image_metadata.create_summary_metadata(display_name=tag, description="")
    tensor = tf.constant([str(w), str(h), data], dtype=tf.string)
    tf.summary.write(tag, tensor, step=step, metadata=meta)


def scalars(values: dict[str, float], step: int) -> None:
    for k, v in values.items():
        tf.summary.scalar(k, v, step=step)
