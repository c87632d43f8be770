"""Video files -> sharded TFRecords of clips (the library behind `prepare_data.py`).

    info = prepare(PrepareConfig(input="/data/ucf101", output_dir="gs://b/ucf64",
                                 class_folders=True, clip_frames=16, size=64))

Steps: discover videos (a folder, recursively, or a glob); attach captions (a
CSV/JSONL manifest, the class folder's name, or none); drop duplicates; split
the sorted list into shards of `videos_per_shard` videos; decode each video
with imageio-ffmpeg (resize short side + center crop, optional fps/stride),
cut clips, JPEG/PNG-encode the frames and write `tf.train.Example`s (see
:mod:`tfvideogen.data.tfrecord`). Finally `dataset_info.json` records counts,
frame statistics, captions, vocabulary and every skipped file with its reason.

Robust: a bad file (corrupt, truncated, no frames, too short, bad caption,
missing, duplicate) is skipped and counted, never fatal; the run fails only
when nothing usable is left (:class:`NoUsableDataError`, with a summary).

Resumable: the plan (options + file list) is saved in `<output>/.prepare/`;
each shard is written to a temp name, renamed, then marked done by a small
JSON beside the plan. A rerun keeps finished shards and does the rest (it
reuses the saved plan: files added since are not picked up). One run per
output folder at a time.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from tfvideogen.data import decode
from tfvideogen.data import tfrecord as tfrecord_lib

STATE_DIR = ".prepare"
PLAN_FILE = "plan.json"
MAX_LISTED_CAPTIONS = 10000
# Options that change the shards' content: a rerun must match them.
_PLAN_KEYS = ("input", "captions", "class_folders", "clip_frames", "frame_stride", "fps",
              "size", "center_crop", "clips_per_video", "clip_placement", "short_videos",
              "max_frames", "image_format", "jpeg_quality", "videos_per_shard", "shard_prefix",
              "extensions", "dedupe_content")


class PrepareError(ValueError):
    """Bad options, or an output folder holding a different prepare run."""


class NoUsableDataError(RuntimeError):
    """Every video was skipped; the message summarises why."""


@dataclasses.dataclass
class PrepareConfig:
    """How to turn video files into TFRecord shards (the flags of prepare_data.py)."""

    # A folder (searched recursively) or a glob; local or any tf.io.gfile URI.
    input: str = ""
    output_dir: str = ""
    # CSV `path,caption` or JSONL {"path", "caption"} with paths relative to the
    # input folder; several rows per video give several captions.
    captions: str = ""
    # Caption = the parent folder's name (UCF-101 layout: ApplyEyeMakeup -> apply eye makeup).
    class_folders: bool = False
    # Frames per clip; 0 = the whole video as one example.
    clip_frames: int = 16
    # Keep every n-th frame (after fps resampling).
    frame_stride: int = 1
    # > 0: resample to this frame rate first (timestamp based; right for variable fps).
    fps: float = 0.0
    # Short side -> size (then a size x size center crop); 0 = keep the source size.
    size: int = 64
    center_crop: bool = True
    # Clips per video (non-overlapping); 0 = as many as fit.
    clips_per_video: int = 1
    # "spread" (evenly over the video) or "start" (from frame 0; decodes less).
    clip_placement: str = "spread"
    # Videos shorter than a clip: "skip" them or "loop" them to clip length.
    short_videos: str = "skip"
    # > 0: decode at most this many frames per video (after fps resampling).
    max_frames: int = 0
    image_format: str = "jpeg"
    jpeg_quality: int = 90
    videos_per_shard: int = 256
    shard_prefix: str = "train"
    extensions: tuple[str, ...] = decode.VIDEO_EXTENSIONS
    # Skip files whose bytes equal an earlier file's (only same-size files are hashed).
    dedupe_content: bool = True
    # Parallel decode threads (ffmpeg runs in its own processes).
    workers: int = 2
    timeout: float = decode.DEFAULT_TIMEOUT
    progress: bool = True

    def validate(self) -> PrepareConfig:
        if not self.input:
            raise PrepareError("input is required: a folder or a glob of video files")
        if not self.output_dir:
            raise PrepareError("output_dir is required")
        if self.captions and self.class_folders:
            raise PrepareError("give either captions (a manifest) or class_folders, not both")
        for key in ("clip_frames", "max_frames", "clips_per_video", "size"):
            if getattr(self, key) < 0:
                raise PrepareError(f"{key} must be >= 0, got {getattr(self, key)}")
        for key in ("frame_stride", "videos_per_shard", "workers"):
            if getattr(self, key) < 1:
                raise PrepareError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.fps < 0 or self.timeout <= 0:
            raise PrepareError(f"fps must be >= 0 and timeout > 0, got {self.fps}, "
                               f"{self.timeout}")
        if self.clip_placement not in ("spread", "start"):
            raise PrepareError(f"clip_placement must be spread or start, got "
                               f"{self.clip_placement!r}")
        if self.short_videos not in ("skip", "loop"):
            raise PrepareError(f"short_videos must be skip or loop, got {self.short_videos!r}")
        if self.image_format not in ("jpeg", "png"):
            raise PrepareError(f"image_format must be jpeg or png, got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise PrepareError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.shard_prefix):
            raise PrepareError(f"shard_prefix must be a plain file name part, got "
                               f"{self.shard_prefix!r}")
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower()
                                for e in self.extensions)
        return self


@dataclasses.dataclass
class Entry:
    """A video to process: where it is, its name in the dataset, its captions."""

    path: str
    rel: str
    captions: list[str]


# --------------------------------------------------------------------------- #
# Paths.

def _join(root: str, rel: str) -> str:
    if decode.scheme(rel) or os.path.isabs(rel):
        return rel
    return os.path.join(root, rel) if decode.is_local(root) else root.rstrip("/") + "/" + rel


def _canonical(path: str) -> str:
    """Identity of a file: the real path locally (symlinks, `..`), the URI otherwise."""
    return os.path.realpath(decode.local_path(path)) if decode.is_local(path) else path


def _glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head if head.endswith(("/", os.sep)) else os.path.dirname(head)


def relative_to_root(path: str, root: str) -> str:
    """`path` relative to `root` when inside it (a file's name in the dataset), else as is."""
    if decode.is_local(path) and decode.is_local(root):
        rel = os.path.relpath(decode.local_path(path), decode.local_path(root) or ".")
        return path if rel.startswith("..") else rel
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def discover(source: str, extensions: Iterable[str] = decode.VIDEO_EXTENSIONS,
             exclude: str = "") -> tuple[str, list[str]]:
    """(root folder, sorted video paths) of a folder (recursive) or a glob.

    Files inside `exclude` (e.g. the output folder) are left out.
    """
    decode.ensure_filesystem(source)
    if decode.is_local(source):
        # Absolute: a resumed run may start from another working directory.
        source = os.path.abspath(decode.local_path(source))
    exts = tuple(e.lower() for e in extensions)
    exclude = _canonical(exclude).rstrip("/") + "/" if exclude else ""
    if tf.io.gfile.isdir(source):
        root = source
        found = []
        walk = os.walk(decode.local_path(source)) if decode.is_local(source) else (
            tf.io.gfile.walk(source))
        for folder, dirs, names in walk:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [_join(folder, n) for n in names
                      if n.lower().endswith(exts) and not n.startswith(".")]
    else:
        root = _glob_root(source)
        found = [p for p in tf.io.gfile.glob(source)
                 if p.lower().endswith(exts) and not tf.io.gfile.isdir(p)]
    if exclude:
        found = [p for p in found if not _canonical(p).startswith(exclude)]
    return root, sorted(found)


# --------------------------------------------------------------------------- #
# Captions.

def class_caption(folder: str) -> str:
    """`ApplyEyeMakeup` / `apply_eye-makeup` -> `apply eye makeup`."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", folder)
    text = re.sub(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])", " ", text)
    return " ".join(re.sub(r"[_\-.\s]+", " ", text).lower().split())


def check_caption(caption: Any) -> tuple[str, str]:
    """("", cleaned caption) if usable, else (reason, detail)."""
    if caption is None:
        return "empty_caption", "no caption given"
    if not isinstance(caption, str):
        return "bad_caption", f"caption is {type(caption).__name__}, not text"
    if any("\udc80" <= ch <= "\udcff" for ch in caption):
        return "bad_caption_encoding", "caption is not valid UTF-8"
    text = " ".join(caption.split())
    if not text:
        return "empty_caption", "caption is empty"
    if not tfrecord_lib.caption_words(text):
        return "empty_caption", f"no word the tokenizer keeps (a-z, 0-9) in {text[:80]!r}"
    return "", text


def read_manifest(path: str) -> Iterator[tuple[int, str | None, Any, str]]:
    """Rows of a CSV (`path,caption`) or JSONL manifest: (row, path, caption, problem).

    `problem` is "" for a well-formed row, else a reason (`bad_manifest_row`,
    `bad_caption_encoding`). Non-UTF-8 bytes survive as surrogates so one bad
    row does not lose the file.
    """
    decode.ensure_filesystem(path)
    if not tf.io.gfile.exists(path):
        raise PrepareError(f"captions file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8", "surrogateescape").lstrip("\ufeff")
    if path.lower().endswith((".jsonl", ".json", ".ndjson")):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if any("\udc80" <= ch <= "\udcff" for ch in line):
                yield i, None, None, "bad_caption_encoding"
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                yield i, None, None, "bad_manifest_row"
                continue
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                yield i, None, None, "bad_manifest_row"
                continue
            caps = row.get("captions", row.get("caption"))
            for cap in caps if isinstance(caps, list) else [caps]:
                yield i, row["path"], cap, ""
    elif path.lower().endswith((".csv", ".tsv")):
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
        for i, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1):
            if not row or not "".join(row).strip():
                continue
            if i == 1 and [c.strip().lower() for c in row[:2]] == ["path", "caption"]:
                continue  # header
            if len(row) < 2 or not row[0].strip():
                yield i, None, None, "bad_manifest_row"
                continue
            yield i, row[0].strip(), ",".join(row[1:]) if len(row) > 2 else row[1], ""
    else:
        raise PrepareError(f"captions file must be .csv, .tsv or .jsonl: {path}")


def _skip(path: str, reason: str, detail: str = "") -> dict[str, str]:
    return {"path": path, "reason": reason, "detail": detail}


def _exists(path: str) -> bool:
    if decode.is_local(path):
        return os.path.isfile(decode.local_path(path))
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def build_entries(source: str, captions: str = "", class_folders: bool = False,
                  extensions: Iterable[str] = decode.VIDEO_EXTENSIONS, exclude: str = "",
                  dedupe_content: bool = True, workers: int = 4
                  ) -> tuple[list[Entry], list[dict[str, str]], str, int]:
    """Videos with their captions: (entries sorted by name, skipped, caption source, found).

    `caption source` is ``file``, ``folder`` or ``none``; skips before decoding:
    missing_file, duplicate, duplicate_content, no_caption, empty_caption,
    bad_caption_encoding, bad_manifest_row.
    """
    root, files = discover(source, extensions, exclude)
    skipped: list[dict[str, str]] = []
    by_key: dict[str, Entry] = {}
    order: list[str] = []

    def add(path: str, caps: list[str]) -> None:
        key = _canonical(path)
        if key in by_key:
            skipped.append(_skip(relative_to_root(path, root), "duplicate",
                                 f"same file as {by_key[key].rel}"))
            return
        by_key[key] = Entry(path=path, rel=relative_to_root(path, root), captions=caps)
        order.append(key)

    if captions:
        kind = "file"
        rows: dict[str, tuple[str, list[str]]] = {}
        seen_rows: set[tuple[str, str]] = set()
        mentioned: set[str] = set()
        for row, rel, cap, problem in read_manifest(captions):
            where = f"row {row} of {os.path.basename(captions)}"
            if problem:
                skipped.append(_skip(rel or where, problem, where))
                continue
            path = _join(root, rel)
            key = _canonical(path)
            mentioned.add(key)
            reason, text = check_caption(cap)
            if reason:
                skipped.append(_skip(rel, reason, f"{where}: {text}"))
                continue
            if (key, text) in seen_rows:
                skipped.append(_skip(rel, "duplicate", f"{where} repeats a row"))
                continue
            seen_rows.add((key, text))
            rows.setdefault(key, (path, []))[1].append(text)
        for path, caps in rows.values():
            if not _exists(path):
                skipped.append(_skip(relative_to_root(path, root), "missing_file",
                                     "named in the captions file, not found"))
                continue
            add(path, caps)
        for path in files:
            if _canonical(path) not in mentioned:
                skipped.append(_skip(relative_to_root(path, root), "no_caption",
                                     "not in the captions file"))
    elif class_folders:
        kind = "folder"
        for path in files:
            rel = relative_to_root(path, root)
            parent = os.path.basename(os.path.dirname(rel))
            if not parent:
                skipped.append(_skip(rel, "no_caption", "not inside a class folder"))
                continue
            reason, text = check_caption(class_caption(parent))
            if reason:
                skipped.append(_skip(rel, reason, f"class folder {parent!r}: {text}"))
                continue
            add(path, [text])
    else:
        kind = "none"
        for path in files:
            add(path, [])
    entries = [by_key[k] for k in order]
    if dedupe_content:
        entries, dupes = _drop_content_duplicates(entries, workers)
        skipped += dupes
    entries.sort(key=lambda e: e.rel)
    return entries, skipped, kind, len(files)


def _drop_content_duplicates(entries: list[Entry], workers: int
                             ) -> tuple[list[Entry], list[dict[str, str]]]:
    """Keeps the first (by name) of files with identical bytes; hashes same-size files only."""
    def size(e: Entry) -> int:
        try:
            return tf.io.gfile.stat(e.path).length
        except tf.errors.OpError:
            return -1
    with futures.ThreadPoolExecutor(max(1, workers)) as pool:
        sizes = list(pool.map(size, entries))
    groups: dict[int, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(sizes):
        if s > 0:
            groups[s].append(i)
    candidates = [i for g in groups.values() if len(g) > 1 for i in g]

    def digest(i: int) -> str:
        h = hashlib.sha1()
        try:
            with tf.io.gfile.GFile(entries[i].path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except tf.errors.OpError:
            return f"unreadable-{i}"
        return h.hexdigest()

    with futures.ThreadPoolExecutor(max(1, workers)) as pool:
        digests = dict(zip(candidates, pool.map(digest, candidates)))
    first: dict[str, int] = {}
    keep, dupes = [], []
    for i in sorted(range(len(entries)), key=lambda i: entries[i].rel):
        d = digests.get(i)
        if d is not None and d in first:
            dupes.append(_skip(entries[i].rel, "duplicate_content",
                               f"same bytes as {entries[first[d]].rel}"))
            continue
        if d is not None:
            first[d] = i
        keep.append(entries[i])
    return keep, dupes


# --------------------------------------------------------------------------- #
# One video -> clips.

def encode_frame(frame: np.ndarray, image_format: str, quality: int = 90) -> bytes:
    """uint8 [H, W, 3] -> JPEG (4:4:4, so solid colors stay exact-ish) or PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(frame)
    if image_format == "jpeg":
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
    else:
        img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def process_video(entry: Entry, cfg: PrepareConfig) -> dict[str, Any]:
    """Decodes one video and encodes its clips.

    Returns {"examples": [serialized Example], "stats": {...}} or
    {"skip": {"path", "reason", "detail"}}; never raises for bad data.
    """
    t, stride = cfg.clip_frames, cfg.frame_stride
    limit = cfg.max_frames
    if t > 0 and cfg.clip_placement == "start" and cfg.clips_per_video > 0:
        # Only the first clips are used: stop decoding after them.
        need = cfg.clips_per_video * t * stride
        limit = min(limit, need) if limit else need
    try:
        video, info = decode.decode(entry.path, size=cfg.size, crop=cfg.center_crop,
                                    fps=cfg.fps, max_frames=limit, timeout=cfg.timeout)
    except decode.DecodeError as e:
        return {"skip": _skip(entry.rel, e.reason, e.detail)}
    decoded = len(video)
    video = video[::stride]
    if t == 0:
        clips = [(0, video)]
    else:
        starts = decode.clip_starts(len(video), t, cfg.clips_per_video, cfg.clip_placement)
        if starts:
            clips = [(s, video[s:s + t]) for s in starts]
        elif cfg.short_videos == "loop":
            clips = [(0, decode.loop_to(video, t))]
        else:
            return {"skip": _skip(entry.rel, "too_short",
                                  f"{len(video)} frames (after fps/stride), a clip needs {t}; "
                                  f"use short_videos=loop to keep it")}
    src_fps = info.fps
    out_fps = (cfg.fps or src_fps) / stride
    examples = []
    for start, clip in clips:
        encoded = [encode_frame(f, cfg.image_format, cfg.jpeg_quality) for f in clip]
        ex = tfrecord_lib.make_example(
            encoded, cfg.image_format, clip.shape[1], clip.shape[2], out_fps, entry.rel, start,
            entry.captions, original=(info.height, info.width, src_fps, decoded))
        examples.append(ex.SerializeToString())
    pixels = video.reshape(-1, 3)
    stats = {"path": entry.rel, "clips": len(clips), "decoded_frames": decoded,
             "fps": src_fps, "duration": info.duration, "width": info.width,
             "height": info.height, "codec": info.codec, "pix_fmt": info.pix_fmt,
             "clip_height": int(video.shape[1]), "clip_width": int(video.shape[2]),
             "clip_frames": [len(c) for _, c in clips],
             "pixel_mean": pixels.mean(0).tolist(), "pixel_sq": (pixels.astype(np.float64) ** 2
                                                                 ).mean(0).tolist(),
             "pixel_count": int(len(pixels)),
             "bytes": sum(len(e) for e in examples)}
    return {"examples": examples, "stats": stats}


# --------------------------------------------------------------------------- #
# Plan, shards, state.

def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _read_json(path: str) -> dict:
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _plan_options(cfg: PrepareConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    out = {k: d[k] for k in _PLAN_KEYS}
    out["extensions"] = list(out["extensions"])
    return out


def shard_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{tfrecord_lib.SUFFIX}"


def _load_or_make_plan(cfg: PrepareConfig) -> dict[str, Any]:
    state = os.path.join(cfg.output_dir, STATE_DIR)
    path = os.path.join(state, PLAN_FILE)
    options = _plan_options(cfg)
    if tf.io.gfile.exists(path):
        plan = _read_json(path)
        if plan.get("options") != options:
            diff = [k for k in options if plan.get("options", {}).get(k) != options[k]]
            raise PrepareError(
                f"{cfg.output_dir} holds a prepare run with other options ({', '.join(diff)}); "
                f"rerun with the same options to resume, or use a new output_dir")
        logging.info("resuming the prepare run in %s", cfg.output_dir)
        return plan
    entries, skipped, kind, found = build_entries(
        cfg.input, cfg.captions, cfg.class_folders, cfg.extensions, exclude=cfg.output_dir,
        dedupe_content=cfg.dedupe_content, workers=max(4, cfg.workers))
    plan = {"options": options, "caption_source": kind, "found": found,
            "entries": [dataclasses.asdict(e) for e in entries], "skipped": skipped,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tf.io.gfile.makedirs(state)
    _write_atomic(path, json.dumps(plan, ensure_ascii=True))
    return plan


def _remove_stale_temps(output_dir: str) -> None:
    """Temp shards of an interrupted run (never part of a finished shard)."""
    for pattern in ("*.tfrecord.tmp", os.path.join(STATE_DIR, "*.tmp")):
        for stale in tf.io.gfile.glob(os.path.join(output_dir, pattern)):
            tf.io.gfile.remove(stale)


def _ordered_map(pool: futures.Executor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """`pool.map` with at most `window` tasks in flight (millions of videos stay cheap)."""
    pending: collections.deque = collections.deque()
    it = iter(items)
    for item in itertools.islice(it, window):
        pending.append(pool.submit(fn, item))
    while pending:
        result = pending.popleft().result()
        for item in itertools.islice(it, 1):
            pending.append(pool.submit(fn, item))
        yield result


class _Progress:
    """`[#####.....] 120/400 videos 3.1/s ETA 01:30 | clips 118 skipped 2` on stderr."""

    def __init__(self, total: int, done: int, enabled: bool, stream=None):
        self.total, self.done, self.start_done = total, done, done
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = self.last = time.perf_counter()
        self.clips = self.skipped = 0

    def update(self, videos: int = 0, clips: int = 0, skipped: int = 0, force=False) -> None:
        self.done += videos
        self.clips += clips
        self.skipped += skipped
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < (0.2 if self.tty else 10.0)):
            return
        self.last = now
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        filled = int(24 * self.done / self.total)
        line = (f"[{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total} videos "
                f"{rate:.1f}/s ETA {_fmt(eta)} | clips {self.clips} skipped {self.skipped}")
        self.stream.write(("\r" + line.ljust(90)) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(force=True)
            if self.tty:
                self.stream.write("\n")


def _fmt(seconds: float) -> str:
    if seconds != seconds:
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def prepare(cfg: PrepareConfig, on_shard_done: Callable[[int, dict], None] | None = None
            ) -> dict[str, Any]:
    """Runs (or resumes) a prepare job; returns the `dataset_info.json` content.

    `on_shard_done(index, shard_state)` is called after each shard is final.
    Raises PrepareError for bad options, NoUsableDataError when no clip is left.
    """
    cfg = dataclasses.replace(cfg).validate()
    decode.ensure_filesystem(cfg.output_dir)
    decode.ensure_filesystem(cfg.input)
    tf.io.gfile.makedirs(os.path.join(cfg.output_dir, STATE_DIR))
    plan = _load_or_make_plan(cfg)
    entries = [Entry(**e) for e in plan["entries"]]
    if not entries:
        _write_info(cfg, plan, [])
        raise NoUsableDataError(_summary(plan, [], "no usable video found"))
    count = math.ceil(len(entries) / cfg.videos_per_shard)
    state = os.path.join(cfg.output_dir, STATE_DIR)
    _remove_stale_temps(cfg.output_dir)

    def done_path(i: int) -> str:
        return os.path.join(state, f"shard-{i:05d}.json")

    done = {i for i in range(count) if tf.io.gfile.exists(done_path(i))}
    todo = [i for i in range(count) if i not in done]
    if done:
        logging.info("%d of %d shards already done; preparing %d", len(done), count, len(todo))
    per = cfg.videos_per_shard
    items = [(i, entries[j]) for i in todo for j in range(i * per, min((i + 1) * per,
                                                                      len(entries)))]
    progress = _Progress(len(entries), len(entries) - len(items), cfg.progress)
    pool = futures.ThreadPoolExecutor(cfg.workers, thread_name_prefix="prepare")
    writer = tmp = None
    try:
        results = _ordered_map(pool, lambda item: (item[0], process_video(item[1], cfg)),
                               items, window=4 * cfg.workers)
        for shard, group in itertools.groupby(results, key=lambda r: r[0]):
            name = shard_name(cfg.shard_prefix, shard, count)
            final = os.path.join(cfg.output_dir, name)
            tmp = final + ".tmp"
            writer = tf.io.TFRecordWriter(tmp)
            shard_state = {"shard": shard, "file": name, "examples": 0, "videos": [],
                           "skipped": []}
            for _, result in group:
                if "skip" in result:
                    shard_state["skipped"].append(result["skip"])
                    progress.update(videos=1, skipped=1)
                    continue
                for ex in result["examples"]:
                    writer.write(ex)
                shard_state["examples"] += len(result["examples"])
                shard_state["videos"].append(result["stats"])
                progress.update(videos=1, clips=len(result["examples"]))
            writer.close()
            writer = None
            if shard_state["examples"]:
                tf.io.gfile.rename(tmp, final, overwrite=True)
            else:  # no empty shards: a worker could get only empty files
                tf.io.gfile.remove(tmp)
                shard_state["file"] = None
            tmp = None
            _write_atomic(done_path(shard), json.dumps(shard_state, ensure_ascii=True))
            if on_shard_done is not None:
                on_shard_done(shard, shard_state)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if writer is not None:
            writer.close()
        progress.close()
    shards = [_read_json(done_path(i)) for i in range(count)]
    info = _write_info(cfg, plan, shards)
    if info["num_examples"] == 0:
        raise NoUsableDataError(_summary(plan, shards, "every video was skipped"))
    return info


# --------------------------------------------------------------------------- #
# dataset_info.json.

def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    a = np.asarray(values, np.float64)
    return {"count": int(a.size), "min": float(a.min()), "max": float(a.max()),
            "mean": float(a.mean()), "median": float(np.median(a))}


def _all_skipped(plan: dict, shards: list[dict]) -> list[dict[str, str]]:
    return list(plan["skipped"]) + [s for sh in shards for s in sh["skipped"]]


def _summary(plan: dict, shards: list[dict], headline: str) -> str:
    skipped = _all_skipped(plan, shards)
    reasons = collections.Counter(s["reason"] for s in skipped)
    lines = [f"{headline}: {plan['found']} video file(s) found in {plan['options']['input']}, "
             f"{len(skipped)} skipped"]
    lines += [f"  {reason}: {n} (e.g. {next(s for s in skipped if s['reason'] == reason)})"
              for reason, n in reasons.most_common()]
    return "\n".join(lines)


def _write_info(cfg: PrepareConfig, plan: dict, shards: list[dict]) -> dict[str, Any]:
    videos = [v for sh in shards for v in sh["videos"]]
    skipped = _all_skipped(plan, shards)
    caption_counts: collections.Counter = collections.Counter()
    per_example = []
    captions_of = {e["rel"]: e["captions"] for e in plan["entries"]}
    for v in videos:
        caps = captions_of.get(v["path"], [])
        caption_counts.update({c: v["clips"] for c in caps})
        per_example += [len(caps)] * v["clips"]
    words: collections.Counter = collections.Counter()
    for c, n in caption_counts.items():
        words.update({w: n for w in tfrecord_lib.caption_words(c)})
    listed = sorted(caption_counts) if len(caption_counts) <= MAX_LISTED_CAPTIONS else sorted(
        c for c, _ in caption_counts.most_common(MAX_LISTED_CAPTIONS))
    pixels = sum(v["pixel_count"] for v in videos)
    mean = (np.sum([np.asarray(v["pixel_mean"]) * v["pixel_count"] for v in videos], 0) / pixels
            if pixels else np.zeros(3))
    sq = (np.sum([np.asarray(v["pixel_sq"]) * v["pixel_count"] for v in videos], 0) / pixels
          if pixels else np.zeros(3))
    clip_lengths = [n for v in videos for n in v["clip_frames"]]
    sizes = collections.Counter(f"{v['width']}x{v['height']}" for v in videos)
    stored = {(v["clip_height"], v["clip_width"]) for v in videos}
    info = {
        "format": "tfvideogen.video_tfrecord",
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "options": plan["options"],
        "shards": [sh["file"] for sh in shards if sh["file"]],
        "shard_examples": {sh["file"]: sh["examples"] for sh in shards if sh["file"]},
        "num_examples": sum(sh["examples"] for sh in shards),
        "num_videos": {"found": plan["found"], "used": len(videos), "skipped": len(skipped)},
        "clip": {
            "frames": cfg.clip_frames or None,
            "height": next(iter(stored))[0] if len(stored) == 1 else None,
            "width": next(iter(stored))[1] if len(stored) == 1 else None,
            "image_format": cfg.image_format,
            "frames_per_clip": _stats(clip_lengths),
            "total_frames": int(sum(clip_lengths)),
            "pixel_mean": [round(float(x), 3) for x in mean],
            "pixel_std": [round(float(x), 3) for x in np.sqrt(np.maximum(sq - mean ** 2, 0))],
        },
        "source": {
            "fps": _stats([v["fps"] for v in videos if v["fps"] > 0]),
            "decoded_frames": _stats([v["decoded_frames"] for v in videos]),
            "duration_seconds": _stats([v["duration"] for v in videos if v["duration"] > 0]),
            "sizes": dict(sizes.most_common(20)),
            "codecs": dict(collections.Counter(v["codec"] for v in videos).most_common()),
        },
        "captions": {
            "source": plan["caption_source"],
            "conditional": bool(caption_counts),
            "distinct": len(caption_counts),
            "values": listed,
            "truncated": len(listed) < len(caption_counts),
            "per_example": {"min": min(per_example, default=0),
                            "max": max(per_example, default=0)},
        },
        "vocabulary": sorted(words),
        "word_counts": dict(sorted(words.items())),
        "skipped": {
            "total": len(skipped),
            "by_reason": dict(collections.Counter(s["reason"] for s in skipped).most_common()),
            "files": skipped,
        },
    }
    _write_atomic(os.path.join(cfg.output_dir, tfrecord_lib.INFO_FILE),
                  json.dumps(info, indent=1, ensure_ascii=True))
    return info
