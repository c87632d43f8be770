"""`moving_shapes`: colored shapes bouncing on a black background, with captions.

Caption grammar (exact): ``a {color} {shape} is moving {motion}``; two-object
clips join two clauses with `` and ``. The `heldout` split uses only the
color/shape/motion combinations in :data:`HELDOUT`, which `train` and
`validation` never show, to measure compositional generalisation.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import tensorflow as tf

from tfvideogen.data import motion as motion_lib
from tfvideogen.data.registry import BuiltinDataset, register, split_seed

COLORS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "yellow": (255, 255, 0), "magenta": (255, 0, 255), "cyan": (0, 255, 255),
    "white": (255, 255, 255),
}
SHAPES = ("square", "circle", "triangle")
MOTIONS = motion_lib.MOTIONS
# One held-out combination per color; every color, shape and motion still
# appears in `train`, only these triples do not.
HELDOUT = (
    ("red", "circle", "up and down"),
    ("green", "triangle", "left and right"),
    ("blue", "square", "up and down"),
    ("yellow", "triangle", "up and down"),
    ("magenta", "square", "left and right"),
    ("cyan", "circle", "left and right"),
    ("white", "triangle", "left and right"),
)
ALL_COMBOS = tuple(itertools.product(COLORS, SHAPES, MOTIONS))
TRAIN_COMBOS = tuple(c for c in ALL_COMBOS if c not in HELDOUT)
SIZE_RANGE = (0.25, 0.40)   # object side, fraction of the frame
SPEED_RANGE = (0.05, 0.10)  # pixels per frame, fraction of the frame
_CLAUSE = re.compile(r"a (\w+) (\w+) is moving (left and right|up and down)")


def clause(color: str, shape: str, motion: str) -> str:
    return f"a {color} {shape} is moving {motion}"


@register("moving_shapes")
class MovingShapes(BuiltinDataset):
    name = "moving_shapes"
    attributes = {"color": tuple(COLORS), "shape": SHAPES, "motion": MOTIONS}

    def __init__(self, num_objects: int = 1, **unused):
        if num_objects not in (1, 2):
            raise ValueError(f"moving_shapes: num_objects must be 1 or 2, got {num_objects}")
        self.num_objects = num_objects

    def _combos(self, split: str) -> tuple[tuple[str, str, str], ...]:
        self.check_split(split)
        return HELDOUT if split == "heldout" else TRAIN_COMBOS

    def captions(self, split: str) -> list[str]:
        first = [clause(*c) for c in self._combos(split)]
        if self.num_objects == 1:
            return sorted(first)
        second = [clause(*c) for c in TRAIN_COMBOS]
        return sorted(f"{a} and {b}" for a in first for b in second)

    def parse_caption(self, caption: str) -> dict[str, str]:
        clauses = caption.split(" and a ")
        out: dict[str, str] = {}
        for i, text in enumerate(clauses):
            text = text if i == 0 else "a " + text
            m = _CLAUSE.fullmatch(text)
            if not m or m[1] not in COLORS or m[2] not in SHAPES:
                raise ValueError(f"not a moving_shapes caption: {caption!r}")
            suffix = "" if i == 0 else f"_{i + 1}"
            out.update({f"color{suffix}": m[1], f"shape{suffix}": m[2], f"motion{suffix}": m[3]})
        return out

    def make(self, split, frames, height, width, seed, num_examples=None, start=0):
        combos = self._combos(split)
        stream = split_seed(seed, split, self.splits)
        first = _combo_table(combos)
        second = _combo_table(TRAIN_COMBOS)
        n_obj = self.num_objects

        def element(index):
            s = motion_lib.element_seed(stream, index)
            u = tf.random.stateless_uniform([n_obj, 8], seed=s)
            video = tf.zeros([frames, height, width, 3])
            captions = []
            for k in range(n_obj):
                table = first if k == 0 else second
                video, text = _draw(video, table, u[k], frames, height, width)
                captions.append(text)
            caption = captions[0] if n_obj == 1 else tf.strings.join(captions, " and ")
            return {"video": video * 2.0 - 1.0, "caption": caption}

        return motion_lib.indexed(element, num_examples, start)


def _combo_table(combos):
    colors = np.array([COLORS[c] for c, _, _ in combos], np.float32) / 255.0
    shapes = np.array([SHAPES.index(s) for _, s, _ in combos], np.int32)
    motions = np.array([MOTIONS.index(m) for _, _, m in combos], np.int32)
    texts = np.array([clause(*c) for c in combos])
    return tuple(tf.constant(a) for a in (colors, shapes, motions, texts))


def _draw(video, table, u, frames, height, width):
    """Composites one object (params from uniforms `u` [8]) over `video`."""
    colors, shapes, motions, texts = table
    n = tf.shape(texts, out_type=tf.int64)[0]
    pick = tf.minimum(tf.cast(u[0] * tf.cast(n, tf.float32), tf.int64), n - 1)
    color = tf.gather(colors, pick)
    shape, motion = tf.gather(shapes, pick), tf.gather(motions, pick)
    side = float(min(height, width))
    size = motion_lib.uniform(u[1], *SIZE_RANGE) * side
    speed = motion_lib.uniform(u[2], *SPEED_RANGE) * side
    # Moving axis: bounce in [0, extent]; still axis: a random fixed position.
    along_x = tf.equal(motion, 0)
    ext_x, ext_y = width - size, height - size
    moving = motion_lib.bounce(u[3] * 2.0 * tf.where(along_x, ext_x, ext_y), speed,
                               tf.where(along_x, ext_x, ext_y), frames)
    fixed = u[4] * tf.where(along_x, ext_y, ext_x) * tf.ones([frames])
    x0 = tf.where(along_x, moving, fixed)
    y0 = tf.where(along_x, fixed, moving)
    cx = (x0 + size / 2.0)[:, None, None]
    cy = (y0 + size / 2.0)[:, None, None]
    ys = tf.range(height, dtype=tf.float32)[None, :, None] + 0.5
    xs = tf.range(width, dtype=tf.float32)[None, None, :] + 0.5
    dx, dy, half = xs - cx, ys - cy, size / 2.0
    sd_square = tf.maximum(tf.abs(dx), tf.abs(dy)) - half
    sd_circle = tf.sqrt(dx * dx + dy * dy) - half
    sd_triangle = tf.maximum(dy - half, (2.0 * tf.abs(dx) - dy - half) / np.sqrt(5.0))
    sd = tf.gather(tf.stack([sd_square, sd_circle, sd_triangle]), shape)
    alpha = tf.clip_by_value(0.5 - sd, 0.0, 1.0)[..., None]  # 1-pixel anti-aliasing
    return video * (1.0 - alpha) + alpha * color, tf.gather(texts, pick)
