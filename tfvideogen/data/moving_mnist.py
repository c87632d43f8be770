"""`moving_mnist:<path>`: the standard Moving MNIST file (`mnist_test_seq.npy`).

The file holds uint8 [20, N, 64, 64] (frames, sequences, height, width; the
`layout="NTHW"` option reads [N, 20, 64, 64] arrays). Clips are unconditional
(captioned "a video"). The last tenth of the sequences is the `validation`
split. Elements are indexed like the built-in datasets: element i is a pure
function of (seed, split, i) (a random sequence and temporal window), so
`start` resumes exactly. Local files are memory-mapped, not loaded.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfvideogen.data import decode
from tfvideogen.data import tfrecord as tfrecord_lib
from tfvideogen.data.registry import BuiltinDataset, register_reader, split_seed


def load_array(path: str, layout: str = "TNHW") -> np.ndarray:
    """The sequences as uint8 [N, T, H, W] (a view when memory-mapped)."""
    if layout not in ("TNHW", "NTHW"):
        raise ValueError(f"moving_mnist: layout must be TNHW or NTHW, got {layout!r}")
    decode.ensure_filesystem(path)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"moving_mnist: file not found: {path}")
    try:
        if decode.is_local(path):
            array = np.load(decode.local_path(path), mmap_mode="r", allow_pickle=False)
        else:
            with tf.io.gfile.GFile(path, "rb") as f:
                array = np.load(f, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"moving_mnist: {path} is not a .npy array ({e})") from None
    if array.ndim != 4 or array.dtype != np.uint8:
        raise ValueError(f"moving_mnist: {path} must hold uint8 [T, N, H, W] (standard "
                         f"[20, 10000, 64, 64]), got {array.dtype} {list(array.shape)}")
    array = array.transpose(1, 0, 2, 3) if layout == "TNHW" else array
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"moving_mnist: {path} holds no sequence ({list(array.shape)})")
    return array


@register_reader("moving_mnist", "moving_mnist:<path to mnist_test_seq.npy>")
class MovingMNIST(BuiltinDataset):
    """Unconditional Moving MNIST clips; splits `train` (90%) and `validation` (10%)."""

    splits = ("train", "validation")
    attributes: dict[str, tuple[str, ...]] = {}

    def __init__(self, path: str, layout: str = "TNHW", frame_stride: int = 1, **unused):
        if frame_stride < 1:
            raise ValueError(f"moving_mnist: frame_stride must be >= 1, got {frame_stride}")
        self.name = f"moving_mnist:{path}"
        self.path = path
        self.data = load_array(path, layout)
        self.frame_stride = int(frame_stride)
        n = self.data.shape[0]
        held = max(1, n // 10) if n >= 2 else 0
        self.ranges = {"train": (0, n - held), "validation": (n - held, n)}

    @property
    def sequence_frames(self) -> int:
        return int(self.data.shape[1])

    def captions(self, split: str) -> list[str]:
        self.check_split(split)
        return [tfrecord_lib.UNCONDITIONAL_CAPTION]

    def parse_caption(self, caption: str) -> dict[str, str]:
        return {}

    def make(self, split, frames, height, width, seed, num_examples=None, start=0):
        self.check_split(split)
        lo, hi = self.ranges[split]
        if hi <= lo:
            raise ValueError(f"{self.name}: split {split!r} is empty (the file holds "
                             f"{self.data.shape[0]} sequence(s))")
        stride = self.frame_stride
        need = (frames - 1) * stride + 1
        if need > self.sequence_frames:
            raise ValueError(f"{self.name}: sequences have {self.sequence_frames} frames; "
                             f"frames={frames} with frame_stride={stride} needs {need}")
        stream = split_seed(seed, split, self.splits)
        data, room = self.data, self.sequence_frames - need + 1
        h, w = int(data.shape[2]), int(data.shape[3])

        def fetch(seq, offset):
            return np.ascontiguousarray(data[int(seq), int(offset):int(offset) + need:stride])

        # Plain graph code: skipping AutoGraph saves seconds of tracing.
        @tf.autograph.experimental.do_not_convert
        def element(index):
            u = tf.random.stateless_uniform([2], seed=tf.stack(
                [tf.constant(stream, tf.int64), tf.cast(index, tf.int64)]))
            seq = lo + tf.minimum(tf.cast(u[0] * (hi - lo), tf.int64), hi - lo - 1)
            offset = tf.minimum(tf.cast(u[1] * room, tf.int64), room - 1)
            clip = tf.numpy_function(fetch, [seq, offset], tf.uint8, stateful=False)
            clip = tf.ensure_shape(clip, [frames, h, w])[..., None]
            clip = tf.tile(decode.fit_video(clip, height, width), [1, 1, 1, 3])
            return {"video": decode.to_model_range(clip, frames, height, width),
                    "caption": tf.constant(tfrecord_lib.UNCONDITIONAL_CAPTION)}

        stop = start + num_examples if num_examples is not None else tf.int64.max
        ds = tf.data.Dataset.range(start, stop)
        return ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
