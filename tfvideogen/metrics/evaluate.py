"""Evaluates a run directory or a served SavedModel; writes JSON + Markdown reports.

    report = evaluate(EvalConfig(model_dir="runs/exp1"))

For each caption split (`train`, `heldout`): N real reference clips of a seed
the GAN never trained on (`validation` clips stand in for `train` captions,
same combinations, other clips), N videos generated for those clips' captions
(seeds 0..N-1), then

* caption accuracy: the cached attribute classifier (`classifier.py`) on the
  generated videos, per attribute and all-correct, next to the same
  classifier's accuracy on the real clips (the ceiling) and chance;
* the Fréchet classifier distance (FCD) between classifier features of real
  and generated clips, next to its real-vs-real floor for N samples;
* per-caption diversity (`diversity.py`), flagging mode collapse;
* FVD (`fvd.py`), only when asked: it needs the I3D module.

Outputs in `out_dir`: `metrics.json`, `report.md`, `samples.gif` (a grid of
train and held-out captions) and `curves.png` (scalars of `<model_dir>/logs`).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2

from tfvideogen import data as data_lib
from tfvideogen.metrics import classifier as classifier_lib
from tfvideogen.metrics import diversity as diversity_lib
from tfvideogen.metrics import frechet
from tfvideogen.metrics import fvd as fvd_lib
from tfvideogen.metrics import objects as objects_lib
from tfvideogen.metrics import word_head as word_head_lib
from tfvideogen.utils import video as video_lib

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
SAMPLES_FILE = "samples.gif"
CURVES_FILE = "curves.png"
# Below this all-correct accuracy on real clips, the report warns that the judge is weak.
JUDGE_MIN_ACCURACY = 0.9
# Real clips for `train` captions come from this split when the dataset has it.
TRAIN_REFERENCE_SPLIT = "validation"


def default_cache_dir() -> str:
    """Where trained judges are cached, shared by runs (`TFVIDEOGEN_CACHE_DIR`)."""
    root = os.environ.get("TFVIDEOGEN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfvideogen")
    return os.path.join(root, "classifiers")


@dataclasses.dataclass
class EvalConfig:
    """What to evaluate and how (`evaluate.py` flags map onto these fields)."""

    model_dir: str = ""
    saved_model: str = ""
    checkpoint: str = ""
    # Runs only: judge the EMA generator (what samples and exports use) or, with
    # False, the raw one - EMA on/off from one training run.
    use_ema: bool = True
    # Runs only: latents scaled by this psi in (0, 1] (the truncation trick; a
    # SavedModel's serving_default has its psi fixed at export).
    truncation: float = 1.0
    out_dir: str = ""
    # Required with `saved_model`; overrides the run's dataset otherwise.
    dataset: str = ""
    num_objects: int = 1
    mnist_path: str = ""
    splits: tuple[str, ...] = ("train", "heldout")
    num_samples: int = 512
    batch_size: int = 32
    # Seed of the real reference clips (the classifier trains on another one).
    seed: int = 202
    diversity_captions: int = 8
    diversity_seeds: int = 8
    collapse_threshold: float = diversity_lib.COLLAPSE_THRESHOLD
    fvd: bool = False
    fvd_module: str = fvd_lib.I3D_HANDLE
    fvd_download: bool = False
    fvd_samples: int = fvd_lib.DEFAULT_SAMPLES
    fvd_splits: tuple[str, ...] = ("train",)
    fvd_batch_size: int = fvd_lib.BATCH_SIZE
    classifier_dir: str = ""
    classifier: classifier_lib.ClassifierConfig = dataclasses.field(
        default_factory=classifier_lib.ClassifierConfig)
    grid_captions: int = 8
    grid_seeds: int = 2
    logs_dir: str = ""
    # Also log the headline numbers to `<model_dir>/logs/eval` (metric curves over steps).
    write_summaries: bool = True

    def validate(self) -> EvalConfig:
        if bool(self.model_dir) == bool(self.saved_model):
            raise ValueError("give exactly one of model_dir (a training run) or saved_model")
        if self.saved_model and not self.out_dir:
            raise ValueError("out_dir is required with saved_model")
        if self.saved_model and not self.use_ema:
            raise ValueError("use_ema=False needs model_dir: a SavedModel holds one generator")
        from tfvideogen.models import check_truncation

        check_truncation(self.truncation)
        if self.saved_model and self.truncation != 1.0:
            raise ValueError("truncation needs model_dir: a SavedModel's serving_default has "
                             "its truncation fixed at export (export/saved_model.py "
                             "--truncation; recorded in its tfvideogen.json)")
        if self.saved_model and not self.dataset:
            raise ValueError("dataset is required with saved_model (the SavedModel does not "
                             "record what it was trained on)")
        for key in ("num_samples", "batch_size", "diversity_seeds", "fvd_samples",
                    "fvd_batch_size", "grid_seeds"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if self.num_samples < 2:
            raise ValueError("num_samples must be >= 2 (covariances)")
        if self.diversity_seeds < 2 and self.diversity_captions:
            raise ValueError("diversity_seeds must be >= 2")
        if not self.splits:
            raise ValueError("no splits to evaluate")
        if self.fvd and not set(self.fvd_splits) <= set(self.splits):
            raise ValueError(f"fvd_splits {list(self.fvd_splits)} must be among splits "
                             f"{list(self.splits)}")
        self.classifier.validate()
        # The reference clips (seed) and the FCD floor's (seed + 1) must be clips the
        # judge never trained on.
        if self.classifier.train_seed in (self.seed, self.seed + 1):
            raise ValueError(f"seed={self.seed}: seed and seed + 1 must differ from the "
                             f"classifier's training seed {self.classifier.train_seed}")
        return self


# --------------------------------------------------------------------------- #
# What is evaluated: a run or a SavedModel, behind one interface.

class VideoSource(Protocol):
    video_shape: tuple[int, int, int, int]

    def generate(self, captions: Sequence[str], seeds: np.ndarray) -> np.ndarray:
        """Captions [B] and int64 seeds [B] -> uint8 videos [B, T, H, W, 3]."""

    def describe(self) -> dict:
        """What was evaluated (for the report)."""


class RunSource:
    """A training run, restored with `tfvideogen.training.load_task` (float32 policy)."""

    def __init__(self, model_dir: str, checkpoint: str = "", batch_size: int = 32,
                 use_ema: bool = True, truncation: float = 1.0):
        import keras

        from tfvideogen import training

        previous = keras.mixed_precision.global_policy()
        # Evaluate in float32 whatever the training precision (same weights).
        keras.mixed_precision.set_global_policy("float32")
        try:
            self.task, self.cfg, self.step = training.load_task(model_dir, checkpoint)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self.model_dir, self.checkpoint, self.batch_size = model_dir, checkpoint, batch_size
        self.truncation = truncation
        # Without an EMA generator (train.ema_decay=0) there is only the raw one.
        self.use_ema = use_ema and self.task.ema_generator is not None
        self.video_shape = tuple(self.task.video_shape)

    def generate(self, captions: Sequence[str], seeds: np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds, np.int64)
        out = [self.task.generate(list(captions[i:i + self.batch_size]),
                                  seed=seeds[i:i + self.batch_size], use_ema=self.use_ema,
                                  truncation=self.truncation)
               for i in range(0, len(captions), self.batch_size)]
        return np.concatenate(out)

    @property
    def word_heads(self) -> list[str]:
        """Names of D's heads with a word classifier ([] without a word head)."""
        disc = self.task.discriminator
        return ["video", "frame"][:disc.heads] if disc.word_classes else []

    def vocabulary(self) -> list[str]:
        """The words of D's word head, in its logits' order."""
        from tfvideogen.training import trainer

        return trainer.dataset_for(self.cfg).vocabulary()

    def word_logits(self, videos: np.ndarray) -> np.ndarray:
        """uint8 videos [B, T, H, W, 3] -> D's word logits float32 [heads, B, V]."""
        disc = self.task.discriminator
        out = []
        for i in range(0, len(videos), self.batch_size):
            clips = tf.constant(classifier_lib.to_float(videos[i:i + self.batch_size]))
            # The pooled features (and so the word logits) do not see the text.
            text = tf.zeros([clips.shape[0], disc.text_dim])
            _, features = disc(clips, text, training=False, return_features=True)
            out.append(disc.word_logits(features).numpy())
        return np.concatenate(out, axis=1)

    def describe(self) -> dict:
        return {"kind": "run", "path": self.model_dir, "step": self.step,
                "checkpoint": self.checkpoint or "latest",
                "generator": "ema" if self.use_ema else "generator",
                "truncation": self.truncation}


