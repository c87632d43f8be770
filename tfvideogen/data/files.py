"""`videos:<folder or glob>`: clips decoded straight from video files (small sets).

    ds = tfvideogen.data.load("videos:/data/my_clips", frames=16, height=64, width=64)

Each element decodes one file with ffmpeg (imageio-ffmpeg) at the target size
in a parallel `tf.data` map, then takes a random `frames`-long window. Decoded
files are kept in memory up to `cache_mb`, so later epochs of a small set cost
no decoding. For large sets, run `prepare_data.py` once and read `tfrecord:`.

Captions, in order of precedence: the `captions` option (CSV/JSONL manifest);
a `captions.csv` / `captions.jsonl` / `captions.tsv` in the folder; class
folders (option `class_folders=True`, or automatically when every video sits
exactly one folder deep in at least two folders: the UCF-101 layout);
otherwise unconditional (every clip is captioned "a video").

Bad files (corrupt, no frames, too short) are skipped with a warning the
first time they are met; the pipeline fails only when no file is usable.
`start` reseeds the shuffle (an exact resume position is impossible for
shuffled file data), as for `tfrecord:`.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import tensorflow as tf
from absl import logging

from tfvideogen.data import decode, prepare
from tfvideogen.data import tfrecord as tfrecord_lib
from tfvideogen.data.registry import FileDataset, register_reader

MANIFEST_NAMES = ("captions.csv", "captions.jsonl", "captions.tsv")


def find_manifest(root: str) -> str:
    """The captions manifest inside `root`, or ""."""
    for name in MANIFEST_NAMES:
        path = os.path.join(root, name) if root else name
        if tf.io.gfile.exists(path):
            return path
    return ""


def looks_like_class_folders(rels: list[str]) -> bool:
    """Every file exactly one folder deep, and at least two folders."""
    parents = [os.path.dirname(r) for r in rels]
    return bool(rels) and all(p and os.path.dirname(p) == "" for p in parents) and len(
        set(parents)) >= 2


@register_reader("videos", "videos:<folder (recursive) or glob of video files>")
class VideoFiles(FileDataset):
    """Video files decoded on the fly (mp4, avi, mkv, mov, webm, gif; local or gfile URIs).

    Options: `captions` (manifest path), `class_folders` (True/False; None = auto),
    `short_videos` ("skip" or "loop"), `frame_stride`, `flip`, `cache_mb`,
    `timeout` (seconds per decode). Other keyword options are ignored.
    """

    def __init__(self, source: str, captions: str = "", class_folders: bool | None = None,
                 short_videos: str = "skip", frame_stride: int = 1, flip: bool = False,
                 cache_mb: int = 512, timeout: float = 60.0, **unused):
        if short_videos not in ("skip", "loop"):
            raise ValueError(f"videos: short_videos must be skip or loop, got {short_videos!r}")
        if frame_stride < 1:
            raise ValueError(f"videos: frame_stride must be >= 1, got {frame_stride}")
        self.name = f"videos:{source}"
        root, files = prepare.discover(source)
        if not files:
            raise FileNotFoundError(f"videos: no video files ({', '.join(decode.VIDEO_EXTENSIONS)})"
                                    f" in {source!r}")
        captions = captions or find_manifest(root)
        if class_folders is None:
            class_folders = not captions and looks_like_class_folders(
                [prepare.relative_to_root(f, root) for f in files])
        entries, skipped, kind, _ = prepare.build_entries(source, captions, bool(class_folders))
        for s in skipped:
            logging.warning("videos: skipping %s: %s (%s)", s["path"], s["reason"], s["detail"])
        if not entries:
            reasons = sorted({s["reason"] for s in skipped})
            raise ValueError(f"videos: no usable video in {source!r} ({len(files)} found; "
                             f"skipped for: {', '.join(reasons)})")
        self.entries = entries
        self.caption_source = kind
        self.short_videos = short_videos
        self.frame_stride = int(frame_stride)
        self.flip = bool(flip)
        self.cache_budget = int(cache_mb) << 20
        self.timeout = float(timeout)
        self.bad: dict[str, str] = {}
        self._cache: dict[tuple[str, int, int], np.ndarray] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()
        caps = sorted({c for e in entries for c in e.captions})
        self._captions = caps or [tfrecord_lib.UNCONDITIONAL_CAPTION]
        words = {w for c in caps for w in tfrecord_lib.caption_words(c)}
        if any(not e.captions for e in entries):
            words |= set(tfrecord_lib.caption_words(tfrecord_lib.UNCONDITIONAL_CAPTION))
        self._words = sorted(words)
        self.attributes = {"class": tuple(caps)} if kind == "folder" else {}

    # -- decoding (Python, in tf.data worker threads) ------------------------ #

    def _frames(self, index: int, height: int, width: int) -> np.ndarray | None:
        entry = self.entries[index]
        key = (entry.rel, height, width)
        if key in self._cache:
            return self._cache[key]
        if entry.rel in self.bad:
            return None
        try:
            video, _ = decode.decode(entry.path, shape=(height, width), timeout=self.timeout)
        except decode.DecodeError as e:
            self._mark_bad(entry.rel, e.reason, e.detail)
            return None
        video = video[::self.frame_stride]
        with self._lock:
            if self._cached_bytes + video.nbytes <= self.cache_budget:
                self._cache[key] = video
                self._cached_bytes += video.nbytes
        return video

    def _mark_bad(self, rel: str, reason: str, detail: str) -> None:
        with self._lock:
            if rel in self.bad:
                return
            self.bad[rel] = reason
            logging.warning("videos: skipping %s: %s (%s)", rel, reason, detail)
            if len(self.bad) == len(self.entries):
                counts: dict[str, int] = {}
                for r in self.bad.values():
                    counts[r] = counts.get(r, 0) + 1
                raise ValueError(f"{self.name}: no usable video left (skipped: "
                                 f"{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")

    def _load(self, index, u, frames: int, height: int, width: int):
        index = int(index)
        video = self._frames(index, height, width)
        empty = np.zeros([frames, height, width, 3], np.uint8)
        if video is None:
            return empty, False, b""
        entry = self.entries[index]
        if len(video) < frames:
            if self.short_videos == "skip":
                self._mark_bad(entry.rel, "too_short", f"{len(video)} frames (after stride), "
                                                       f"{frames} needed")
                return empty, False, b""
            video = decode.loop_to(video, frames)
        offset = min(int(u[0] * (len(video) - frames + 1)), len(video) - frames)
        clip = video[offset:offset + frames]
        if self.flip and u[1] < 0.5:
            clip = clip[:, :, ::-1]
        caps = entry.captions or [tfrecord_lib.UNCONDITIONAL_CAPTION]
        caption = caps[min(int(u[2] * len(caps)), len(caps) - 1)]
        return np.ascontiguousarray(clip), True, caption.encode("utf-8")

    # -- pipeline ------------------------------------------------------------ #

    def make(self, split, frames, height, width, seed, num_examples=None, start=0):
        self.check_split(split)
        stream = tfrecord_lib.mix_seed(seed, start)
        n = len(self.entries)
        ds = tf.data.Dataset.range(n).shuffle(n, seed=stream, reshuffle_each_iteration=True)
        ds = ds.repeat().enumerate()

        # Plain graph code: skipping AutoGraph saves seconds of tracing.
        @tf.autograph.experimental.do_not_convert
        def element(index, file_index):
            u = tf.random.stateless_uniform([3], seed=tf.stack(
                [tf.constant(stream & 0x7FFFFFFF, tf.int64), index]))
            video, ok, caption = tf.numpy_function(
                lambda i, uu: self._load(i, uu, frames, height, width), [file_index, u],
                [tf.uint8, tf.bool, tf.string], stateful=False)
            ok.set_shape([])
            caption.set_shape([])
            return {"video": video, "ok": ok, "caption": caption}

        ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.filter(tf.autograph.experimental.do_not_convert(lambda e: e["ok"]))
        ds = ds.map(tf.autograph.experimental.do_not_convert(
            lambda e: {"video": decode.to_model_range(e["video"], frames, height, width),
                       "caption": e["caption"]}))
        if num_examples is not None:
            ds = ds.take(num_examples)
        return ds
