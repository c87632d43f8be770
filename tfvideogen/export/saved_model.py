"""Versioned SavedModel export for TF Serving.

    path = export_run("runs/exp1", "models/tfvideogen")   # -> models/tfvideogen/1

Layout (what `tensorflow_model_server --model_config_file=...` expects)::

    <export_dir>/
      models.config            model_config_list: this model, latest version
      batching.config          BatchingParameters for --enable_batching
      1/ 2/ ...                one SavedModel per version:
        saved_model.pb  variables/  fingerprint.pb
        assets.extra/tf_serving_warmup_requests   PredictionLog records
        assets.extra/tfvideogen.json              shapes and provenance

A version is written into a hidden temp directory and renamed into place, so
a polling server never sees half a version (TF Serving ignores directory
names that are not integers). Signatures (method `tensorflow/serving/predict`):

- `serving_default`: `text` string [B], `seed` int64 [B] -> `video` uint8 [B,T,H,W,3]
  (z = `latents_from_seeds(seed, truncation=psi)`: the video of
  `task.generate([text], seed=[seed], truncation=psi)`; psi is fixed at export,
  default 1, and recorded in `tfvideogen.json`);
- `generate`: `z` float32 [B,Z], `text` string [B] -> `video` uint8;
- `generate_from_embedding`: `z` float32 [B,Z], `text_embedding` float32 [B,D] -> `video`
  uint8 (no string ops: the TFLite source);
- `embed_text`: `text` string [B] -> `text_embedding` float32 [B,D].
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import uuid
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfvideogen import models
from tfvideogen.serving import configs
from tfvideogen.serving import warmup as warmup_lib
from tfvideogen.serving.configs import ServingConfig

SIGNATURES = ("serving_default", "generate", "generate_from_embedding", "embed_text")
METADATA_FILE = "tfvideogen.json"
_VERSION = re.compile(r"^\d+$")


class VersionExistsError(FileExistsError):
    """The requested version directory already exists (exports never overwrite)."""


class IncompleteCheckpointError(RuntimeError):
    """The run's checkpoints cannot hold every exported weight (the export would be wrong)."""


def untracked_weights(model: keras.Model, trainable_only: bool = False) -> list[str]:
    """Weights of `model` that `tf.train.Checkpoint` does not reach (so never saves).

    Keras 3 layers kept only in Python lists are invisible to TF's checkpoint
    traversal: a model restored by `load_task` keeps its random init there.
    `trainable_only` skips frozen weights (a frozen TF-Hub module is left out of
    checkpoints on purpose and reloaded from its handle).
    """
    reachable = {id(obj) for obj in tf.train.TrackableView(model).descendants()}
    weights = model.trainable_weights if trainable_only else model.weights
    return [w.path for w in weights if id(w) not in reachable]


# --------------------------------------------------------------------------- #
# Versions.

def list_versions(export_dir: str) -> list[int]:
    """Integer-named subdirectories of `export_dir`, ascending (temp dirs are skipped)."""
    if not tf.io.gfile.isdir(export_dir):
        return []
    found = []
    for name in tf.io.gfile.listdir(export_dir):
        name = name.rstrip("/")
        if _VERSION.match(name) and tf.io.gfile.isdir(os.path.join(export_dir, name)):
            found.append(int(name))
    return sorted(found)


def next_version(export_dir: str) -> int:
    versions = list_versions(export_dir)
    return versions[-1] + 1 if versions else 1


# --------------------------------------------------------------------------- #
# Signatures.

def _check_float32(task: models.TextToVideo) -> None:
    for model in (task.text_encoder, task.sampler):
        policy = model.dtype_policy.name
        if policy != "float32":
            raise ValueError(
                f"{model.name} was built under the {policy!r} dtype policy; exports must be "
                f"float32 (mixed-precision graphs do not convert to TFLite builtins). Use "
                f"export_run(), which rebuilds the run under float32, or build the task after "
                f"keras.mixed_precision.set_global_policy('float32').")


def _same_batch(a: tf.Tensor, b: tf.Tensor, names: str) -> list:
    """In-graph check (also under real TF Serving): equal, non-zero batch sizes."""
    na, nb = tf.shape(a)[0], tf.shape(b)[0]
    return [tf.debugging.assert_equal(na, nb, message=f"{names} must have the same batch size"),
            tf.debugging.assert_positive(na, message="empty batch: send at least one row")]


