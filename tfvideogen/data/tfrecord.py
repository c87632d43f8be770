"""`tfrecord:<glob>`: clips from sharded TFRecords of `tf.train.Example` (see prepare_data.py).

    ds = tfvideogen.data.load("tfrecord:/data/clips/train-*.tfrecord", frames=16,
                              height=64, width=64, seed=0)

The record format (written by :func:`make_example`):

=======================  ==========  ==============================================
key                      type        meaning
=======================  ==========  ==============================================
``video/frames``         bytes [T]   one JPEG or PNG image per frame, all H x W RGB
``video/format``         bytes       ``jpeg`` or ``png``
``video/num_frames``     int64       T
``video/height/width``   int64       H, W of the stored frames
``video/fps``            float       frame rate of the stored frames
``video/source``         bytes       source file (relative to the prepared folder)
``video/clip_start``     int64       first frame's index in the (resampled) source
``video/original_*``     int64/float source ``height``, ``width``, ``fps``, ``num_frames``
``caption``              bytes [N]   0..N captions (UTF-8); none = unconditional
=======================  ==========  ==============================================

Pipeline: shuffled file list -> parallel interleave -> shuffle buffer ->
parallel parse + random temporal crop (only the needed frames are decoded) ->
resize/crop to H x W when the stored size differs -> optional horizontal flip.
Under `tf.distribute` with at least as many files as workers, input is
auto-sharded by FILE, else by DATA.

Resuming: records are shuffled, so an exact element position cannot be
restored. `start` (the element index the trainer resumes from) reseeds every
shuffle instead, so a resumed run draws a fresh order rather than replaying
the clips it saw before the interruption.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from tfvideogen.data import decode
from tfvideogen.data.registry import FileDataset, caption_words, register_reader

FRAMES = "video/frames"
FORMAT = "video/format"
NUM_FRAMES = "video/num_frames"
HEIGHT = "video/height"
WIDTH = "video/width"
FPS = "video/fps"
SOURCE = "video/source"
CLIP_START = "video/clip_start"
ORIGINAL_HEIGHT = "video/original_height"
ORIGINAL_WIDTH = "video/original_width"
ORIGINAL_FPS = "video/original_fps"
ORIGINAL_NUM_FRAMES = "video/original_num_frames"
CAPTION = "caption"

INFO_FILE = "dataset_info.json"
SUFFIX = ".tfrecord"
# Caption of clips without one (unconditional data): the text encoder needs a word.
UNCONDITIONAL_CAPTION = "a video"


# --------------------------------------------------------------------------- #
# Writing.

def _bytes(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def make_example(frames: list[bytes], image_format: str, height: int, width: int, fps: float,
                 source: str, clip_start: int, captions: list[str],
                 original: tuple[int, int, float, int] = (0, 0, 0.0, 0)) -> tf.train.Example:
    """One clip as a `tf.train.Example`.

    `frames`: encoded images (one per frame, all `height` x `width` RGB);
    `original`: source (height, width, fps, decoded frame count).
    """
    if image_format not in ("jpeg", "png"):
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    if not frames:
        raise ValueError("a clip needs at least one frame")
    oh, ow, ofps, on = original
    feature = {
        FRAMES: _bytes(list(frames)),
        FORMAT: _bytes([image_format.encode()]),
        NUM_FRAMES: _int(len(frames)),
        HEIGHT: _int(height), WIDTH: _int(width), FPS: _float(fps),
        SOURCE: _bytes([source.encode("utf-8", "surrogateescape")]),
        CLIP_START: _int(clip_start),
        ORIGINAL_HEIGHT: _int(oh), ORIGINAL_WIDTH: _int(ow), ORIGINAL_FPS: _float(ofps),
        ORIGINAL_NUM_FRAMES: _int(on),
        CAPTION: _bytes([c.encode("utf-8") for c in captions]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


# --------------------------------------------------------------------------- #
# Reading.

def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Serialized Example -> {frames [T] string, captions [N] string, source, fps}."""
    spec = {
        FRAMES: tf.io.RaggedFeature(tf.string),
        CAPTION: tf.io.RaggedFeature(tf.string),
        SOURCE: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FPS: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }
    f = tf.io.parse_single_example(serialized, spec)
    return {"frames": f[FRAMES], "captions": f[CAPTION], "source": f[SOURCE], "fps": f[FPS]}


