"""Building blocks shared by the generator and discriminators."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

PACKAGE = "tfvideogen"


def group_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, groups: int,
               epsilon: float) -> tf.Tensor:
    """Group norm of `x` per sample, then `gamma * x_hat + beta`, with a hand-written gradient.

    `x` float32 [N, ..., C]; `gamma`, `beta` float32 [C] (a group norm's
    weights) or [N, C] (per-sample FiLM); `groups` divides C (1 = layer norm).
    Statistics per sample and group over all other axes, variance about the
    mean (two passes, as `tf.nn.moments`). The same math as Keras'
    `GroupNormalization` up to float rounding, but each reduction first sums
    over the spatial axes per channel ([N, S, C] -> [N, C], contiguous; Keras
    reduces a 5-D grouped view, which Eigen runs slowly) and the backward pass
    is written out: 4 full-tensor passes forward and 5 back (docs/speed_history.md).
    Second derivatives (R1) flow through the backward pass's ops.
    """
    c = x.shape[-1]
    if c is None or c % groups:
        raise ValueError(f"group_norm: channels {c} not divisible by groups={groups}")
    per_group = c // groups

    def group_sum(t):  # [N, C] -> [N, C]: each channel gets its group's sum
        if groups == c:
            return t
        g = tf.reduce_sum(tf.reshape(t, [-1, groups, per_group]), -1, keepdims=True)
        return tf.reshape(tf.broadcast_to(g, [tf.shape(t)[0], groups, per_group]), [-1, c])

    @tf.custom_gradient
    def norm(x, gamma, beta):
        x3 = tf.reshape(x, [tf.shape(x)[0], -1, c])
        count = tf.cast(tf.shape(x3)[1] * per_group, x.dtype)
        mean = group_sum(tf.reduce_sum(x3, 1)) / count                         # [N, C]
        var = group_sum(tf.reduce_sum(tf.math.squared_difference(x3, mean[:, None]), 1)) / count
        inv = tf.math.rsqrt(var + epsilon)
        scale = gamma * inv
        y = tf.reshape(x3 * scale[:, None] + (beta - mean * scale)[:, None], tf.shape(x))

        def grad(dy):
            g3 = tf.reshape(dy, tf.shape(x3))
            sum_g = tf.reduce_sum(g3, 1)                                       # [N, C]
            dgamma = inv * (tf.reduce_sum(g3 * x3, 1) - mean * sum_g)           # sum g * x_hat
            # d x_hat = g * gamma; dx = inv * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
            # over the group, folded into dx = g * scale + x * a + b.
            m1 = group_sum(gamma * sum_g) / count
            m2 = group_sum(gamma * dgamma) / count
            a = -inv * inv * m2
            b = -inv * m1 - a * mean
            dx = tf.reshape(g3 * scale[:, None] + (x3 * a[:, None] + b[:, None]), tf.shape(x))
            if gamma.shape.rank == 1:
                return dx, tf.reduce_sum(dgamma, 0), tf.reduce_sum(sum_g, 0)
            return dx, dgamma, sum_g

        return y, grad

    return norm(x, gamma, beta)


@keras.saving.register_keras_serializable(PACKAGE)
class GroupNormalization(keras.layers.GroupNormalization):
    """Keras' `GroupNormalization` (channels last, same weights and config) computed by
    `group_norm`: forward + backward in 0.7x the time at the discriminator's first
    frame-trunk layer. Computed in float32 under mixed precision, as Keras does."""

    def call(self, inputs):
        if self.axis not in (-1, len(inputs.shape) - 1) or not (self.scale and self.center):
            return super().call(inputs)
        y = group_norm(tf.cast(inputs, tf.float32), tf.cast(self.gamma, tf.float32),
                       tf.cast(self.beta, tf.float32), self.groups, self.epsilon)
        return tf.cast(y, self.compute_dtype)


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
        gamma = ops.cast(self.to_gamma(cond), "float32")
        beta = ops.cast(self.to_beta(cond), "float32")
        return ops.cast(group_norm(ops.cast(x, "float32"), gamma, beta, 1, self.epsilon),
                        x.dtype)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "epsilon": self.epsilon}


# Nearest x2 upsampling followed by a 3-tap "same" conv reads, for each output
# position, only 2 distinct inputs: output 2m sees (x[m-1], x[m], x[m]) and 2m+1
# sees (x[m], x[m], x[m+1]). So the 3 taps fold into a 4-tap stride-2 transposed
# conv kernel; rows are the 4 taps, columns the 3 (conv_transpose flips them).
_FOLD_UP = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))
# A stride-1 axis: the flipped 3-tap kernel.
_FOLD_KEEP = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))


@keras.saving.register_keras_serializable(PACKAGE)
class NearestUpConv3D(keras.layers.Conv3D):
    """A 3x3x3 "same" `Conv3D` on `x` upsampled x2 by nearest neighbour, in one op.

    `x` [B, T, H, W, Cin] -> [B, 2T (T if not `time`), 2H, 2W, filters]. Same variables (a
    [3, 3, 3, Cin, filters] kernel and a bias) and the same output as the two-step
    form up to float rounding, but computed as a stride-2 transposed conv with a
    folded 4x4x4 kernel: 8 taps per output voxel instead of 27 (12 without time
    upsampling), and no upsampled copy of the input in memory.
    """

    def __init__(self, filters: int, time: bool = True, **kwargs):
        for fixed in ("kernel_size", "strides", "padding"):
            kwargs.pop(fixed, None)  # from get_config; fixed by construction
        super().__init__(filters, 3, padding="same", **kwargs)
        self.time = time
        # The transposed conv that runs: its kernel and strides.
        self.folded_kernel_size = (4 if time else 3, 4, 4)
        self.folded_strides = (2 if time else 1, 2, 2)
        fold_t = np.asarray(_FOLD_UP if time else _FOLD_KEEP, np.float32)
        fold = np.asarray(_FOLD_UP, np.float32)
        # Folded tap (a, b, c) sums kernel taps (i, j, k) where the three fold rows are 1.
        self._fold_matrix = np.einsum("ai,bj,ck->abcijk", fold_t, fold, fold).reshape(-1, 27)

    def call(self, x):
        kernel = ops.cast(self.kernel, self.compute_dtype)
        cin, cout = kernel.shape[-2], kernel.shape[-1]
        # [3,3,3,Cin,Cout] -> [4|3,4,4,Cout,Cin], the layout conv_transpose wants:
        # one [taps, 27] @ [27, Cin*Cout] matmul (3x faster than the 5-D einsum).
        folded = ops.matmul(ops.convert_to_tensor(self._fold_matrix, kernel.dtype),
                            ops.reshape(kernel, [27, cin * cout]))
        folded = ops.transpose(ops.reshape(folded, (*self.folded_kernel_size, cin, cout)),
                               (0, 1, 2, 4, 3))
        y = ops.conv_transpose(x, folded, strides=self.folded_strides, padding="same")
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        b, t, h, w, _ = input_shape

        def up(n, k=2):
            return None if n is None else n * k

        return (b, up(t, self.folded_strides[0]), up(h), up(w), self.filters)

    def get_config(self):
        return {**super().get_config(), "time": self.time}


def maybe_spectral(layer: keras.layers.Layer, enabled: bool) -> keras.layers.Layer:
    """Wraps `layer` in spectral normalisation (one power iteration per call)."""
    if not enabled:
        return layer
    return keras.layers.SpectralNormalization(layer, power_iterations=1, name=f"sn_{layer.name}")
