"""`bouncing_digits`: the captioned bouncing-digit task of Sync-DRAW / TGANs-C.

Caption grammar (exact): ``the digit {d} is moving {left and right|up and down}``.
Digits come from an MNIST `.npz` (`keras.datasets.mnist` format: `x_train`,
`y_train`) when `mnist_path` is given, otherwise from glyphs rendered with
Pillow under random affine jitter. The Sync-DRAW split gives each digit one
motion in `train`/`validation` and the other one in `heldout`.
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from tfvideogen.data import motion as motion_lib
from tfvideogen.data.registry import BuiltinDataset, register, split_seed

MOTIONS = motion_lib.MOTIONS
# Even digits move left/right in training, odd digits up/down; held out: the other.
TRAIN_PAIRS = tuple((d, MOTIONS[d % 2]) for d in range(10))
HELDOUT_PAIRS = tuple((d, MOTIONS[1 - d % 2]) for d in range(10))
GLYPH_FRACTION = 28.0 / 64.0  # MNIST's 28 px digit on the standard 64 px canvas
SPEED_RANGE = (0.04, 0.08)
_CAPTION = re.compile(r"the digit (\d) is moving (left and right|up and down)")


def caption(digit: int, motion: str) -> str:
    return f"the digit {digit} is moving {motion}"


@register("bouncing_digits")
class BouncingDigits(BuiltinDataset):
    name = "bouncing_digits"
    attributes = {"digit": tuple(str(d) for d in range(10)), "motion": MOTIONS}

    def __init__(self, mnist_path: str = "", glyphs_per_digit: int = 64, **unused):
        self.mnist_path = mnist_path
        self.glyphs_per_digit = glyphs_per_digit

    def _pairs(self, split):
        self.check_split(split)
        return HELDOUT_PAIRS if split == "heldout" else TRAIN_PAIRS

    def captions(self, split):
        return sorted(caption(d, m) for d, m in self._pairs(split))

    def parse_caption(self, text):
        m = _CAPTION.fullmatch(text)
        if not m:
            raise ValueError(f"not a bouncing_digits caption: {text!r}")
        return {"digit": m[1], "motion": m[2]}

    def glyph_bank(self, size: int, seed: int) -> np.ndarray:
        """[10, K, size, size] float32 in [0, 1]: K images per digit."""
        if self.mnist_path:
            return _mnist_bank(self.mnist_path, size, self.glyphs_per_digit, seed)
        return _rendered_bank(size, self.glyphs_per_digit, seed)

    def make(self, split, frames, height, width, seed, num_examples=None, start=0):
        pairs = self._pairs(split)
        stream = split_seed(seed, split, self.splits)
        side = min(height, width)
        g = max(4, int(round(GLYPH_FRACTION * side)))
        bank = tf.constant(self.glyph_bank(g, seed))
        k = bank.shape[1]
        digits = tf.constant([d for d, _ in pairs], tf.int64)
        motions = tf.constant([MOTIONS.index(m) for _, m in pairs], tf.int32)
        texts = tf.constant([caption(d, m) for d, m in pairs])
        n = len(pairs)

        def element(index):
            u = tf.random.stateless_uniform([6], seed=motion_lib.element_seed(stream, index))
            pick = tf.minimum(tf.cast(u[0] * n, tf.int64), n - 1)
            glyph_id = tf.minimum(tf.cast(u[1] * k, tf.int64), k - 1)
            glyph = bank[tf.gather(digits, pick), glyph_id]
            along_x = tf.equal(tf.gather(motions, pick), 0)
            ext_x, ext_y = float(width - g), float(height - g)
            ext_move = tf.where(along_x, ext_x, ext_y)
            speed = motion_lib.uniform(u[2], *SPEED_RANGE) * side
            moving = motion_lib.bounce(u[3] * 2.0 * ext_move, speed, ext_move, frames)
            fixed = u[4] * tf.where(along_x, ext_y, ext_x) * tf.ones([frames])
            x0 = tf.where(along_x, moving, fixed)
            y0 = tf.where(along_x, fixed, moving)
            canvas = tf.image.pad_to_bounding_box(glyph[..., None], 0, 0, height, width)
            canvas = tf.repeat(canvas[None], frames, axis=0)
            # Translate the glyph by (x0, y0) per frame, bilinear (sub-pixel motion).
            transforms = tf.stack([tf.ones([frames]), tf.zeros([frames]), -x0,
                                   tf.zeros([frames]), tf.ones([frames]), -y0,
                                   tf.zeros([frames]), tf.zeros([frames])], axis=1)
            video = tf.raw_ops.ImageProjectiveTransformV3(
                images=canvas, transforms=transforms, output_shape=[height, width],
                fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
            video = tf.clip_by_value(tf.tile(video, [1, 1, 1, 3]), 0.0, 1.0)
            return {"video": video * 2.0 - 1.0, "caption": tf.gather(texts, pick)}

        return motion_lib.indexed(element, num_examples, start)


def _rendered_bank(size: int, per_digit: int, seed: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    big = 56  # render large, then jitter and downsample (smooth strokes)
    bank = np.zeros([10, per_digit, size, size], np.float32)
    for d in range(10):
        for k in range(per_digit):
            font = ImageFont.load_default(size=int(big * rng.uniform(0.85, 1.0)))
            img = Image.new("L", (big, big), 0)
            draw = ImageDraw.Draw(img)
            box = draw.textbbox((0, 0), str(d), font=font, stroke_width=1)
            pos = ((big - (box[2] - box[0])) / 2 - box[0], (big - (box[3] - box[1])) / 2 - box[1])
            draw.text(pos, str(d), fill=255, font=font,
                      stroke_width=int(rng.integers(2, 5)), stroke_fill=255)
            # Random affine jitter: rotation, shear, scale, shift (inverse map).
            a = np.deg2rad(rng.uniform(-12, 12))
            sh = rng.uniform(-0.25, 0.25)
            sc = rng.uniform(0.9, 1.1)
            m = np.array([[np.cos(a), -np.sin(a) + sh], [np.sin(a), np.cos(a)]]) / sc
            c = np.array([big / 2, big / 2])
            off = c - m @ c + rng.uniform(-2, 2, size=2)
            img = img.transform((big, big), Image.AFFINE,
                                (m[0, 0], m[0, 1], off[0], m[1, 0], m[1, 1], off[1]),
                                resample=Image.BILINEAR)
            bank[d, k] = np.asarray(img.resize((size, size), Image.LANCZOS), np.float32) / 255.0
    return np.clip(bank, 0.0, 1.0)


def _mnist_bank(path: str, size: int, per_digit: int, seed: int) -> np.ndarray:
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"bouncing_digits: MNIST file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            with np.load(f) as npz:
                x, y = npz["x_train"], npz["y_train"]
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"bouncing_digits: {path} is not an MNIST .npz with "
                             f"x_train/y_train ({e})") from None
    if x.ndim != 3 or len(x) != len(y):
        raise ValueError(f"bouncing_digits: {path}: x_train must be [N,H,W] matching y_train, "
                         f"got {x.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    bank = np.zeros([10, per_digit, size, size], np.float32)
    for d in range(10):
        idx = np.flatnonzero(y == d)
        if len(idx) == 0:
            raise ValueError(f"bouncing_digits: {path} has no images of digit {d}")
        chosen = rng.choice(idx, per_digit, replace=len(idx) < per_digit)
        imgs = tf.image.resize(x[chosen][..., None].astype(np.float32) / 255.0, [size, size],
                               method="area")
        bank[d] = imgs.numpy()[..., 0]
    return np.clip(bank, 0.0, 1.0)
