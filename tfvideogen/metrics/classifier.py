"""A small caption-attribute video classifier: the judge of caption accuracy.

The evaluation tool trains it once per (dataset, clip shape, settings) on the
dataset's real clips and caches it (`load_or_train`). It has one softmax head
per caption attribute (`color`/`shape`/`motion` for moving_shapes,
`digit`/`motion` for bouncing_digits; two-object captions add `color_2` ...),
so applied to generated videos it says whether they show what their caption
asks for. Its penultimate features feed the *Fréchet classifier distance*
(a dataset-specific cousin of FVD, never to be confused with it).

It trains on the `train` and `heldout` splits of one seed and is scored on
clips of another seed, so it judges held-out caption combinations on clips
it never saw (the GAN never sees `heldout` clips at all).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfvideogen import data as data_lib
from tfvideogen.models.layers import PACKAGE

CLASSIFIER_FILE = "classifier.keras"
META_FILE = "meta.json"
# Bump when training changes in a way that should invalidate cached classifiers.
FORMAT_VERSION = 1
_SUFFIX = re.compile(r"^(.*)_(\d+)$")


# --------------------------------------------------------------------------- #
# Attributes and labels.

def attribute_heads(dataset: data_lib.BuiltinDataset) -> dict[str, tuple[str, ...]]:
    """Head name -> the values it predicts, in the order of `parse_caption`'s keys.

    Multi-object captions parse to suffixed keys (`color_2`); such a head takes
    the values of its base attribute (`color`).
    """
    if not dataset.attributes:
        raise ValueError(f"dataset {dataset.name!r} declares no caption attributes")
    caption = dataset.captions("train")[0]
    heads: dict[str, tuple[str, ...]] = {}
    for key in dataset.parse_caption(caption):
        base = key if key in dataset.attributes else _SUFFIX.sub(r"\1", key)
        if base not in dataset.attributes:
            raise ValueError(f"dataset {dataset.name!r}: caption attribute {key!r} is not in "
                             f"its attributes ({', '.join(dataset.attributes)})")
        heads[key] = tuple(dataset.attributes[base])
    return heads


def caption_labels(dataset: data_lib.BuiltinDataset, captions: Sequence[str],
                   heads: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Captions [N] -> {head: int64 [N] value index}; ValueError on foreign captions."""
    out = {name: np.zeros(len(captions), np.int64) for name in heads}
    for i, caption in enumerate(captions):
        caption = caption.decode() if isinstance(caption, bytes) else str(caption)
        parsed = dataset.parse_caption(caption)
        for name, values in heads.items():
            if name not in parsed:
                raise ValueError(f"caption {caption!r} has no {name!r} attribute")
            if parsed[name] not in values:
                raise ValueError(f"caption {caption!r}: {name}={parsed[name]!r} is not one of "
                                 f"{', '.join(values)}")
            out[name][i] = list(values).index(parsed[name])
    return out


# --------------------------------------------------------------------------- #
# The model.

