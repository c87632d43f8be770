"""Building blocks shared by the generator and discriminators."""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "tfvideogen"


@keras.saving.register_keras_serializable(PACKAGE)
class ConditionalNorm(keras.layers.Layer):
    """Per-sample normalisation, then FiLM from a condition vector.

    `x` [B, ..., C], `cond` [B, D] -> [B, ..., C]. Statistics are taken per
    sample over all non-batch axes (layer norm), so a sample's output never
    depends on the rest of its batch: the served model gives the same video
    for a seed whatever the batch. Computed in float32 under mixed precision.
    """

    def __init__(self, channels: int, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.epsilon = epsilon
        # gamma starts at 1 (identity), beta at 0.
        self.to_gamma = keras.layers.Dense(channels, kernel_initializer="zeros",
                                           bias_initializer="ones", name="gamma",
                                           dtype=self.dtype_policy)
        self.to_beta = keras.layers.Dense(channels, kernel_initializer="zeros",
                                          name="beta", dtype=self.dtype_policy)

    def build(self, x_shape, cond_shape):
        self.to_gamma.build(cond_shape)
        self.to_beta.build(cond_shape)

    def call(self, x, cond):
        axes = list(range(1, len(x.shape)))
        x32 = ops.cast(x, "float32")
        mean, var = ops.moments(x32, axes, keepdims=True)
        shape = [-1] + [1] * (len(x.shape) - 2) + [self.channels]
        gamma = ops.reshape(ops.cast(self.to_gamma(cond), "float32"), shape)
        beta = ops.reshape(ops.cast(self.to_beta(cond), "float32"), shape)
        # Fold normalisation and FiLM into one multiply-add over the big tensor.
        scale = gamma * ops.rsqrt(var + self.epsilon)
        return ops.cast(x32 * scale + (beta - mean * scale), x.dtype)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "epsilon": self.epsilon}


def upsample_nearest(x, time: bool):
    """Nearest-neighbour x2 upsampling of [B,T,H,W,C] (H, W, and T if `time`).

    Built from repeats (reshape + tile), which convert to TFLite builtins.
    """
    _, t, h, w, c = x.shape
    for axis in ((1, 2, 3) if time else (2, 3)):
        x = ops.repeat(x, 2, axis=axis)
    # A static-shape reshape: keeps the frame size known through TFLite conversion.
    return ops.reshape(x, [-1, t * 2 if time else t, h * 2, w * 2, c])


def maybe_spectral(layer: keras.layers.Layer, enabled: bool) -> keras.layers.Layer:
    """Wraps `layer` in spectral normalisation (one power iteration per call)."""
    if not enabled:
        return layer
    return keras.layers.SpectralNormalization(layer, power_iterations=1, name=f"sn_{layer.name}")
