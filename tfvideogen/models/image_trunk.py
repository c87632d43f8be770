"""`ImageTrunk`: the conditional 2D image generator of the MoCoGAN and layered generators."""

from __future__ import annotations

import keras
from keras import ops

from tfvideogen.models.generator import _log2
from tfvideogen.models.layers import ConditionalNorm


class ImageTrunk:
    """Mixin for a keras.Model: cond [N, C] -> [N, size, size, channels].

    Dense stem -> [base_size, base_size, base_width] -> x2 transposed-conv
    blocks (4x4, stride 2), each with per-sample norm + FiLM(cond) and ReLU;
    `rgb_kernel=3`: a 3x3 conv (attribute `out_name`) maps the last block's
    maps to `channels`; `0`: the last transposed conv outputs them, un-normed.
    The layers are attributes of the model itself (stem, stem_norm, up{i},
    norm{i}), so checkpoints keep the paths they had before the mixin.
    """

    def _make_trunk(self, size: int, base_size: int, base_width: int, min_width: int,
                    rgb_kernel: int, channels: int, out_name: str) -> None:
        if rgb_kernel not in (0, 3):
            raise ValueError(f"{type(self).__name__} rgb_kernel must be 0 or 3, got {rgb_kernel}")
        self.rgb_kernel, self.base_size, self.trunk_output = rgb_kernel, base_size, out_name
        self.num_blocks = _log2(size // base_size if size % base_size == 0 else 0,
                                "size/base_size")
        self.widths = [max(min_width, base_width // 2**i) for i in range(self.num_blocks + 1)]
        if not rgb_kernel:
            self.widths[-1] = channels
        self.stem = keras.layers.Dense(base_size * base_size * self.widths[0], name="stem")
        self.stem_norm = ConditionalNorm(self.widths[0], name="stem_norm")
        for i, width in enumerate(self.widths[1:]):
            setattr(self, f"up{i}", keras.layers.Conv2DTranspose(width, 4, 2, padding="same",
                                                                 name=f"up{i}"))
            if rgb_kernel or i < self.num_blocks - 1:
                setattr(self, f"norm{i}", ConditionalNorm(width, name=f"norm{i}"))
        if rgb_kernel:
            setattr(self, out_name, keras.layers.Conv2D(channels, 3, padding="same",
                                                        name=out_name))

    def _build_trunk(self, cond_shape: tuple) -> None:
        self.stem.build(cond_shape)
        self.stem_norm.build(None, cond_shape)
        s = self.base_size
        for i in range(self.num_blocks):
            getattr(self, f"up{i}").build((None, s, s, self.widths[i]))
            if (norm := getattr(self, f"norm{i}", None)) is not None:
                norm.build(None, cond_shape)
            s *= 2
        if self.rgb_kernel:
            getattr(self, self.trunk_output).build((None, s, s, self.widths[-1]))

    def _run_trunk(self, cond):
        x = ops.reshape(self.stem(cond), [-1, self.base_size, self.base_size, self.widths[0]])
        x = ops.relu(self.stem_norm(x, cond))
        for i in range(self.num_blocks):
            x = getattr(self, f"up{i}")(x)
            if (norm := getattr(self, f"norm{i}", None)) is not None:
                x = ops.relu(norm(x, cond))
        return getattr(self, self.trunk_output)(x) if self.rgb_kernel else x
