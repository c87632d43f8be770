"""`MoCoGenerator`: MoCoGAN-style motion/content decomposition (Tulyakov et al. 2018)."""

from __future__ import annotations

import keras
from keras import ops

from tfvideogen.models.image_trunk import ImageTrunk
from tfvideogen.models.layers import PACKAGE


@keras.saving.register_keras_serializable(PACKAGE)
class MoCoGenerator(ImageTrunk, keras.Model):
    """Content code per clip + a GRU motion code per frame -> a 2D image generator.

    Same contract as `VideoGenerator`: `z` float32 [B, z_dim], `text_embedding`
    [B, text_dim] -> float32 [B, frames, size, size, 3] in [-1, 1].

    The content condition c = [z, text] is fixed for the clip; a GRU driven by
    per-frame innovations (derived from z, so a seed still fixes the whole
    clip) produces motion codes m_t; every frame is rendered by one shared 2D
    generator from [c, m_t] (FiLM at every block). Frames share weights, so
    the cost per frame is a 2D image's, and content stays constant by design.
    `rgb_kernel=3`: a 3x3 RGB conv on the last block's maps; `0`: none, the last
    block's transposed conv outputs RGB (as `VideoGenerator`'s).
    """

    def __init__(self, frames: int = 16, size: int = 32, z_dim: int = 64, text_dim: int = 128,
                 motion_dim: int = 16, base_width: int = 128, min_width: int = 16,
                 base_size: int = 4, rgb_kernel: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.frames, self.size, self.z_dim, self.text_dim = frames, size, z_dim, text_dim
        self.motion_dim, self.base_width, self.min_width = motion_dim, base_width, min_width
        self._make_trunk(size, base_size, base_width, min_width, rgb_kernel, 3, "to_rgb")
        self.innovations = keras.layers.Dense(frames * motion_dim, name="innovations")
        self.motion_init = keras.layers.Dense(motion_dim, activation="tanh", name="motion_init")
        # unroll: a fixed-length loop of builtin ops (TFLite-friendly, fast for short T).
        self.motion_rnn = keras.layers.GRU(motion_dim, return_sequences=True, unroll=True,
                                           name="motion_rnn")
        self.out = keras.layers.Activation("tanh", dtype="float32", name="tanh")

    def build(self, z_shape=None, text_embedding_shape=None):
        z = (None, self.z_dim)
        cond = (None, self.z_dim + self.text_dim + self.motion_dim)
        self.innovations.build(z)
        self.motion_init.build(z)
        self.motion_rnn.build((None, self.frames, self.motion_dim))
        self._build_trunk(cond)
        self.built = True

    def call(self, z, text_embedding, training=None):
        dt = self.compute_dtype
        z = ops.cast(z, dt)
        eps = ops.reshape(self.innovations(z), [-1, self.frames, self.motion_dim])
        motion = self.motion_rnn(eps, initial_state=self.motion_init(z), training=training)
        content = ops.concatenate([z, ops.cast(text_embedding, dt)], axis=-1)  # [B, Z+D]
        content = ops.repeat(content[:, None, :], self.frames, axis=1)
        cond = ops.reshape(ops.concatenate([content, ops.cast(motion, dt)], axis=-1),
                           [-1, self.z_dim + self.text_dim + self.motion_dim])  # [B*T, C]
        x = self.out(self._run_trunk(cond))
        return ops.reshape(x, [-1, self.frames, self.size, self.size, 3])

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "size": self.size,
                "z_dim": self.z_dim, "text_dim": self.text_dim, "motion_dim": self.motion_dim,
                "base_width": self.base_width, "min_width": self.min_width,
                "base_size": self.base_size, "rgb_kernel": self.rgb_kernel}