def signature_functions(task: models.TextToVideo,
                        truncation: float = 1.0) -> dict[str, tuple]:
    """name -> (python fn, input signature) for the four served signatures.

    Every signature ends in `to_uint8`, so clients get what `task.generate` returns.
    `truncation` scales the seeded latents of `serving_default` (the z-taking
    signatures use z as sent).
    """
    models.check_truncation(truncation)
    encoder, generator = task.text_encoder, task.sampler
    z_dim = generator.z_dim
    text_dim = int(getattr(encoder, "output_dim", generator.text_dim))
    text = tf.TensorSpec([None], tf.string, name="text")
    seed = tf.TensorSpec([None], tf.int64, name="seed")
    z = tf.TensorSpec([None, z_dim], tf.float32, name="z")
    emb = tf.TensorSpec([None, text_dim], tf.float32, name="text_embedding")

    def video(z, embedding):
        return {"video": models.to_uint8(generator(z, embedding, training=False))}

    def serving_default(text, seed):
        with tf.control_dependencies(_same_batch(text, seed, "text and seed")):
            z = models.latents_from_seeds(seed, z_dim, truncation)
        return video(z, encoder(text, training=False))

    def generate(z, text):
        with tf.control_dependencies(_same_batch(z, text, "z and text")):
            embedding = encoder(text, training=False)
        return video(z, embedding)

    def generate_from_embedding(z, text_embedding):
        with tf.control_dependencies(_same_batch(z, text_embedding, "z and text_embedding")):
            z = tf.identity(z)
        return video(z, text_embedding)

    def embed_text(text):
        return {"text_embedding": tf.cast(encoder(text, training=False), tf.float32)}

    return {"serving_default": (serving_default, [text, seed]),
            "generate": (generate, [z, text]),
            "generate_from_embedding": (generate_from_embedding, [z, emb]),
            "embed_text": (embed_text, [text])}


def build_archive(task: models.TextToVideo,
                  truncation: float = 1.0) -> keras.export.ExportArchive:
    """An ExportArchive with the four signatures (explicit names, no `args_0`)."""
    _check_float32(task)
    archive = keras.export.ExportArchive()
    archive.track(task.text_encoder)  # also tracks the StringLookup table
    archive.track(task.sampler)
    for name, (fn, spec) in signature_functions(task, truncation).items():
        archive.add_endpoint(name, fn, spec)
    return archive


# --------------------------------------------------------------------------- #
# Warmup and verification.

def default_captions(task: models.TextToVideo, count: int) -> list[str]:
    """Captions made of vocabulary words (any word sequence is valid for the encoder)."""
    vocab = list(getattr(task.text_encoder, "vocabulary", [])) or ["a", "video"]
    return [" ".join(vocab[(i + k) % len(vocab)] for k in range(4)) for i in range(count)]


def warmup_records(task: models.TextToVideo, model_name: str, max_batch_size: int,
                   captions: Sequence[str]) -> list:
    """PredictionLogs: `serving_default` at every allowed batch size, the others at 1."""
    captions = list(captions)
    records = []
    for batch in configs.allowed_batch_sizes(max_batch_size):
        text = np.array([captions[i % len(captions)] for i in range(batch)], dtype=object)
        records.append(warmup_lib.predict_log(model_name, "serving_default",
                                          {"text": text, "seed": np.arange(batch, dtype=np.int64)}))
    text = np.array(captions[:1], dtype=object)
    z = models.latents_from_seeds(np.array([0], np.int64), task.sampler.z_dim).numpy()
    emb = task.text_encoder(tf.constant(captions[:1]), training=False).numpy().astype(np.float32)
    records += [warmup_lib.predict_log(model_name, "generate", {"z": z, "text": text}),
                warmup_lib.predict_log(model_name, "generate_from_embedding",
                                   {"z": z, "text_embedding": emb}),
                warmup_lib.predict_log(model_name, "embed_text", {"text": text})]
    return records


