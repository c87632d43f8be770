"""`MoCoGenerator`: MoCoGAN-style motion/content decomposition (Tulyakov et al. 2018)."""

from __future__ import annotations

import keras
from keras import ops

from tfvideogen.models.generator import _log2
from tfvideogen.models.layers import PACKAGE, ConditionalNorm


@keras.saving.register_keras_serializable(PACKAGE)
class MoCoGenerator(keras.Model):
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
        if rgb_kernel not in (0, 3):
            raise ValueError(f"MoCoGenerator rgb_kernel must be 0 or 3, got {rgb_kernel}")
        self.rgb_kernel = rgb_kernel
        self.frames, self.size, self.z_dim, self.text_dim = frames, size, z_dim, text_dim
        self.motion_dim, self.base_width, self.min_width = motion_dim, base_width, min_width
        self.base_size = base_size
        self.num_blocks = _log2(size // base_size if size % base_size == 0 else 0,
                                "size/base_size")
        self.widths = [max(min_width, base_width // 2**i) for i in range(self.num_blocks + 1)]
        if not rgb_kernel:
            self.widths[-1] = 3
        self.innovations = keras.layers.Dense(frames * motion_dim, name="innovations")
        self.motion_init = keras.layers.Dense(motion_dim, activation="tanh", name="motion_init")
        # unroll: a fixed-length loop of builtin ops (TFLite-friendly, fast for short T).
        self.motion_rnn = keras.layers.GRU(motion_dim, return_sequences=True, unroll=True,
                                           name="motion_rnn")
        self.stem = keras.layers.Dense(base_size * base_size * self.widths[0], name="stem")
        self.stem_norm = ConditionalNorm(self.widths[0], name="stem_norm")
        for i, width in enumerate(self.widths[1:]):
            setattr(self, f"up{i}", keras.layers.Conv2DTranspose(width, 4, 2, padding="same",
                                                                 name=f"up{i}"))
            if rgb_kernel or i < self.num_blocks - 1:
                setattr(self, f"norm{i}", ConditionalNorm(width, name=f"norm{i}"))
        if rgb_kernel:
            self.to_rgb = keras.layers.Conv2D(3, 3, padding="same", name="to_rgb")
        self.out = keras.layers.Activation("tanh", dtype="float32", name="tanh")

    def build(self, z_shape=None, text_embedding_shape=None):
        z = (None, self.z_dim)
        cond = (None, self.z_dim + self.text_dim + self.motion_dim)
        self.innovations.build(z)
        self.motion_init.build(z)
        self.motion_rnn.build((None, self.frames, self.motion_dim))
        self.stem.build(cond)
        self.stem_norm.build(None, cond)
        s = self.base_size
        for i in range(self.num_blocks):
            getattr(self, f"up{i}").build((None, s, s, self.widths[i]))
            if (norm := getattr(self, f"norm{i}", None)) is not None:
                norm.build(None, cond)
            s *= 2
        if self.rgb_kernel:
            self.to_rgb.build((None, s, s, self.widths[-1]))
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
        x = ops.reshape(self.stem(cond), [-1, self.base_size, self.base_size, self.widths[0]])
        x = ops.relu(self.stem_norm(x, cond))
        for i in range(self.num_blocks):
            x = getattr(self, f"up{i}")(x)
            if (norm := getattr(self, f"norm{i}", None)) is not None:
                x = ops.relu(norm(x, cond))
        x = self.out(self.to_rgb(x) if self.rgb_kernel else x)
        return ops.reshape(x, [-1, self.frames, self.size, self.size, 3])

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "size": self.size,
                "z_dim": self.z_dim, "text_dim": self.text_dim, "motion_dim": self.motion_dim,
                "base_width": self.base_width, "min_width": self.min_width,
                "base_size": self.base_size, "rgb_kernel": self.rgb_kernel}