def resolve_saved_model(path: str) -> str:
    """A SavedModel directory: `path` itself, or its highest numeric version subdir."""
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return path
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"SavedModel not found: {path}")
    versions = [d.rstrip("/") for d in tf.io.gfile.listdir(path) if d.rstrip("/").isdigit()
                and tf.io.gfile.exists(os.path.join(path, d.rstrip("/"), "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"{path} holds neither saved_model.pb nor numeric version "
                                f"directories with one")
    return os.path.join(path, max(versions, key=int))


class SavedModelSource:
    """An exported SavedModel: `serving_default` (`text` string [B], `seed` int64 [B])
    -> `video` uint8 [B, T, H, W, 3]."""

    SIGNATURE = "serving_default"

    def __init__(self, path: str, batch_size: int = 32):
        self.path = resolve_saved_model(path)
        self.batch_size = batch_size
        self.loaded = tf.saved_model.load(self.path)
        signatures = self.loaded.signatures
        if self.SIGNATURE not in signatures:
            raise ValueError(f"{self.path} has no {self.SIGNATURE!r} signature (has: "
                             f"{', '.join(signatures) or 'none'})")
        self.fn = signatures[self.SIGNATURE]
        inputs = self.fn.structured_input_signature[1]
        if set(inputs) != {"text", "seed"}:
            raise ValueError(f"{self.path}: {self.SIGNATURE} must take inputs text and seed, "
                             f"takes {sorted(inputs)}")
        outputs = self.fn.structured_outputs
        if "video" not in outputs:
            raise ValueError(f"{self.path}: {self.SIGNATURE} has no 'video' output "
                             f"({sorted(outputs)})")
        spec = outputs["video"]
        shape = spec.shape.as_list()
        if spec.dtype != tf.uint8 or len(shape) != 5 or None in shape[1:]:
            raise ValueError(f"{self.path}: 'video' must be uint8 [B, T, H, W, 3] with static "
                             f"T, H, W; got {spec.dtype.name} {shape}")
        self.video_shape = tuple(shape[1:])

    def generate(self, captions: Sequence[str], seeds: np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds, np.int64)
        out = []
        for i in range(0, len(captions), self.batch_size):
            result = self.fn(text=tf.constant(list(captions[i:i + self.batch_size])),
                             seed=tf.constant(seeds[i:i + self.batch_size]))
            out.append(result["video"].numpy())
        return np.concatenate(out)

    def describe(self) -> dict:
        from tfvideogen.export.tflite import read_metadata

        # Exports before truncation existed served untruncated latents.
        truncation = float(read_metadata(self.path).get("truncation", 1.0))
        return {"kind": "saved_model", "path": self.path, "signature": self.SIGNATURE,
                "truncation": truncation}


# --------------------------------------------------------------------------- #
# TensorBoard scalars and plots.

def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under `logdir` (recursively): tag -> [(step, value)].

    Tags of subdirectories are prefixed (`eval/...`). Handles both TF2 tensor
    summaries and TF1 `simple_value`; a step logged twice (resumed run) keeps
    its latest value. A truncated file (still being written) is read up to
    the damage.
    """
    series: dict[str, dict[int, tuple[float, float]]] = {}
    if not tf.io.gfile.isdir(logdir):
        return {}
    for root, _, files in tf.io.gfile.walk(logdir):
        rel = os.path.relpath(root, logdir)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for name in sorted(f for f in files if "tfevents" in f):
            try:
                for record in tf.data.TFRecordDataset(os.path.join(root, name)):
                    event = event_pb2.Event.FromString(record.numpy())
                    for v in event.summary.value:
                        value = _scalar(v)
                        if value is None:
                            continue
                        seen = series.setdefault(prefix + v.tag, {})
                        old = seen.get(event.step)
                        if old is None or event.wall_time >= old[0]:
                            seen[event.step] = (event.wall_time, value)
            except tf.errors.DataLossError:
                continue
    # Training scalars first, then those of subdirectories (eval/...).
    order = sorted(series, key=lambda tag: ("/" in tag, tag))
    return {tag: sorted((s, v) for s, (_, v) in series[tag].items()) for tag in order}


def _scalar(value) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        arr = tf.make_ndarray(value.tensor)
        if arr.ndim == 0 and arr.dtype.kind in "fiu":
            return float(arr)
    return None


def plot_curves(series: Mapping[str, Sequence[tuple[int, float]]], path: str,
                columns: int = 3, panel: tuple[int, int] = (300, 180)) -> str:
    """Line plots (one panel per tag) drawn with Pillow, written atomically as PNG."""
    from PIL import Image, ImageDraw, ImageFont

    tags = [t for t, pts in series.items() if pts]
    if not tags:
        raise ValueError("no scalar series to plot")
    cols = min(columns, len(tags))
    rows = math.ceil(len(tags) / cols)
    pw, ph = panel
    img = Image.new("RGB", (cols * pw, rows * ph), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 52, 10, 22, 26
    for k, tag in enumerate(tags):
        ox, oy = (k % cols) * pw, (k // cols) * ph
        steps = np.array([p[0] for p in series[tag]], np.float64)
        values = np.array([p[1] for p in series[tag]], np.float64)
        finite = np.isfinite(values)
        x0, y0, x1, y1 = ox + left, oy + top, ox + pw - right, oy + ph - bottom
        draw.rectangle([x0, y0, x1, y1], outline=(160, 160, 160))
        draw.text((ox + 6, oy + 4), tag[:48], fill="black", font=font)
        if not finite.any():
            draw.text((x0 + 6, y0 + 6), "no finite values", fill="red", font=font)
            continue
        lo, hi = float(values[finite].min()), float(values[finite].max())
        if hi == lo:
            lo, hi = lo - 0.5 * max(abs(lo), 1.0), hi + 0.5 * max(abs(hi), 1.0)
        smin, smax = float(steps.min()), float(steps.max())
        span = smax - smin
        if span == 0:  # one step: centre it
            smin, span = smin - 1.0, 2.0

        def xy(s, v, lo=lo, hi=hi, smin=smin, span=span, x0=x0, x1=x1, y0=y0, y1=y1):
            return (x0 + (s - smin) / span * (x1 - x0), y1 - (v - lo) / (hi - lo) * (y1 - y0))

        pts = [xy(s, v) for s, v in zip(steps[finite], values[finite])]
        if len(pts) > 1:
            draw.line(pts, fill=(31, 119, 180), width=2)
        for p in pts if len(pts) <= 50 else pts[-1:]:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=(31, 119, 180))
        draw.text((ox + 4, y0), f"{hi:.3g}", fill="black", font=font)
        draw.text((ox + 4, y1 - 10), f"{lo:.3g}", fill="black", font=font)
        draw.text((x0, y1 + 4), f"{int(steps.min())}", fill="black", font=font)
        last = f"step {int(smax)}"
        draw.text((x1 - 6 * len(last), y1 + 4), last, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    _write_bytes(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------- #
# The evaluation.

def _write_bytes(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _reference_split(dataset: data_lib.BuiltinDataset, split: str) -> str:
    if split == "train" and TRAIN_REFERENCE_SPLIT in dataset.splits:
        return TRAIN_REFERENCE_SPLIT
    return split


def _memo(store: dict | None, key: tuple, make: Callable[[], Any]) -> Any:
    """`make()`, computed once per `key` when `store` is a dict."""
    if store is None:
        return make()
    if key not in store:
        store[key] = make()
    return store[key]


def evaluate(cfg: EvalConfig, source: VideoSource | None = None, log=print,
             reference: dict | None = None) -> dict:
    """Runs the evaluation of `cfg` and writes the reports; returns the metrics dict.

    `source` overrides what `cfg.model_dir`/`cfg.saved_model` would load (tests).
    `reference`: a dict memoising what does not depend on the generator (the
    judge; per split the real clips, their judge outputs and the real-vs-real
    floor, D's word-head verdicts on them), shared by several evaluations of one
    run (`evaluate_truncations`).
    """
    cfg.validate()
    t_start = time.perf_counter()
    if source is None:
        source = (RunSource(cfg.model_dir, cfg.checkpoint, cfg.batch_size, cfg.use_ema,
                            cfg.truncation)
                  if cfg.model_dir
                  else SavedModelSource(cfg.saved_model, cfg.batch_size))
    run_cfg = getattr(source, "cfg", None)
    name = cfg.dataset or (run_cfg.data.name if run_cfg is not None else "")
    options = {"num_objects": cfg.num_objects, "mnist_path": cfg.mnist_path}
    if run_cfg is not None and not cfg.dataset:
        options = {"num_objects": run_cfg.data.num_objects, "mnist_path": run_cfg.data.mnist_path}
    dataset = data_lib.get(name, **options) if name else None
    if dataset is None or not dataset.attributes:
        raise ValueError(f"evaluation needs a dataset with caption attributes (built-in: "
                         f"{', '.join(data_lib.available())}); {name!r} has none "
                         f"(pass dataset=...)")
    for split in cfg.splits:
        dataset.check_split(split)
    if name == "moving_shapes":
        options = {"num_objects": options["num_objects"]}
    elif name == "bouncing_digits":
        options = {"mnist_path": options["mnist_path"]}
    frames, height, width, _ = source.video_shape
    raw = _judges_raw(cfg)
    out_dir = cfg.out_dir or _default_out_dir(
        cfg, source, f"_psi{cfg.truncation:g}" if cfg.truncation != 1.0 else "")
    tf.io.gfile.makedirs(out_dir)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    cache = cfg.classifier_dir or default_cache_dir()
    log(f"classifier: loading or training under {cache}")
    opts = tuple(sorted(options.items()))
    judge, judge_info, judge_dir = _memo(
        reference, ("judge", name, frames, height, width, cache, repr(cfg.classifier), opts),
        functools.partial(classifier_lib.load_or_train, name, frames, height, width, cache,
                          cfg.classifier, **options))
    heads = judge.heads
    timings["classifier"] = time.perf_counter() - t0

    # Loaded once for all splits (and before any generation, to fail early).
    embedder = (fvd_lib.I3DEmbedder(cfg.fvd_module, cfg.fvd_download, cfg.fvd_batch_size)
                if cfg.fvd else None)
    results: dict[str, dict] = {}
    for split in cfg.splits:
        t0 = time.perf_counter()
        ref_split = _reference_split(dataset, split)
        n_fvd = cfg.fvd_samples if cfg.fvd and split in cfg.fvd_splits else 0
        count = max(cfg.num_samples, n_fvd)
        log(f"{split}: {count} real clips ({ref_split} split, seed {cfg.seed}) and "
            f"{count} generated videos")
        n = cfg.num_samples
        key = (name, ref_split, frames, height, width, cfg.seed, opts, judge_dir)

        def judged_real(count=count, n=n, ref_split=ref_split):
            real, captions = classifier_lib.real_clips(name, ref_split, frames, height, width,
                                                       cfg.seed, count, **options)
            # Real-vs-real floor: what FCD reads for two real samples of this size.
            floor_real, _ = classifier_lib.real_clips(name, ref_split, frames, height, width,
                                                      cfg.seed + 1, n, **options)
            return (real, captions, *classifier_lib.predict(judge, real[:n]),
                    classifier_lib.predict(judge, floor_real)[1])

        real, captions, pred_real, feat_real, feat_floor = _memo(
            reference, ("real", *key, count, n), judged_real)
        seeds = np.arange(count, dtype=np.int64)
        fake = source.generate(captions, seeds)
        if fake.shape != real.shape or fake.dtype != np.uint8:
            raise ValueError(f"generated videos are {fake.dtype} {fake.shape}, expected uint8 "
                             f"{real.shape}")
        labels = classifier_lib.caption_labels(dataset, captions[:n], heads)
        pred_fake, feat_fake = classifier_lib.predict(judge, fake[:n])
        word_head = _word_head_accuracy(source, dataset, heads, labels, real[:n], fake[:n],
                                        log, reference, ("word_head", *key, n))
        judge_real = classifier_lib.accuracy(pred_real, labels)["all_correct"]
        if judge_real < JUDGE_MIN_ACCURACY:
            log(f"{split}: warning: the judge gets only {judge_real:.1%} of real clips fully "
                f"right; caption accuracy is unreliable (raise the classifier steps)")
        split_result = {
            "real_split": ref_split,
            "samples": n,
            "caption_accuracy": classifier_lib.accuracy(pred_fake, labels),
            # Rows: the caption's value; columns: the judge's verdict (order: "heads").
            "confusion": classifier_lib.confusion(pred_fake, labels, heads),
            "real_caption_accuracy": classifier_lib.accuracy(pred_real, labels),
            "chance_accuracy": classifier_lib.chance_accuracy(heads),
            "frechet_classifier_distance": frechet.frechet_distance(feat_real, feat_fake),
            "frechet_classifier_distance_real_floor": frechet.frechet_distance(feat_real,
                                                                               feat_floor),
            # Size, count and fade of objects per frame (blobs, ghosts, fade-in).
            "objects": objects_lib.compare(real[:n], fake[:n]),
        }
        if word_head:
            split_result["word_head"] = word_head
        if cfg.diversity_captions > 0:
            div_captions = dataset.sample_captions(split, cfg.diversity_captions)
            div_captions = list(dict.fromkeys(div_captions))  # small splits repeat captions
            k = cfg.diversity_seeds
            gen_by_caption = {}
            for j, c in enumerate(div_captions):
                gen_by_caption[c] = source.generate([c] * k,
                                                    10_000 + j * k + np.arange(k, dtype=np.int64))
            real_by_caption = _memo(
                reference, ("diversity", *key, tuple(div_captions), k),
                functools.partial(diversity_lib.real_clips_by_caption, name, ref_split,
                                  div_captions, k, frames, height, width, cfg.seed, **options))
            split_result["diversity"] = diversity_lib.diversity_scores(
                gen_by_caption, real_by_caption, cfg.collapse_threshold)
        if n_fvd:
            log(f"{split}: FVD on {n_fvd} + {n_fvd} videos (I3D; slow on CPU)")
            result = fvd_lib.fvd(real[:n_fvd], fake[:n_fvd], embedder, split=split,
                                 real_split=ref_split, real_seed=cfg.seed,
                                 generated_seeds=f"0..{n_fvd - 1}",
                                 captions="the real clips' captions", dataset=name)
            split_result["fvd"] = result.to_dict()
        results[split] = split_result
        timings[f"split_{split}"] = time.perf_counter() - t0

    metrics = {
        "source": source.describe(),
        "dataset": {"name": name, "options": options},
        "video_shape": list(source.video_shape),
        "protocol": {
            "samples_per_split": cfg.num_samples,
            "real_seed": cfg.seed,
            "generated_seeds": f"0..{cfg.num_samples - 1}",
            "train_captions_reference_split": _reference_split(dataset, "train"),
            "diversity": {"captions": cfg.diversity_captions, "seeds": cfg.diversity_seeds,
                          "distance": "RMS pixel distance in [0, 1], generated / real",
                          "collapse_threshold": cfg.collapse_threshold},
            "fcd": "Frechet distance (float64) of the classifier's penultimate features; "
                   "not FVD",
        },
        "classifier": {"path": judge_dir, "heads": judge_info["heads"],
                       "real_accuracy": judge_info["real_accuracy"],
                       "train_seconds": judge_info["train_seconds"],
                       "config": judge_info["config"]},
        "splits": results,
    }
    # The artefacts: sample grid, curves, reports.
    t0 = time.perf_counter()
    grid_captions = _grid_captions(dataset, cfg)
    metrics["samples"] = write_sample_grid(source, grid_captions, cfg.grid_seeds,
                                           os.path.join(out_dir, SAMPLES_FILE))
    logs_dir = cfg.logs_dir or (os.path.join(cfg.model_dir, "logs") if cfg.model_dir else "")
    # The curves in logs/eval follow the EMA generator (the one samples and exports use).
    if (cfg.model_dir and cfg.write_summaries and not cfg.logs_dir and not raw
            and cfg.truncation == 1.0):
        write_eval_summaries(os.path.join(logs_dir, "eval"), metrics, getattr(source, "step", 0))
    metrics["curves"] = None
    if logs_dir:
        series = read_scalars(logs_dir)
        if series:
            plot_curves(series, os.path.join(out_dir, CURVES_FILE))
            metrics["curves"] = {"file": CURVES_FILE, "logs_dir": logs_dir,
                                 "tags": sorted(series)}
    timings["artefacts"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    metrics["seconds"] = timings
    _write_bytes(os.path.join(out_dir, METRICS_FILE),
                 json.dumps(metrics, indent=2, sort_keys=True, default=_json_default).encode())
    _write_bytes(os.path.join(out_dir, REPORT_FILE), markdown_report(metrics).encode())
    metrics["out_dir"] = out_dir
    log(f"wrote {out_dir}/{METRICS_FILE}, {REPORT_FILE}, {SAMPLES_FILE}"
        + (f", {CURVES_FILE}" if metrics["curves"] else ""))
    return metrics


def _word_head_accuracy(source: VideoSource, dataset: data_lib.BuiltinDataset,
                        heads: Mapping[str, Sequence[str]], labels: Mapping[str, np.ndarray],
                        real: np.ndarray, fake: np.ndarray, log=print,
                        reference: dict | None = None, key: tuple = ()) -> dict:
    """{D head: {"real" | "generated": accuracy dict}} of the run's word head, read
    as a judge (`metrics.word_head`); {} without one, when a caption names two
    objects (the head's words do not say which object holds them) or when some
    attribute value has no word of its own (class captions such as "a dog" and
    "a dog running"). The real clips' verdicts are memoised in `reference` under
    `key` (D does not change with the truncation)."""
    names = getattr(source, "word_heads", [])
    if not names or not set(heads) <= set(dataset.attributes):
        return {}
    try:
        words = word_head_lib.value_words(heads, source.vocabulary())
    except ValueError as e:
        log(f"D's word head not read as a judge: {e}")
        return {}

    def accuracies(clips):
        return [classifier_lib.accuracy(word_head_lib.verdicts(logits, words), labels)
                for logits in source.word_logits(clips)]

    real_acc = _memo(reference, key, functools.partial(accuracies, real))
    return {name: {"real": r, "generated": g}
            for name, r, g in zip(names, real_acc, accuracies(fake))}


def _judges_raw(cfg: EvalConfig) -> bool:
    """A run's raw generator instead of its EMA (reports go to step_N_raw)."""
    return bool(cfg.model_dir) and not cfg.use_ema


def _default_out_dir(cfg: EvalConfig, source: VideoSource, suffix: str) -> str:
    raw = "_raw" if _judges_raw(cfg) else ""
    return os.path.join(cfg.model_dir, "eval",
                        f"step_{getattr(source, 'step', 0):06d}{raw}{suffix}")


TRUNCATION_FILE = "truncation.json"
TRUNCATION_REPORT = "truncation.md"


def check_truncations(cfg: EvalConfig, truncations: Sequence[float]) -> list[float]:
    """The psi values as floats; ValueError for repeats or a psi `cfg` cannot use."""
    psis = [float(p) for p in truncations]
    if len(set(psis)) != len(psis):
        raise ValueError(f"truncation values repeat: {psis}")
    for psi in psis:
        dataclasses.replace(cfg, truncation=psi).validate()
    return psis


def evaluate_truncations(cfg: EvalConfig, truncations: Sequence[float],
                         source: VideoSource | None = None, log=print) -> dict:
    """Evaluates one run at several truncations psi: the accuracy-diversity curve.

    The run, the judge and the real reference clips (with their judge outputs) are
    loaded once; every psi gets a full evaluation (`evaluate`) in
    `<out>/psi_<psi>/`, and `<out>/truncation.{json,md}` put the headline numbers
    side by side, where `<out>` is `cfg.out_dir` or `<model_dir>/eval/step_N_truncation`.
    `source` (tests) must have a settable `truncation`. Returns the curve dict.
    """
    if len(truncations) < 2:
        raise ValueError(f"a truncation curve needs at least two psi values, got "
                         f"{list(truncations)}")
    psis = check_truncations(cfg, truncations)  # every psi valid before any work
    if source is None:
        source = RunSource(cfg.model_dir, cfg.checkpoint, cfg.batch_size, cfg.use_ema)
    if not hasattr(source, "truncation"):
        raise ValueError(f"{type(source).__name__} has no settable truncation")
    out_dir = cfg.out_dir or _default_out_dir(cfg, source, "_truncation")
    rows, original, reference = [], source.truncation, {}
    try:
        for psi in psis:
            source.truncation = psi
            log(f"truncation psi = {psi:g}")
            metrics = evaluate(dataclasses.replace(cfg, truncation=psi,
                                                   out_dir=os.path.join(out_dir, f"psi_{psi:g}")),
                               source, log, reference)
            row = {"truncation": psi, "report": os.path.join(f"psi_{psi:g}", REPORT_FILE),
                   "splits": {}}
            for split, r in metrics["splits"].items():
                row["splits"][split] = {
                    "caption_accuracy": r["caption_accuracy"],
                    "frechet_classifier_distance": r["frechet_classifier_distance"],
                    "diversity_ratio": r["diversity"]["mean_ratio"] if "diversity" in r else None,
                    "area_ratio_mean": r["objects"]["area_ratio_mean"]}
            rows.append(row)
    finally:
        source.truncation = original  # the caller's source, as given
    curve = {"source": {**source.describe(), "truncation": psis}, "rows": rows}
    _write_bytes(os.path.join(out_dir, TRUNCATION_FILE),
                 json.dumps(curve, indent=2, sort_keys=True, default=_json_default).encode())
    _write_bytes(os.path.join(out_dir, TRUNCATION_REPORT), truncation_report(curve).encode())
    curve["out_dir"] = out_dir
    log(f"wrote {out_dir}/{TRUNCATION_FILE}, {TRUNCATION_REPORT}")
    return curve


def truncation_report(curve: Mapping) -> str:
    """Markdown table of `evaluate_truncations`' curve: one row per psi and split."""
    src, rows = curve["source"], curve["rows"]
    heads = [k for k in next(iter(rows[0]["splits"].values()))["caption_accuracy"]
             if k != "all_correct"]
    lines = ["# Truncation curve", "",
             f"- Evaluated: `{src['path']}` (step {src.get('step', 0)}, {src['generator']})",
             "- One full evaluation per psi (latents scaled by psi; 1 = none; lower psi "
             "trades diversity for fidelity); psi links to its report.", "",
             "| psi | split | all correct | " + " | ".join(heads)
             + " | FCD | diversity | object area (gen/real) |",
             "|---|---|---|" + "---|" * len(heads) + "---|---|---|"]
    for row in rows:
        for split, r in row["splits"].items():
            acc, div = r["caption_accuracy"], r["diversity_ratio"]
            lines.append(
                f"| [{row['truncation']:g}]({row['report']}) | {split} | "
                f"{_pct(acc['all_correct'])} | " + " | ".join(_pct(acc[h]) for h in heads)
                + f" | {r['frechet_classifier_distance']:.2f} | "
                + ("-" if div is None else f"{div:.2f}") + f" | {r['area_ratio_mean']:.2f} |")
    return "\n".join(lines) + "\n"


def _grid_captions(dataset: data_lib.BuiltinDataset, cfg: EvalConfig) -> list[str]:
    count = max(1, cfg.grid_captions)
    splits = [s for s in cfg.splits if s in dataset.splits]
    per = [count // len(splits) + (1 if i < count % len(splits) else 0)
           for i in range(len(splits))]
    captions = []
    for split, k in zip(splits, per):
        if k:
            captions += list(dict.fromkeys(dataset.sample_captions(split, k)))
    return captions


def write_sample_grid(source: VideoSource, captions: Sequence[str], seeds: int,
                      path: str, fps: int = 8) -> dict:
    """A GIF grid: one column per caption, one row per seed (0..seeds-1)."""
    all_captions = [c for _ in range(seeds) for c in captions]
    all_seeds = np.repeat(np.arange(seeds, dtype=np.int64), len(captions))
    videos = source.generate(all_captions, all_seeds)
    clip = video_lib.grid(videos, columns=len(captions))
    clip = video_lib.upscale(clip, max(1, 96 // videos.shape[2]))
    video_lib.write_video(path, clip, fps)
    return {"file": os.path.basename(path), "columns": list(captions),
            "rows": [f"seed {s}" for s in range(seeds)]}


def headline(metrics: Mapping) -> dict[str, float]:
    """The few numbers worth a curve: accuracy, FCD, diversity, FVD per split."""
    out = {}
    for split, r in metrics["splits"].items():
        out[f"{split}/caption_accuracy"] = r["caption_accuracy"]["all_correct"]
        out[f"{split}/frechet_classifier_distance"] = r["frechet_classifier_distance"]
        if "diversity" in r:
            out[f"{split}/diversity_ratio"] = r["diversity"]["mean_ratio"]
        if "fvd" in r:
            out[f"{split}/fvd"] = r["fvd"]["value"]
    return out


def write_eval_summaries(logdir: str, metrics: Mapping, step: int) -> None:
    """Headline numbers as TensorBoard scalars at the evaluated step."""
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for tag, value in headline(metrics).items():
            tf.summary.scalar(tag, value, step=step)
    writer.flush()
    writer.close()


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown_report(metrics: Mapping) -> str:
    """The human-readable report (what `report.md` holds)."""
    src, splits = metrics["source"], metrics["splits"]
    names = list(splits)
    heads = [k for k in next(iter(splits.values()))["caption_accuracy"] if k != "all_correct"]
    lines = ["# Evaluation report", ""]
    where = f"`{src['path']}`"
    if src["kind"] == "run":
        where += f" (run, step {src['step']}, checkpoint {src['checkpoint']}, {src['generator']})"
    else:
        where += " (SavedModel, `serving_default`)"
    if src.get("truncation", 1.0) != 1.0:
        where += (f", latents truncated to psi = {src['truncation']:g} (less diverse, more "
                  f"typical clips than untruncated sampling)")
    ds = metrics["dataset"]
    lines += [f"- Evaluated: {where}",
              f"- Dataset: `{ds['name']}` {ds['options']}, clips "
              f"{'x'.join(map(str, metrics['video_shape'][:3]))}",
              f"- Samples per split: {metrics['protocol']['samples_per_split']} generated videos "
              f"(one per real reference clip, with its caption; seeds "
              f"{metrics['protocol']['generated_seeds']}); real clips of seed "
              f"{metrics['protocol']['real_seed']}, `train` captions referenced by the "
              f"`{metrics['protocol']['train_captions_reference_split']}` split",
              f"- Judge: attribute classifier `{metrics['classifier']['path']}`", ""]
    weak = [s for s in names
            if splits[s]["real_caption_accuracy"]["all_correct"] < JUDGE_MIN_ACCURACY]
    lines += ["## Caption accuracy", "",
              "Generated videos classified by the judge (real clips: the judge's own accuracy, "
              "the ceiling; chance: uniform guessing).", ""]
    if weak:
        lines += [f"> **Warning**: the judge gets under {_pct(JUDGE_MIN_ACCURACY)} of real "
                  f"`{'`, `'.join(weak)}` clips fully right; caption accuracies here are "
                  f"unreliable (train it longer: `--classifier_steps`).", ""]
    lines += [
              "| attribute | " + " | ".join(f"{s} generated | {s} real" for s in names)
              + " | chance |",
              "|---|" + "---|---|" * len(names) + "---|"]
    for h in heads + ["all_correct"]:
        cells = " | ".join(f"{_pct(splits[s]['caption_accuracy'][h])} | "
                           f"{_pct(splits[s]['real_caption_accuracy'][h])}" for s in names)
        chance = next(iter(splits.values()))["chance_accuracy"][h]
        label = "**all correct**" if h == "all_correct" else h
        lines.append(f"| {label} | {cells} | {_pct(chance)} |")
    with_words = [s for s in names if "word_head" in splits[s]]
    if with_words:
        d_heads = list(splits[with_words[0]]["word_head"])
        lines += ["", "## The run's discriminator word head, read as a judge", "",
                  "G is trained towards what D's word head says its clips show. On real "
                  "clips: what D can teach (a missed attribute cannot be taught). On generated "
                  "clips, against the judge's number above: higher means G fools the head."
                  + (" The frame head sees single frames: its motion verdict is a prior, not "
                     "a reading." if "frame" in d_heads else ""), "",
                  "| D head | attribute | " + " | ".join(f"{s} real | {s} generated"
                                                         for s in with_words) + " |",
                  "|---|---|" + "---|---|" * len(with_words)]
        for d_head in d_heads:
            for h in heads + ["all_correct"]:
                cells = " | ".join(
                    f"{_pct(splits[s]['word_head'][d_head]['real'][h])} | "
                    f"{_pct(splits[s]['word_head'][d_head]['generated'][h])}" for s in with_words)
                lines.append(f"| {d_head} | {'all correct' if h == 'all_correct' else h} | "
                             f"{cells} |")
    lines += ["", "## Fréchet classifier distance (FCD)", "",
              "Fréchet distance between the judge's penultimate features of real and generated "
              "clips (lower is better). **Not FVD**: features of a classifier trained on this "
              "dataset. The floor is real vs other real clips of the same size.", "",
              "| split | FCD | real-vs-real floor |", "|---|---|---|"]
    for s in names:
        r = splits[s]
        lines.append(f"| {s} | {r['frechet_classifier_distance']:.4g} | "
                     f"{r['frechet_classifier_distance_real_floor']:.4g} |")
    if any("diversity" in splits[s] for s in names):
        d = metrics["protocol"]["diversity"]
        lines += ["", "## Diversity", "",
                  f"Per caption: mean pairwise RMS pixel distance of {d['seeds']} videos "
                  f"(different seeds) divided by the same on real clips of the caption; below "
                  f"{d['collapse_threshold']} flags mode collapse.", "",
                  "| split | mean ratio | min ratio | collapsed captions | mode collapse |",
                  "|---|---|---|---|---|"]
        for s in names:
            if "diversity" not in splits[s]:
                continue
            v = splits[s]["diversity"]
            collapsed = ", ".join(f"`{c}`" for c in v["collapsed"]) or "none"
            lines.append(f"| {s} | {v['mean_ratio']:.3f} | {v['min_ratio']:.3f} | "
                         f"{collapsed} | {'**yes**' if v['mode_collapse'] else 'no'} |")
    if any("objects" in splits[s] for s in names):
        lines += ["", "## Objects per frame", "",
                  "Pixels whose brightest channel is >= 128 (objects on the black background) "
                  "and their 8-connected groups, per frame, averaged over clips. Area ratio: "
                  "generated / real; near 1 at every frame is right, above 1 are blobs, low "
                  "first frames a fade-in; more groups than real are ghosts or speckle.", "",
                  "| split | area ratio (mean) | lowest frame | highest frame | objects per "
                  "frame (real) | empty frames |", "|---|---|---|---|---|---|"]
        for s in names:
            if "objects" not in splits[s]:
                continue
            o = splits[s]["objects"]
            lines.append(f"| {s} | {o['area_ratio_mean']:.2f} | {o['area_ratio_min']:.2f} | "
                         f"{o['area_ratio_max']:.2f} | {o['components_mean']:.2f} "
                         f"({o['real_components_mean']:.2f}) | {_pct(o['empty_frames'])} |")
    fvd_rows = [(s, splits[s]["fvd"]) for s in names if "fvd" in splits[s]]
    lines += ["", "## FVD", ""]
    if fvd_rows:
        for s, r in fvd_rows:
            lines.append(f"- **{s}**: FVD = {r['value']:.2f}")
            lines.append("  - protocol: " + "; ".join(
                f"{k}: {v}" for k, v in r["protocol"].items()))
    else:
        lines.append("Not computed (run with `--fvd`; needs the I3D module from TF-Hub).")
    samples = metrics.get("samples")
    if samples:
        lines += ["", "## Samples", "", f"![samples]({samples['file']})", "",
                  "Columns (left to right): " + "; ".join(
                      f"{i + 1}. `{c}`" for i, c in enumerate(samples["columns"])),
                  "Rows: " + ", ".join(samples["rows"]) + "."]
    if metrics.get("curves"):
        lines += ["", "## Training curves", "", f"![curves]({metrics['curves']['file']})", "",
                  f"Scalars from `{metrics['curves']['logs_dir']}`."]
    lines += ["", f"_Evaluation took {metrics['seconds']['total']:.0f} s._", ""]
    return "\n".join(lines)