def verify_export(task: models.TextToVideo, path: str, captions: Sequence[str],
                  truncation: float = 1.0) -> int:
    """Loads `path`, replays its warmup file and checks `serving_default` against the
    in-memory task (uint8 equality). Returns the number of replayed records."""
    from tfvideogen.serving import tensors

    loaded = tf.saved_model.load(path)
    missing = set(SIGNATURES) - set(loaded.signatures)
    if missing:
        raise RuntimeError(f"export {path} lacks signatures {sorted(missing)}")
    replayed = 0
    wpath = warmup_lib.warmup_path(path)
    if tf.io.gfile.exists(wpath):
        for record in warmup_lib.read_warmup(wpath):
            request = record.predict_log.request
            fn = loaded.signatures[request.model_spec.signature_name or "serving_default"]
            fn(**{k: tf.constant(tensors.to_numpy(v)) for k, v in request.inputs.items()})
            replayed += 1
    captions = list(captions)
    seeds = np.arange(len(captions), dtype=np.int64) * 7919
    served = loaded.signatures["serving_default"](text=tf.constant(captions),
                                                  seed=tf.constant(seeds))["video"].numpy()
    expected = task.generate(captions, seed=seeds, truncation=truncation)
    if served.shape != expected.shape or not np.array_equal(served, expected):
        diff = (np.abs(served.astype(int) - expected.astype(int)).max()
                if served.shape == expected.shape else f"shape {served.shape} vs {expected.shape}")
        raise RuntimeError(f"export {path} does not reproduce the in-memory model "
                           f"(max |diff| {diff}); not published")
    return replayed


# --------------------------------------------------------------------------- #
# Export.

def _tmp_dir(export_dir: str, version: int) -> str:
    # Hidden and not an integer: TF Serving's and the dev server's pollers skip it.
    return os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")


def _metadata(task: models.TextToVideo, version: int, truncation: float,
              extra: dict | None) -> dict:
    g = task.sampler
    encoder = task.text_encoder
    return {"format": 1, "version": version, "signatures": list(SIGNATURES),
            "video_shape": list(task.video_shape), "z_dim": int(g.z_dim),
            "text_dim": int(g.text_dim), "generator": g.name,
            "ema": task.ema_generator is not None,
            "max_tokens": int(getattr(encoder, "max_tokens", 0)),
            "vocabulary_size": len(getattr(encoder, "vocabulary", [])),
            "truncation": float(truncation), **(extra or {})}


def export_saved_model(task: models.TextToVideo, export_dir: str, version: int | None = None,
                       *, warmup: bool = True, serving: ServingConfig | None = None,
                       captions: Sequence[str] | None = None, verify: bool = True,
                       metadata: dict | None = None, truncation: float = 1.0) -> str:
    """Writes `task` as `<export_dir>/<version>/` and returns that path.

    Uses `task.sampler` (the EMA generator when present) and `task.text_encoder`;
    the task must be float32 (see `export_run` for mixed-precision runs).
    `version`: None = next integer; an existing version raises VersionExistsError.
    `warmup`: write `assets.extra/tf_serving_warmup_requests`. `verify`: reload
    the temp export, replay the warmup and require uint8 equality with
    `task.generate` before publishing. `truncation` psi in (0, 1] scales the
    latents `serving_default` derives from seeds. Also (re)writes `models.config` and
    `batching.config` next to the versions, from `serving`.
    """
    serving = (serving or ServingConfig()).validate()
    if version is not None and (not isinstance(version, int | np.integer) or version < 0):
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    version = next_version(export_dir) if version is None else int(version)
    final = os.path.join(export_dir, str(version))
    if tf.io.gfile.exists(final):
        raise VersionExistsError(
            f"version {version} already exists at {final}; exports never overwrite "
            f"(omit the version to write {next_version(export_dir)})")
    captions = list(captions) if captions else default_captions(task, 4)
    archive = build_archive(task, truncation)  # raises before anything is written
    tf.io.gfile.makedirs(export_dir)
    tmp = _tmp_dir(export_dir, version)
    try:
        archive.write_out(tmp, verbose=False)
        if warmup:
            records = warmup_records(task, serving.model_name, serving.max_batch_size, captions)
            warmup_lib.write_warmup(warmup_lib.warmup_path(tmp), records)
        meta = _metadata(task, version, truncation, metadata)
        tf.io.gfile.makedirs(os.path.join(tmp, warmup_lib.WARMUP_DIR))
        with tf.io.gfile.GFile(os.path.join(tmp, warmup_lib.WARMUP_DIR, METADATA_FILE), "w") as f:
            f.write(json.dumps(meta, indent=2, sort_keys=True))
        if verify:
            verify_export(task, tmp, captions, truncation)
        if tf.io.gfile.exists(final):  # a concurrent export took the number meanwhile
            raise VersionExistsError(f"version {version} appeared at {final} during the export")
        tf.io.gfile.rename(tmp, final, overwrite=False)
    except BaseException:
        with contextlib.suppress(tf.errors.OpError):
            tf.io.gfile.rmtree(tmp)
        raise
    base_path = serving.base_path or os.path.abspath(export_dir)
    configs.write_text_atomic(os.path.join(export_dir, configs.MODELS_CONFIG),
                              configs.models_config_text(serving, base_path))
    configs.write_text_atomic(os.path.join(export_dir, configs.BATCHING_CONFIG),
                              configs.batching_config_text(serving))
    logging.info("exported version %d to %s", version, final)
    return final


