"""`LayeredGenerator`: an appearance layer moved by per-frame poses (LR-GAN + MoCoGAN)."""

from __future__ import annotations

import keras
from keras import ops

from tfvideogen.models.image_trunk import ImageTrunk
from tfvideogen.models.layers import PACKAGE

# Bounds of the per-frame pose: translation in half-canvas units, log-scale.
MAX_SHIFT = 1.0
MAX_LOG_SCALE = 0.5


def sampling_weights(shift: keras.KerasTensor, scale: keras.KerasTensor,
                     size: int) -> keras.KerasTensor:
    """[...] shifts and scales -> float32 [..., size, size] bilinear sampling matrices.

    Row i holds the weights of the source pixels read by output pixel i of an
    axis-aligned transform `u -> scale * u + shift` in normalised coordinates
    (pixel centres at (2i + 1) / size - 1): output i reads the source at
    `(u_i - shift) / scale` by linear interpolation. Rows sum to 1 inside the
    canvas and fall to 0 outside (nothing is read there). Written with floor
    and one-hot rows, not as a hat kernel relu(1 - |d|): the hat's gradient is
    0 where the source lands on a pixel centre, so a generator starting at the
    identity pose would never move.
    """
    centres = (2.0 * ops.arange(size, dtype="float32") + 1.0) / size - 1.0  # [S]
    source = (centres - shift[..., None]) / scale[..., None]  # [..., S] normalised
    source = ((source + 1.0) * size - 1.0) / 2.0  # pixel index
    left = ops.floor(source)
    frac = (source - left)[..., None]
    left = ops.cast(left, "int32")  # one-hot of an index off the canvas is all zeros
    return (ops.one_hot(left, size) * (1.0 - frac)
            + ops.one_hot(left + 1, size) * frac)