def num_workers() -> int:
    """Workers in the cluster (TF_CONFIG, as MultiWorkerMirroredStrategy reads it)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return 1
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError):
        return 1
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def mix_seed(seed: int, start: int) -> int:
    """A stream seed from (seed, start): resumed runs reshuffle instead of replaying."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(start) & 0xFFFFFFFF,
                                       0x7F4A7C15]).generate_state(1)[0])


def pick_caption(captions: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """One of `captions` [N] at random (uniform `u` in [0,1)); the unconditional one if N=0."""
    n = tf.size(captions, out_type=tf.int64)
    k = tf.minimum(tf.cast(u * tf.cast(n, tf.float32), tf.int64), tf.maximum(n - 1, 0))
    pool = tf.concat([captions, [UNCONDITIONAL_CAPTION]], 0)
    return tf.gather(pool, tf.where(n > 0, k, n))


def temporal_indices(n: tf.Tensor, frames: int, stride: int, u: tf.Tensor) -> tf.Tensor:
    """`frames` indices into a clip of `n` frames: random start, `stride` apart.

    Clips shorter than the window loop from their start.
    """
    n = tf.cast(n, tf.int64)
    need = (frames - 1) * stride + 1
    room = tf.maximum(n - need, 0) + 1
    offset = tf.minimum(tf.cast(u * tf.cast(room, tf.float32), tf.int64), room - 1)
    return tf.math.floormod(offset + tf.range(frames, dtype=tf.int64) * stride,
                            tf.maximum(n, 1))


def merge_infos(infos: list[dict]) -> dict:
    """The parts of several dataset_info.json files the reader uses, combined."""
    caps = [i.get("captions", {}) for i in infos]
    frames = [i.get("clip", {}).get("frames") for i in infos]
    return {
        "num_examples": sum(i.get("num_examples", 0) for i in infos),
        "clip": {"frames": min(frames) if all(frames) else None},
        "captions": {
            "conditional": any(c.get("conditional", False) for c in caps),
            "values": sorted({v for c in caps for v in c.get("values", [])}),
            "per_example": {"min": min(c.get("per_example", {}).get("min", 0) for c in caps)},
            "source": caps[0].get("source") if len({c.get("source") for c in caps}) == 1
            else "mixed",
        },
        "vocabulary": sorted({w for i in infos for w in i.get("vocabulary", [])}),
    }


@register_reader("tfrecord", "tfrecord:<glob of .tfrecord shards, or their folder>")
class TFRecordVideos(FileDataset):
    """Clips from TFRecord shards written by `prepare_data.py` (local or any gfile URI).

    Options: `shuffle_buffer` (records), `flip` (random horizontal flips),
    `frame_stride` (temporal subsampling at read time), `cycle_length`
    (files read at once). Other keyword options are accepted and ignored.
    """

    def __init__(self, pattern: str, shuffle_buffer: int = 256, flip: bool = False,
                 frame_stride: int = 1, cycle_length: int = 16, **unused):
        decode.ensure_filesystem(pattern)
        if shuffle_buffer < 1 or frame_stride < 1 or cycle_length < 1:
            raise ValueError(f"tfrecord: shuffle_buffer, frame_stride and cycle_length must be "
                             f">= 1, got {shuffle_buffer}, {frame_stride}, {cycle_length}")
        self.name = f"tfrecord:{pattern}"
        self.pattern = pattern
        if tf.io.gfile.isdir(pattern):
            pattern = os.path.join(pattern, "*" + SUFFIX)
        self.files = sorted(tf.io.gfile.glob(pattern))
        if not self.files:
            raise FileNotFoundError(f"tfrecord: no files match {pattern!r}")
        self.shuffle_buffer = int(shuffle_buffer)
        self.flip = bool(flip)
        self.frame_stride = int(frame_stride)
        self.cycle_length = int(cycle_length)
        self.info = self._load_info()
        if self.info.get("num_examples", 1) == 0:
            raise ValueError(f"tfrecord: {pattern!r} holds no clips")
        caps = self.info.get("captions", {})
        self._captions = sorted(caps.get("values", [])) or [UNCONDITIONAL_CAPTION]
        self._words = sorted(self.info.get("vocabulary", []))
        if not caps.get("conditional", False) or caps.get("per_example", {}).get("min", 1) == 0:
            self._words = sorted(set(self._words) | set(caption_words(UNCONDITIONAL_CAPTION)))
        self.attributes = ({"class": tuple(self._captions)} if caps.get("source") == "folder"
                           else {})

    # -- metadata ----------------------------------------------------------- #

    def _load_info(self) -> dict:
        """dataset_info.json beside the shards (merged over folders), else a caption scan."""
        infos = []
        folders = sorted({os.path.dirname(f) for f in self.files})
        for folder in folders:
            path = os.path.join(folder, INFO_FILE)
            if not tf.io.gfile.exists(path):
                break
            with tf.io.gfile.GFile(path) as f:
                try:
                    infos.append(json.load(f))
                except json.JSONDecodeError as e:
                    logging.warning("tfrecord: unreadable %s (%s)", path, e)
                    break
        if infos and len(infos) == len(folders):
            return infos[0] if len(infos) == 1 else merge_infos(infos)
        logging.warning("tfrecord: no readable %s beside every shard of %s; scanning the "
                        "records for captions", INFO_FILE, self.pattern)
        return self.scan()

    def scan(self) -> dict:
        """Captions and vocabulary from the records themselves (reads every shard)."""
        counts: dict[str, int] = {}
        per_example = []
        ds = tf.data.TFRecordDataset(self.files).map(tf.autograph.experimental.do_not_convert(
            lambda s: tf.io.parse_single_example(s, {CAPTION: tf.io.RaggedFeature(tf.string)})))
        for rec in ds.ignore_errors().as_numpy_iterator():
            caps = [c.decode("utf-8", "replace") for c in rec[CAPTION]]
            per_example.append(len(caps))
            for c in caps:
                counts[c] = counts.get(c, 0) + 1
        words = sorted({w for c in counts for w in caption_words(c)})
        return {"num_examples": len(per_example),
                "captions": {"conditional": bool(counts), "values": sorted(counts),
                             "per_example": {"min": min(per_example, default=0)},
                             "source": "scan"},
                "vocabulary": words}

    # -- pipeline ----------------------------------------------------------- #

    def make(self, split, frames, height, width, seed, num_examples=None, start=0):
        self.check_split(split)
        clip = self.info.get("clip", {})
        need = (frames - 1) * self.frame_stride + 1
        if clip.get("frames") and clip["frames"] < need:
            logging.warning("%s: stored clips have %d frames, %d wanted (frames=%d, stride=%d): "
                            "clips are looped", self.name, clip["frames"], need, frames,
                            self.frame_stride)
        stream = mix_seed(seed, start)
        files = tf.data.Dataset.from_tensor_slices(self.files)
        files = files.shuffle(len(self.files), seed=stream, reshuffle_each_iteration=True)
        files = files.repeat()
        ds = files.interleave(
            _read_file, cycle_length=min(self.cycle_length, len(self.files)), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.shuffle(self.shuffle_buffer, seed=stream, reshuffle_each_iteration=True)
        ds = ds.enumerate()
        stride, flip = self.frame_stride, self.flip

        # Plain graph code: skipping AutoGraph saves seconds of tracing.
        @tf.autograph.experimental.do_not_convert
        def element(index, serialized):
            rec = parse_record(serialized)
            u = tf.random.stateless_uniform([3], seed=tf.stack(
                [tf.constant(stream & 0x7FFFFFFF, tf.int64), index]))
            idx = temporal_indices(tf.size(rec["frames"]), frames, stride, u[0])
            picked = tf.gather(rec["frames"], idx)
            # Static unroll: decode only the T frames used, in parallel ops.
            video = tf.stack([tf.io.decode_image(picked[k], channels=3, expand_animations=False)
                              for k in range(frames)])
            video = decode.fit_video(video, height, width)
            if flip:
                video = tf.where(u[1] < 0.5, tf.reverse(video, axis=[2]), video)
            return {"video": decode.to_model_range(video, frames, height, width),
                    "caption": pick_caption(rec["captions"], u[2])}

        ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors(log_warning=True)  # a corrupt image/record is skipped
        if num_examples is not None:
            ds = ds.take(num_examples)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = self.auto_shard_policy()
        return ds.with_options(options)

    def auto_shard_policy(self) -> tf.data.experimental.AutoShardPolicy:
        """FILE when every worker gets at least one file, else DATA."""
        if len(self.files) >= num_workers():
            return tf.data.experimental.AutoShardPolicy.FILE
        return tf.data.experimental.AutoShardPolicy.DATA


@tf.autograph.experimental.do_not_convert
def _read_file(path: tf.Tensor) -> tf.data.Dataset:
    # A truncated shard (interrupted copy) loses its tail, not the run.
    return tf.data.TFRecordDataset(path, buffer_size=4 << 20).ignore_errors(log_warning=True)