@dataclasses.dataclass
class ExportRunConfig:
    """What `export/saved_model.py` exports: a run (latest or named checkpoint) -> a version."""

    model_dir: str = ""
    export_dir: str = "models/tfvideogen"
    checkpoint: str = ""
    version: int | None = None
    warmup: bool = True
    verify: bool = True
    # Latent scale of `serving_default` (the truncation trick); 1 = none.
    truncation: float = 1.0
    serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)

    def validate(self) -> ExportRunConfig:
        if not self.model_dir:
            raise ValueError("model_dir is required (a training run directory)")
        if not self.export_dir:
            raise ValueError("export_dir is required")
        if self.version is not None and self.version < 0:
            raise ValueError(f"version must be >= 0, got {self.version}")
        models.check_truncation(self.truncation)
        self.serving.validate()
        return self


def export_from_config(cfg: ExportRunConfig) -> str:
    """`export_run` driven by an `ExportRunConfig`; returns the version directory."""
    cfg.validate()
    return export_run(cfg.model_dir, cfg.export_dir, cfg.checkpoint, cfg.version,
                      warmup=cfg.warmup, serving=cfg.serving, verify=cfg.verify,
                      truncation=cfg.truncation)


def float32_policy() -> contextlib.AbstractContextManager:
    """Builds under the float32 Keras policy, restoring the previous policy afterwards."""
    from tfvideogen.training import trainer

    return trainer.precision("float32")


def export_run(model_dir: str, export_dir: str, checkpoint: str = "",
               version: int | None = None, *, warmup: bool = True,
               serving: ServingConfig | None = None, verify: bool = True,
               truncation: float = 1.0) -> str:
    """Exports a training run's latest (or the named) checkpoint; returns the version dir.

    The task is rebuilt under the float32 policy whatever `train.mixed_precision`
    the run used (variables are float32 either way, so the checkpoint restores
    as is); the previous global policy is restored afterwards.
    """
    from tfvideogen import training

    with float32_policy():
        task, cfg, step = training.load_task(model_dir, checkpoint)
        lost = (untracked_weights(task.text_encoder, trainable_only=True)
                + untracked_weights(task.sampler))
        if lost:
            raise IncompleteCheckpointError(
                f"{len(lost)} exported weights (e.g. {', '.join(lost[:3])}) are not tracked by "
                f"tf.train.Checkpoint, so {model_dir}'s checkpoints do not contain them and the "
                f"export would serve their random init. The model keeps those layers only in "
                f"Python lists; also assign each to an attribute (e.g. setattr(self, 'up0', "
                f"conv)) so checkpoints hold them, then retrain. Nothing was written.")
        try:
            ds = training.trainer.dataset_for(cfg)
            captions = ds.sample_captions("train", 4)
        except (ValueError, KeyError, OSError, tf.errors.OpError):
            captions = None  # warmup/verification then use vocabulary-word captions
        source = {"model_dir": os.path.abspath(model_dir), "checkpoint": checkpoint or "latest",
                  "step": step, "experiment": cfg.name,
                  "train_precision": cfg.train.mixed_precision}
        path = export_saved_model(task, export_dir, version, warmup=warmup, serving=serving,
                                  captions=captions, verify=verify, metadata={"source": source},
                                  truncation=truncation)
    logging.info("run %s step %d (%s generator) -> %s", model_dir, step,
                 "EMA" if task.ema_generator is not None else "raw", path)
    return path