@keras.saving.register_keras_serializable(PACKAGE)
class VideoClassifier(keras.Model):
    """Video -> one logit vector per caption attribute, plus features.

    Input: float [B, frames, size, size, 3] in [-1, 1] (see `to_float`).
    `call` returns {head: float32 logits [B, len(values)]}; `features` returns
    the penultimate float32 [B, feature_dim] (ReLU, so >= 0).

    A 3D conv at full resolution (up to 32 px frames; stride 2 in time from
    8 frames), then 3x3x3 convs
    (stride 2 in space, and in time while more than 2 frames remain) until
    4x4 pixels, each followed by group norm and ReLU; global mean and max
    pools, a dense feature layer, then one linear head per attribute. No
    batch norm: statistics of generated videos differ from real ones, and a
    per-batch norm would make a clip's verdict depend on its batch.
    """

    def __init__(self, frames: int = 16, size: int = 32,
                 heads: Mapping[str, Sequence[str]] | None = None, base_width: int = 16,
                 max_width: int = 128, feature_dim: int = 128, **kwargs):
        super().__init__(**kwargs)
        if not heads:
            raise ValueError("VideoClassifier needs at least one head {name: values}")
        if frames <= 0 or size < 4:
            raise ValueError(f"VideoClassifier: frames must be > 0 and size >= 4, "
                             f"got frames={frames}, size={size}")
        self.frames, self.size = int(frames), int(size)
        self.heads = {str(k): [str(v) for v in values] for k, values in heads.items()}
        self.base_width, self.max_width, self.feature_dim = base_width, max_width, feature_dim
        # A full-resolution conv first while objects can be a few pixels wide
        # (<= 32 px frames); larger frames are strided at once, and so are 8+
        # frames in time (its 3-frame kernel has seen the motion): the first
        # conv is most of the cost.
        stem = 1 if self.size <= 32 else 2
        stem_t = 2 if self.frames >= 8 else 1
        self.convs = [keras.layers.Conv3D(base_width, 3, (stem_t, stem, stem), padding="same",
                                          name="conv_in", dtype=self.dtype_policy)]
        t, s, width = self.frames // stem_t, self.size // stem, base_width
        while s > 4:
            strides = (2 if t > 2 else 1, 2, 2)
            self.convs.append(keras.layers.Conv3D(width, 3, strides, padding="same",
                                                  name=f"conv{len(self.convs)}",
                                                  dtype=self.dtype_policy))
            t, s, width = t // strides[0], s // 2, min(max_width, width * 2)
        # Per-sample group norm (batch-independent): trains several times faster
        # than plain convs and treats a generated clip the same in any batch.
        self.norms = [keras.layers.GroupNormalization(min(4, conv.filters), name=f"norm{i}",
                                                      dtype=self.dtype_policy)
                      for i, conv in enumerate(self.convs)]
        self.feature_layer = keras.layers.Dense(feature_dim, activation="relu", name="features",
                                                dtype=self.dtype_policy)
        self.head_layers = {name: keras.layers.Dense(len(values), name=f"head_{name}",
                                                     dtype=self.dtype_policy)
                            for name, values in self.heads.items()}

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        return (self.frames, self.size, self.size, 3)

    def build(self, input_shape=None):
        shape = (None, self.frames, self.size, self.size, 3)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        self.feature_layer.build((None, 2 * shape[-1]))
        for layer in self.head_layers.values():
            layer.build((None, self.feature_dim))
        self.built = True

    def features(self, video, training=None):
        x = ops.cast(video, self.compute_dtype)
        for conv, norm in zip(self.convs, self.norms):
            x = ops.relu(norm(conv(x)))
        # Mean and max pooling: max keeps the evidence of a small object undiluted.
        x = ops.concatenate([ops.mean(x, axis=(1, 2, 3)), ops.max(x, axis=(1, 2, 3))], axis=-1)
        return ops.cast(self.feature_layer(x), "float32")

    def call(self, video, training=None):
        h = self.features(video, training=training)
        return {name: ops.cast(layer(h), "float32") for name, layer in self.head_layers.items()}

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "size": self.size,
                "heads": self.heads, "base_width": self.base_width,
                "max_width": self.max_width, "feature_dim": self.feature_dim}