@keras.saving.register_keras_serializable(PACKAGE)
class LayeredGenerator(ImageTrunk, keras.Model):
    """A clip as one appearance layer moved over a background by per-frame poses.

    Same contract as `VideoGenerator`: `z` float32 [B, z_dim], `text_embedding`
    [B, text_dim] -> float32 [B, frames, size, size, 3] in [-1, 1].

    The caption vector is read in two halves: the first (with z) conditions a
    2D generator that draws the clip's layers once - a foreground RGB, its
    alpha and a background RGB (LR-GAN's layers, Yang et al. 2017); the second
    (with z) drives a GRU and modulates its per-frame states (FiLM), which give
    a pose - translation and scale - for the foreground (MoCoGAN's motion
    codes). Frame t is the foreground and alpha
    resampled by pose t (bilinear, as two [S, S] matrix products per frame),
    composited over the background. So what is drawn cannot depend on the
    second half and how it moves cannot depend on the first: with the builtin
    encoder's fixed routes (`pooling="routed"`, `route_words` = the motion
    words, which go to head 1 = the second half), an unseen pairing of seen
    appearance and motion words composes (README#Quality). The layers
    cost one 2D image per clip, so G's share of a step is small.

    Fits clips of objects moving over a static background (the builtin
    datasets); it cannot draw deformation, rotation or a moving background.
    `rgb_kernel=3`: a 3x3 conv maps the last block's maps to the layers; `0`:
    the last transposed conv outputs them.
    """

    def __init__(self, frames: int = 16, size: int = 32, z_dim: int = 64, text_dim: int = 128,
                 motion_dim: int = 16, base_width: int = 128, min_width: int = 16,
                 base_size: int = 4, rgb_kernel: int = 3, **kwargs):
        super().__init__(**kwargs)
        if text_dim < 2 or text_dim % 2:
            raise ValueError(f"LayeredGenerator reads the text embedding in two halves; "
                             f"text_dim={text_dim} must be even")
        self.frames, self.size, self.z_dim, self.text_dim = frames, size, z_dim, text_dim
        self.motion_dim, self.base_width, self.min_width = motion_dim, base_width, min_width
        # Appearance: 2D generator -> foreground RGB (3), alpha (1), background RGB (3).
        self._make_trunk(size, base_size, base_width, min_width, rgb_kernel, 7, "to_layers")
        # Motion: per-frame innovations from z, the motion half at every step.
        self.innovations = keras.layers.Dense(frames * motion_dim, name="innovations")
        self.motion_init = keras.layers.Dense(motion_dim, activation="tanh", name="motion_init")
        # unroll: a fixed-length loop of builtin ops (TFLite-friendly, fast for short T).
        self.motion_rnn = keras.layers.GRU(motion_dim, return_sequences=True, unroll=True,
                                           name="motion_rnn")
        # The motion half scales and shifts the motion codes (as ConditionalNorm's
        # FiLM does the appearance maps), so it can pick the axis a clip moves on.
        self.motion_gamma = keras.layers.Dense(motion_dim, kernel_initializer="zeros",
                                               bias_initializer="ones", name="motion_gamma")
        self.motion_beta = keras.layers.Dense(motion_dim, kernel_initializer="zeros",
                                              name="motion_beta")
        # Zero-initialised: every frame starts at the identity pose. (Measured
        # worse: velocities integrated into positions - clips froze at the edges
        # under tanh bounds and jumped under reflecting ones.)
        self.pose = keras.layers.Dense(3, kernel_initializer="zeros", name="pose",
                                       dtype="float32")

    def build(self, z_shape=None, text_embedding_shape=None):
        half = self.text_dim // 2
        cond = (None, self.z_dim + half)
        self._build_trunk(cond)
        self.innovations.build((None, self.z_dim))
        self.motion_init.build(cond)
        self.motion_rnn.build((None, self.frames, self.motion_dim + half))
        self.motion_gamma.build(cond)
        self.motion_beta.build(cond)
        self.pose.build((None, self.frames, self.motion_dim))
        self.built = True

    def layers_and_poses(self, z, text_embedding, training=None):
        """-> (layers float32 [B, S, S, 7]: foreground RGB, alpha logit,
        background RGB (pre-activation); poses float32 [B, T, 3]: shift x,
        shift y, log-scale)."""
        dt = self.compute_dtype
        z = ops.cast(z, dt)
        text = ops.cast(text_embedding, dt)
        half = self.text_dim // 2
        look = ops.concatenate([z, text[:, :half]], axis=-1)
        move = ops.concatenate([z, text[:, half:]], axis=-1)

        layers = ops.cast(self._run_trunk(look), "float32")

        eps = ops.reshape(self.innovations(z), [-1, self.frames, self.motion_dim])
        steps = ops.concatenate(
            [eps, ops.repeat(text[:, None, half:], self.frames, axis=1)], axis=-1)
        motion = self.motion_rnn(steps, initial_state=self.motion_init(move), training=training)
        motion = motion * self.motion_gamma(move)[:, None] + self.motion_beta(move)[:, None]
        p = ops.tanh(self.pose(ops.cast(motion, "float32")))  # [B, T, 3]
        poses = p * ops.convert_to_tensor([MAX_SHIFT, MAX_SHIFT, MAX_LOG_SCALE], "float32")
        return layers, poses

    def call(self, z, text_embedding, training=None):
        layers, poses = self.layers_and_poses(z, text_embedding, training=training)
        alpha = ops.sigmoid(layers[..., 3:4])
        # Premultiplied, so resampling blends colour and coverage alike.
        fg = ops.concatenate([ops.tanh(layers[..., :3]) * alpha, alpha], axis=-1)
        background = ops.tanh(layers[..., 4:])
        scale = ops.exp(poses[..., 2])
        rows = sampling_weights(poses[..., 1], scale, self.size)  # [B, T, S, S]
        cols = sampling_weights(poses[..., 0], scale, self.size)
        moved = ops.einsum("btiy,byxc->btixc", rows, fg)
        moved = ops.einsum("btjx,btixc->btijc", cols, moved)  # [B, T, S, S, 4]
        # Rows of the sampling matrices sum to <= 1, so |colour| <= coverage <= 1.
        return moved[..., :3] + (1.0 - moved[..., 3:]) * background[:, None]

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "size": self.size,
                "z_dim": self.z_dim, "text_dim": self.text_dim, "motion_dim": self.motion_dim,
                "base_width": self.base_width, "min_width": self.min_width,
                "base_size": self.base_size, "rgb_kernel": self.rgb_kernel}
