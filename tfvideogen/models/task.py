"""`TextToVideo`: the task object (encoder + G + D + EMA G) with `generate()`."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfvideogen.models.layers import PACKAGE
from tfvideogen.utils.seeds import per_caption_seeds

# Second word of every latent's stateless seed: (seed, SALT) -> z.
LATENT_SALT = 0x7F1D


def latents_from_seeds(seeds: tf.Tensor, z_dim: int, truncation: float = 1.0) -> tf.Tensor:
    """int64 seeds [B] -> float32 z [B, z_dim], normal with standard deviation `truncation`.

    Row i depends only on seeds[i] (stateless Philox), so a (caption, seed)
    pair gives the same video alone or inside any batch, here and in exports.
    `truncation` psi in (0, 1] scales z towards its mean, 0 (the truncation
    trick of BigGAN/StyleGAN): psi < 1 trades diversity for clips closer to
    what the generator draws most typically for the caption (README#Quality).
    """
    check_truncation(truncation)
    seeds = tf.cast(tf.convert_to_tensor(seeds), tf.int64)
    z = tf.map_fn(
        lambda s: tf.random.stateless_normal([z_dim], seed=tf.stack([s, LATENT_SALT])),
        seeds, fn_output_signature=tf.TensorSpec([z_dim], tf.float32))
    return z if truncation == 1.0 else z * truncation


def check_truncation(truncation: float) -> None:
    """Raises ValueError unless 0 < truncation <= 1."""
    if not 0.0 < truncation <= 1.0:
        raise ValueError(f"truncation must be in (0, 1] (1 = no truncation), got {truncation}")


def to_uint8(video: tf.Tensor) -> tf.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded (the served and saved form)."""
    video = tf.cast(video, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value((video + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


@keras.saving.register_keras_serializable(PACKAGE)
class TextToVideo(keras.Model):
    """Text-to-video task. Networks stay plain models; this adds generation.

    `call(text, z)`: tf.string [B], float32 [B, z_dim] -> float32 video
    [B, T, H, W, 3] in [-1, 1], through the EMA generator when there is one.
    """

    def __init__(self, text_encoder: keras.Model, generator: keras.Model,
                 discriminator: keras.Model | None = None,
                 ema_generator: keras.Model | None = None, **kwargs):
        super().__init__(**kwargs)
        self.text_encoder = text_encoder
        self.generator = generator
        self.discriminator = discriminator
        self.ema_generator = ema_generator

    @property
    def sampler(self) -> keras.Model:
        """The generator used for samples and export (EMA when present)."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    @property
    def z_dim(self) -> int:
        return self.generator.z_dim

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        g = self.generator
        return (g.frames, g.size, g.size, 3)

    def build(self, text_shape=None, z_shape=None):
        for model in (self.text_encoder, self.generator, self.discriminator, self.ema_generator):
            if model is not None and not model.built:
                model.build()
        self.built = True

    def call(self, text, z, training=None):
        emb = self.text_encoder(text, training=training)
        return self.sampler(z, emb, training=training)

    def generate(self, captions: Sequence[str] | str, seed: int | Sequence[int] = 0,
                 *, z: np.ndarray | None = None, use_ema: bool = True,
                 dtype: str = "uint8", truncation: float = 1.0) -> np.ndarray:
        """Captions -> videos, numpy [B, T, H, W, 3].

        `seed`: an int (caption i uses seed + i) or one seed per caption; the
        same (caption, seed) always gives the same video. `z` overrides the
        seeds with explicit latents [B, z_dim]. `dtype`: "uint8" (0-255) or
        "float32" ([-1, 1]). `truncation` psi in (0, 1]: the seeds' latents are
        scaled by psi (`latents_from_seeds`); not combined with `z`.
        """
        captions = [captions] if isinstance(captions, str) else list(captions)
        check_captions(captions)
        if dtype not in ("uint8", "float32"):
            raise ValueError(f"dtype must be 'uint8' or 'float32', got {dtype!r}")
        if z is None:
            z = latents_from_seeds(per_caption_seeds(seed, len(captions)), self.z_dim,
                                   truncation)
        elif truncation != 1.0:
            raise ValueError("truncation applies to seeded latents; scale an explicit z "
                             "yourself")
        else:
            z = np.asarray(z, np.float32)
            if z.shape != (len(captions), self.z_dim):
                raise ValueError(f"z must be [{len(captions)}, {self.z_dim}], got {z.shape}")
        gen = self.sampler if use_ema else self.generator
        video = _generate(self.text_encoder, gen, tf.constant(captions), tf.constant(z))
        return (to_uint8(video) if dtype == "uint8" else tf.cast(video, tf.float32)).numpy()

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        return {**super().get_config(),
                "text_encoder": ser(self.text_encoder), "generator": ser(self.generator),
                "discriminator": ser(self.discriminator) if self.discriminator else None,
                "ema_generator": ser(self.ema_generator) if self.ema_generator else None}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("text_encoder", "generator", "discriminator", "ema_generator"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@tf.function(reduce_retracing=True)
def _generate(encoder, generator, captions, z):
    return generator(z, encoder(captions, training=False), training=False)


def check_captions(captions: Sequence[str]) -> None:
    """Raises ValueError naming the first bad caption (empty list, non-str, blank)."""
    if not captions:
        raise ValueError("no captions given")
    for i, c in enumerate(captions):
        if not isinstance(c, str | bytes):
            raise ValueError(f"caption {i} is {type(c).__name__}, not a string")
        if not (c.decode("utf-8", "replace") if isinstance(c, bytes) else c).strip():
            raise ValueError(f"caption {i} is empty")
