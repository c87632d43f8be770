"""`VideoGenerator`: (z, text embedding) -> video."""

from __future__ import annotations

import math

import keras
from keras import ops

from tfvideogen.models.layers import PACKAGE, ConditionalNorm, NearestUpConv3D

UPSAMPLING = ("transpose", "nearest")
# 3: a 3x3x3 RGB conv at full resolution, 1: a per-voxel one, 0: none (the last
# upsampling conv outputs RGB).
RGB_KERNELS = (0, 1, 3)
OUTPUTS = ("tanh", "clip", "leaky_tanh")
# Slope of leaky_tanh's linear part: tanh(x) + LEAK * x reaches -1 at x = -2.3.
LEAK = 0.01


def _log2(ratio: int, what: str) -> int:
    n = int(round(math.log2(ratio))) if ratio >= 1 else -1
    if n < 0 or 2**n != ratio:
        raise ValueError(f"{what}: ratio {ratio} is not a power of two")
    return n


@keras.saving.register_keras_serializable(PACKAGE)
class VideoGenerator(keras.Model):
    """3D-convolutional conditional generator.

    Inputs: `z` float32 [B, z_dim] (standard normal), `text_embedding` float32
    [B, text_dim]. Output: float32 [B, frames, size, size, 3] in [-1, 1].

    The condition c = [z, text] is projected to a [base_frames, base_size,
    base_size, base_width] map, then upsampled x2 per block (time too, until
    `frames`); every block is conv -> per-sample norm with FiLM(c) -> ReLU,
    so the caption modulates every resolution. `upsampling="transpose"` uses
    a 4x4x4 stride-2 transposed conv (cheap); `"nearest"` is nearest
    upsampling + a 3x3x3 conv (no checkerboard), computed as one folded
    transposed conv (`NearestUpConv3D`, same FLOPs as "transpose"). A final
    full-resolution conv maps to RGB: 3x3x3 (`rgb_kernel=3`) or a per-voxel
    linear map (`rgb_kernel=1`, StyleGAN's toRGB; the last 3x3x3 conv is then
    the last block's). With 3 output channels the 3x3x3 one is the step's
    least efficient conv (README#Speed). `rgb_kernel=0`: no RGB conv, the last
    block's upsampling conv outputs RGB itself (DCGAN), so nothing runs on a
    full-resolution feature map (no full-resolution norm either).

    `output_activation="tanh"` squashes RGB with tanh; `"clip"` leaves it
    linear while training (`training=True`: unbounded, what D sees and pushes
    back into range) and clips to [-1, 1] otherwise: tanh saturates on the black
    background (pre-activations near -10 were measured), and a generator whose
    object pixels saturate too gets no gradient back (the "black collapse").
    `"leaky_tanh"`: tanh(x) + 0.01 x, likewise unclipped while training and
    clipped otherwise. Exact black (-1) is reached at x = -2.3, not at -inf, so
    the background has no reason to drift into saturation, and the gradient
    never falls below 0.01.
    """

    def __init__(self, frames: int = 16, size: int = 32, z_dim: int = 64, text_dim: int = 128,
                 base_width: int = 128, min_width: int = 16, base_frames: int = 2,
                 base_size: int = 4, upsampling: str = "transpose",
                 output_activation: str = "tanh", rgb_kernel: int = 3, **kwargs):
        super().__init__(**kwargs)
        if rgb_kernel not in RGB_KERNELS:
            raise ValueError(f"rgb_kernel must be one of {RGB_KERNELS}, got {rgb_kernel}")
        self.rgb_kernel = rgb_kernel
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling={upsampling!r}; valid: {', '.join(UPSAMPLING)}")
        if output_activation not in OUTPUTS:
            raise ValueError(f"output_activation={output_activation!r}; "
                             f"valid: {', '.join(OUTPUTS)}")
        self.output_activation = output_activation
        self.frames, self.size, self.z_dim, self.text_dim = frames, size, z_dim, text_dim
        self.base_width, self.min_width = base_width, min_width
        self.base_frames, self.base_size, self.upsampling = base_frames, base_size, upsampling
        n_space = _log2(size // base_size if size % base_size == 0 else 0, "size/base_size")
        n_time = _log2(frames // base_frames if frames % base_frames == 0 else 0,
                       "frames/base_frames")
        if n_time > n_space:
            raise ValueError(f"frames/base_frames={frames // base_frames} needs more blocks than "
                             f"size/base_size={size // base_size} gives; raise base_frames")
        self.time_up = [i < n_time for i in range(n_space)]
        self.widths = [max(min_width, base_width // 2**i) for i in range(n_space + 1)]
        if not rgb_kernel:
            self.widths[-1] = 3

        c0 = self.widths[0]
        self.stem = keras.layers.Dense(base_frames * base_size * base_size * c0, name="stem")
        self.stem_norm = ConditionalNorm(c0, name="stem_norm")
        # Blocks are attributes, not list items: tf.train.Checkpoint does not see
        # layers held in Keras-tracked lists.
        self.num_blocks = n_space
        for i, width in enumerate(self.widths[1:]):
            if upsampling == "transpose":
                strides = (2 if self.time_up[i] else 1, 2, 2)
                kernel = (4 if self.time_up[i] else 3, 4, 4)
                conv = keras.layers.Conv3DTranspose(width, kernel, strides, padding="same",
                                                    name=f"up{i}")
            else:
                conv = NearestUpConv3D(width, time=self.time_up[i], name=f"up{i}")
            setattr(self, f"up{i}", conv)
            if rgb_kernel or i < n_space - 1:
                setattr(self, f"norm{i}", ConditionalNorm(width, name=f"norm{i}"))
        if rgb_kernel:
            self.to_rgb = keras.layers.Conv3D(3, rgb_kernel, padding="same", name="to_rgb")
        if output_activation == "tanh":
            self.out = keras.layers.Activation("tanh", dtype="float32", name="tanh")

    @property
    def blocks(self) -> list[tuple[keras.layers.Layer, keras.layers.Layer | None]]:
        """(upsampling conv, norm) per block; with `rgb_kernel=0` the last block's
        conv outputs RGB and has no norm (None)."""
        return [(getattr(self, f"up{i}"), getattr(self, f"norm{i}", None))
                for i in range(self.num_blocks)]

    @property
    def rgb_layer(self) -> keras.layers.Layer:
        """The layer whose output is the RGB pre-activation: `to_rgb`, or with
        `rgb_kernel=0` the last block's upsampling conv."""
        return self.to_rgb if self.rgb_kernel else self.blocks[-1][0]

    def build(self, z_shape=None, text_embedding_shape=None):
        cond = (None, self.z_dim + self.text_dim)
        self.stem.build(cond)
        self.stem_norm.build(None, cond)
        t, s = self.base_frames, self.base_size
        for i, (conv, norm) in enumerate(self.blocks):
            t, s = t * (2 if self.time_up[i] else 1), s * 2
            conv.build((None, t // (2 if self.time_up[i] else 1), s // 2, s // 2,
                        self.widths[i]))
            if norm is not None:
                norm.build(None, cond)
        if self.rgb_kernel:
            self.to_rgb.build((None, t, s, s, self.widths[-1]))
        self.built = True

    def call(self, z, text_embedding, training=None):
        cond = ops.concatenate([ops.cast(z, self.compute_dtype),
                                ops.cast(text_embedding, self.compute_dtype)], axis=-1)
        x = self.stem(cond)
        x = ops.reshape(x, [-1, self.base_frames, self.base_size, self.base_size,
                            self.widths[0]])
        x = ops.relu(self.stem_norm(x, cond))
        for conv, norm in self.blocks:
            x = conv(x)
            if norm is not None:
                x = ops.relu(norm(x, cond))
        rgb = self.to_rgb(x) if self.rgb_kernel else x
        if self.output_activation == "tanh":
            return self.out(rgb)
        rgb = ops.cast(rgb, "float32")
        if self.output_activation == "leaky_tanh":
            rgb = ops.tanh(rgb) + LEAK * rgb
        return rgb if training else ops.clip(rgb, -1.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "size": self.size,
                "z_dim": self.z_dim, "text_dim": self.text_dim, "base_width": self.base_width,
                "min_width": self.min_width, "base_frames": self.base_frames,
                "base_size": self.base_size, "upsampling": self.upsampling,
                "output_activation": self.output_activation,
                "rgb_kernel": self.rgb_kernel}