def to_float(videos: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] (the classifier's input range)."""
    videos = np.asarray(videos)
    if videos.dtype != np.uint8:
        raise ValueError(f"videos must be uint8 0-255, got {videos.dtype}")
    return videos.astype(np.float32) / 127.5 - 1.0


@tf.function(reduce_retracing=True)
def _forward(model, video):
    return model.features(video), model(video)


def predict(model: VideoClassifier, videos: np.ndarray, batch_size: int = 64
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """uint8 videos [N, T, H, W, 3] -> ({head: int64 [N] argmax}, features float32 [N, F])."""
    videos = np.asarray(videos)
    if videos.ndim != 5 or tuple(videos.shape[1:]) != model.video_shape:
        raise ValueError(f"videos must be [N, {', '.join(map(str, model.video_shape))}] for "
                         f"this classifier, got {videos.shape}")
    preds = {name: [] for name in model.heads}
    feats = []
    for i in range(0, len(videos), batch_size):
        f, logits = _forward(model, tf.constant(to_float(videos[i:i + batch_size])))
        feats.append(f.numpy())
        for name in model.heads:
            preds[name].append(np.argmax(logits[name].numpy(), axis=-1))
    return ({k: np.concatenate(v).astype(np.int64) for k, v in preds.items()},
            np.concatenate(feats).astype(np.float32))


def accuracy(predictions: Mapping[str, np.ndarray],
             labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per-head accuracy plus `all_correct` (every head right), each in [0, 1]."""
    if set(predictions) != set(labels):
        raise ValueError(f"heads differ: {sorted(predictions)} vs {sorted(labels)}")
    correct = {k: np.asarray(predictions[k]) == np.asarray(labels[k]) for k in labels}
    sizes = {len(v) for v in correct.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"predictions/labels must be non-empty and equally long, got {sizes}")
    out = {k: float(np.mean(v)) for k, v in correct.items()}
    out["all_correct"] = float(np.mean(np.all(np.stack(list(correct.values())), axis=0)))
    return out


def confusion(predictions: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
              heads: Mapping[str, Sequence[str]]) -> dict[str, list[list[int]]]:
    """{head: int counts [asked value][judged value]}: which value a miss looks like."""
    out = {}
    for name, values in heads.items():
        matrix = np.zeros((len(values), len(values)), np.int64)
        np.add.at(matrix, (np.asarray(labels[name]), np.asarray(predictions[name])), 1)
        out[name] = matrix.tolist()
    return out


def chance_accuracy(heads: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Accuracy of uniform guessing, per head and for all heads at once."""
    out = {k: 1.0 / len(v) for k, v in heads.items()}
    out["all_correct"] = float(np.prod(list(out.values())))
    return out


# --------------------------------------------------------------------------- #
# Training and the cache.

@dataclasses.dataclass
class ClassifierConfig:
    """How the judge is trained (part of its cache key)."""

    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 2e-3
    base_width: int = 16
    max_width: int = 128
    feature_dim: int = 128
    # Seeds of the real clips it trains on and is scored on (distinct streams).
    train_seed: int = 101
    eval_seed: int = 202
    eval_examples: int = 256
    train_splits: tuple[str, ...] = ("train", "heldout")

    def validate(self) -> ClassifierConfig:
        for key in ("steps", "batch_size", "base_width", "max_width", "feature_dim",
                    "eval_examples"):
            if getattr(self, key) <= 0:
                raise ValueError(f"classifier {key} must be positive, got {getattr(self, key)}")
        if self.train_seed == self.eval_seed:
            raise ValueError("classifier train_seed and eval_seed must differ")
        return self


def _splits(dataset: data_lib.BuiltinDataset, wanted: Sequence[str]) -> list[str]:
    splits = [s for s in wanted if s in dataset.splits]
    if not splits:
        raise ValueError(f"dataset {dataset.name!r} has none of the splits {list(wanted)}")
    return splits


def real_clips(name: str, split: str, frames: int, height: int, width: int, seed: int,
               count: int, **options) -> tuple[np.ndarray, list[str]]:
    """`count` real clips as uint8 [N, T, H, W, 3] and their captions."""
    ds = data_lib.load(name, split=split, frames=frames, height=height, width=width, seed=seed,
                       num_examples=count, **options)
    videos, captions = [], []
    for batch in ds.batch(64):
        v = tf.cast(tf.round(tf.clip_by_value((batch["video"] + 1.0) * 127.5, 0.0, 255.0)),
                    tf.uint8)
        videos.append(v.numpy())
        captions.extend(c.decode() for c in batch["caption"].numpy())
    return np.concatenate(videos), captions


def _training_data(name: str, dataset: data_lib.BuiltinDataset, heads, frames: int, size: int,
                   cfg: ClassifierConfig, options: Mapping) -> tf.data.Dataset:
    splits = _splits(dataset, cfg.train_splits)
    captions = sorted({c for s in splits for c in dataset.captions(s)})
    labels = caption_labels(dataset, captions, heads)
    keys = tf.constant(captions)
    tables = {h: tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        keys, tf.constant(labels[h])), default_value=-1) for h in heads}
    streams = [data_lib.load(name, split=s, frames=frames, height=size, width=size,
                             seed=cfg.train_seed, **options) for s in splits]
    # Weighted by caption count: every caption combination equally likely, so no
    # split's correlations (one held-out combination per color) become a shortcut.
    weights = [len(dataset.captions(s)) for s in splits]
    ds = tf.data.Dataset.sample_from_datasets(
        streams, weights=[w / sum(weights) for w in weights], seed=cfg.train_seed)
    # Round-trip through uint8 so training sees exactly what the metric will feed.
    ds = ds.map(lambda e: (tf.round((e["video"] + 1.0) * 127.5) / 127.5 - 1.0,
                           {h: tables[h].lookup(e["caption"]) for h in heads}),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def train_classifier(name: str, frames: int, height: int, width: int,
                     cfg: ClassifierConfig | None = None, verbose: int = 0,
                     **options) -> tuple[VideoClassifier, dict]:
    """Trains a classifier on real clips of dataset `name`; returns it and its info.

    The info dict holds the settings, the training time and the accuracy on
    `eval_examples` real clips per split of `cfg.eval_seed` (clips it never saw).
    """
    cfg = (cfg or ClassifierConfig()).validate()
    if height != width:
        raise ValueError(f"square clips only, got {height}x{width}")
    dataset = data_lib.get(name, **options)
    heads = attribute_heads(dataset)
    model = VideoClassifier(frames, height, heads, base_width=cfg.base_width,
                            max_width=cfg.max_width, feature_dim=cfg.feature_dim,
                            dtype="float32", name="video_classifier")
    model.build()
    # Constant, then a tenth for the last 20%: the weights settle instead of jittering
    # (a decay over all steps slowed learning the hardest attribute, shape, too much).
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(0.8 * cfg.steps)], [cfg.learning_rate, cfg.learning_rate / 10])
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss={h: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                        for h in heads},
                  jit_compile=False)  # XLA makes 3D convs far slower on CPU
    keras.utils.set_random_seed(cfg.train_seed)
    data = _training_data(name, dataset, heads, frames, height, cfg, options)
    t0 = time.perf_counter()
    history = model.fit(data, steps_per_epoch=cfg.steps, epochs=1, verbose=verbose,
                        shuffle=False)  # an endless, already random stream
    seconds = time.perf_counter() - t0
    real_accuracy = {}
    for split in _splits(dataset, ("train", "validation", "heldout")):
        videos, captions = real_clips(name, split, frames, height, width, cfg.eval_seed,
                                      cfg.eval_examples, **options)
        preds, _ = predict(model, videos)
        real_accuracy[split] = accuracy(preds, caption_labels(dataset, captions, heads))
    info = {"dataset": name, "options": dict(options), "video_shape": [frames, height, width, 3],
            "heads": {k: list(v) for k, v in heads.items()}, "config": dataclasses.asdict(cfg),
            "final_loss": float(history.history["loss"][-1]), "train_seconds": seconds,
            "real_accuracy": real_accuracy, "chance_accuracy": chance_accuracy(heads),
            "format_version": FORMAT_VERSION}
    # JSON-normal form (tuples -> lists), identical to what the cache reads back.
    return model, json.loads(json.dumps(info))


def cache_key(name: str, frames: int, height: int, width: int, cfg: ClassifierConfig,
              options: Mapping) -> str:
    """A directory name that changes whenever the classifier would."""
    spec = {"dataset": name, "shape": [frames, height, width],
            "options": {k: options[k] for k in sorted(options)},
            "config": dataclasses.asdict(cfg), "version": FORMAT_VERSION}
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"classifier-{name}-{frames}x{height}x{width}-{digest}"


def load_or_train(name: str, frames: int, height: int, width: int, cache_dir: str,
                  cfg: ClassifierConfig | None = None, verbose: int = 0,
                  **options) -> tuple[VideoClassifier, dict, str]:
    """The cached classifier for these settings, trained (and cached) if missing.

    Returns (model, info, directory). The directory appears atomically (built
    under a temporary name, then renamed), so an interrupted run leaves no
    half-written cache entry.
    """
    cfg = (cfg or ClassifierConfig()).validate()
    # Only options that change the clips belong in the key (drop empty ones).
    options = {k: v for k, v in options.items() if v not in ("", None)}
    final = os.path.join(cache_dir, cache_key(name, frames, height, width, cfg, options))
    model_path, meta_path = os.path.join(final, CLASSIFIER_FILE), os.path.join(final, META_FILE)
    if os.path.exists(model_path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            info = json.load(f)
        model = keras.saving.load_model(model_path, compile=False)
        return model, info, final
    model, info = train_classifier(name, frames, height, width, cfg, verbose=verbose, **options)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        model.save(os.path.join(tmp, CLASSIFIER_FILE))
        with open(os.path.join(tmp, META_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.exists(model_path):  # not a concurrent twin: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model, info, final
