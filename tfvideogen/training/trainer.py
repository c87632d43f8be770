"""The GAN training loop: a `tf.function` step (D then G), checkpoints, samples.

    result = tfvideogen.training.train(cfg, model_dir="runs/exp1")

Rerunning on the same `model_dir` resumes from the last checkpoint: step,
weights, optimizer slots, EMA, RNG state and data position (built-in datasets
are indexed, so the stream restarts at element `step * batch_size`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfvideogen import config as config_lib
from tfvideogen import data as data_lib
from tfvideogen import models
from tfvideogen.models import embedding_cache
from tfvideogen.training import augment as augment_lib
from tfvideogen.training import captions as captions_lib
from tfvideogen.training import losses, summaries
from tfvideogen.training.progress import Progress
from tfvideogen.training.schedules import TailDecay
from tfvideogen.utils import hardware
from tfvideogen.utils import video as video_lib

CONFIG_FILE = "config.json"


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


class SetupError(ValueError):
    """The config does not fit the strategy, devices or text encoder it runs with."""


class IncompatibleRunError(ValueError):
    """`model_dir` holds a run whose model differs from the requested one."""


@dataclasses.dataclass
class TrainResult:
    model_dir: str
    step: int
    losses: dict[str, float]
    steps_per_second: float
    task: models.TextToVideo
    preempted: bool = False


# --------------------------------------------------------------------------- #
# Setup helpers.

def resolve_precision(policy: str) -> tuple[str, str]:
    """(the Keras policy `policy` names, why): "auto" picks one for this host.

    auto = mixed_bfloat16 on a CPU-only host whose CPU has bfloat16 matmul
    instructions (AMX or AVX512-BF16; there the step ran 18-23% faster and
    trained as well, README#Speed), else float32 (bfloat16 is 1.3-1.5x slower
    without them; GPUs: float32 until mixed_float16 is measured there).
    """
    if policy not in config_lib.PRECISION_CHOICES:
        raise ValueError(f"mixed_precision={policy!r}; "
                         f"valid: {', '.join(config_lib.PRECISION_CHOICES)}")
    if policy != "auto":
        return policy, "requested"
    if tf.config.list_physical_devices("GPU"):
        return "float32", "auto: a GPU is visible (pass mixed_float16 to use it)"
    flag = hardware.fast_bfloat16_flag()
    if flag:
        return "mixed_bfloat16", f"auto: the CPU has {flag}"
    return "float32", "auto: the CPU has no bfloat16 matmul instructions (or oneDNN is off)"


def with_resolved_precision(cfg: config_lib.ExperimentConfig) -> config_lib.ExperimentConfig:
    """`cfg`, or a copy whose `train.mixed_precision="auto"` is this host's policy (logged)."""
    if cfg.train.mixed_precision != "auto":
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.train.mixed_precision, why = resolve_precision("auto")
    logging.info("train.mixed_precision=%s (%s)", cfg.train.mixed_precision, why)
    return cfg


def set_precision(policy: str) -> None:
    """Sets the global Keras dtype policy (call before building models); "auto" resolved."""
    keras.mixed_precision.set_global_policy(resolve_precision(policy)[0])


@contextlib.contextmanager
def precision(policy: str):
    """`set_precision(policy)` for the block, then the previous global policy again.

    Models keep the policy they were built under; restoring it keeps a mixed
    run from leaking its policy into later model builds in the same process.
    """
    previous = keras.mixed_precision.global_policy().name
    set_precision(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def configure_runtime(cfg: config_lib.TrainConfig) -> None:
    """Applies the process-wide runtime settings of `cfg`: thread pools, determinism.

    Thread pools can only be sized before TF's runtime starts (train.py calls
    this first thing); later, a differing request is logged and ignored.
    """
    pools = (("intra_op_threads", cfg.intra_op_threads,
              tf.config.threading.get_intra_op_parallelism_threads,
              tf.config.threading.set_intra_op_parallelism_threads),
             ("inter_op_threads", cfg.inter_op_threads,
              tf.config.threading.get_inter_op_parallelism_threads,
              tf.config.threading.set_inter_op_parallelism_threads))
    for key, value, get, set_ in pools:
        if value and get() != value:
            try:
                set_(value)
            except RuntimeError:
                logging.warning("train.%s=%d ignored: TensorFlow is already initialised in this "
                                "process (set it before any op runs, as train.py does)", key, value)
    if cfg.intra_op_threads or cfg.inter_op_threads:
        logging.info("TF thread pools: intra-op %d, inter-op %d (0 = TF default)",
                     tf.config.threading.get_intra_op_parallelism_threads(),
                     tf.config.threading.get_inter_op_parallelism_threads())
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"strategy={name!r}; valid: {', '.join(config_lib.STRATEGIES)}")


class SyncedLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """`LossScaleOptimizer` whose overflow check agrees across replicas.

    Keras 3 checks each replica's local (not yet all-reduced) gradients; where
    a strategy runs without merge_call (XLA on GPUs) each replica then decides
    alone, and one can skip a step whose all-reduce the others wait on. Here
    the verdict is all-reduced first: an overflow on any replica skips the
    step and halves the scale on every replica.
    """

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return finite
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite),
                                                                 tf.float32))
        return tf.equal(bad, 0.0)


def make_optimizer(lr: float, cfg: config_lib.TrainConfig, name: str) -> keras.optimizers.Optimizer:
    if cfg.lr_decay_steps:
        lr = TailDecay(lr, cfg.steps, cfg.lr_decay_steps)
    opt = keras.optimizers.Adam(lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2,
                                epsilon=cfg.adam_epsilon, name=name)
    if cfg.mixed_precision == "mixed_float16":
        # Dynamic loss scaling: scale_loss() before the gradient, apply() unscales
        # and skips steps whose gradients overflowed. (bfloat16 has float32's
        # range: no scaling.)
        opt = SyncedLossScaleOptimizer(opt, name=f"{name}_loss_scale")
    return opt


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes the run directory (the only one unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def check_run_dir(model_dir: str, cfg: config_lib.ExperimentConfig) -> None:
    """Refuses to mix runs: the stored model/data shape must match the request."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        try:
            stored = config_lib.loads(f.read())
        except (ValueError, json.JSONDecodeError) as e:
            raise IncompatibleRunError(f"{path} is not a tfvideogen config ({e}); "
                                       f"use another --model_dir") from None
    ours = config_lib.to_dict(cfg)
    theirs = config_lib.to_dict(stored)
    keys = [("model", None)] + [("data", k) for k in ("name", "frames", "height", "width",
                                                      "num_objects")]
    for section, key in keys:
        a = ours[section] if key is None else ours[section][key]
        b = theirs[section] if key is None else theirs[section][key]
        if a != b:
            where = section if key is None else f"{section}.{key}"
            raise IncompatibleRunError(
                f"--model_dir {model_dir} holds a run with a different {where} "
                f"({_diff(b, a)}); use a new --model_dir or the stored config. "
                f"Nothing was overwritten.")


def _diff(stored, requested, prefix="") -> str:
    if isinstance(stored, dict) and isinstance(requested, dict):
        for k in stored:
            if stored[k] != requested.get(k):
                return _diff(stored[k], requested.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.') or 'value'}: stored {stored!r}, requested {requested!r}"


def write_config(model_dir: str, cfg: config_lib.ExperimentConfig) -> None:
    path = os.path.join(model_dir, CONFIG_FILE)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(config_lib.dumps(cfg))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def load_run_config(model_dir: str) -> config_lib.ExperimentConfig:
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {model_dir}: not a tfvideogen run directory")
    with tf.io.gfile.GFile(path) as f:
        return config_lib.loads(f.read())


def dataset_for(cfg: config_lib.ExperimentConfig) -> data_lib.BuiltinDataset:
    d = cfg.data
    return data_lib.get(d.name, num_objects=d.num_objects, mnist_path=d.mnist_path)


def training_stream(cfg: config_lib.ExperimentConfig, start: int = 0) -> tf.data.Dataset:
    """The unbatched training elements of `cfg.data`, from element `start` on."""
    d = cfg.data
    return data_lib.load(d.name, split=d.split, frames=d.frames, height=d.height, width=d.width,
                         seed=d.seed, start=start, num_objects=d.num_objects,
                         mnist_path=d.mnist_path, shuffle_buffer=d.shuffle_buffer, flip=d.flip)


def build_task(cfg: config_lib.ExperimentConfig) -> models.TextToVideo:
    ds = dataset_for(cfg)
    return models.build_task(cfg.model, ds.vocabulary(), cfg.data.frames, cfg.data.height,
                             ema=cfg.train.ema_decay > 0, seed=cfg.train.seed,
                             route_words=route_words(cfg, ds))


def route_words(cfg: config_lib.ExperimentConfig, ds: data_lib.BuiltinDataset) -> list[str]:
    """`model.text_encoder.route_words` as words: "motion" -> the dataset's motion words."""
    value = cfg.model.text_encoder.route_words.strip()
    if value != "motion":
        return value.split()
    if "motion" not in (ds.attributes or {}):
        raise ValueError(f"model.text_encoder.route_words=motion: dataset {cfg.data.name!r} "
                         "has no motion attribute; list the words instead")
    return sorted({w for own in data_lib.own_words(ds.attributes["motion"]) for w in own})


# Checkpoint key of the Keras SeedGenerator states (D's frame sampler).
SEED_STATES = "seed_states"


def seed_states(task: models.TextToVideo) -> list:
    """The state variables of the networks' Keras SeedGenerators (D's frame sampler).

    tf.train.Checkpoint does not reach them through the models (a SeedGenerator is
    not trackable), so a resumed run would restart their streams: the frames D
    scores would no longer be the uninterrupted run's.
    """
    return [v for net in (task.text_encoder, task.generator, task.discriminator)
            for v in net.non_trainable_variables if v.name == "seed_generator_state"]


def make_checkpoint(task: models.TextToVideo, step: tf.Variable, rng: tf.random.Generator,
                    g_opt=None, d_opt=None, *, with_seed_states: bool = True
                    ) -> tf.train.Checkpoint:
    """What a run saves. With the optimizers (a training checkpoint), also the
    networks' seed states, unless `with_seed_states=False` (checkpoints written
    before 2026-11-28 lack them)."""
    parts = {"step": step, "rng": rng, "text_encoder": task.text_encoder,
             "generator": task.generator, "discriminator": task.discriminator}
    if task.ema_generator is not None:
        parts["ema_generator"] = task.ema_generator
    if g_opt is not None:
        parts.update(g_optimizer=g_opt, d_optimizer=d_opt)
        states = seed_states(task) if with_seed_states else []
        if states:
            parts[SEED_STATES] = states
    return tf.train.Checkpoint(**parts)


def restore(checkpoint: tf.train.Checkpoint, path: str, *, expect_partial: bool = False) -> None:
    """Restores `path`, raising IncompatibleRunError when it does not fit."""
    try:
        status = checkpoint.restore(path)
        if expect_partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError) as e:
        raise IncompatibleRunError(
            f"checkpoint {path} does not match this model ({str(e).splitlines()[0][:300]}); "
            f"use a new --model_dir. Nothing was overwritten.") from None


def load_task(model_dir: str, checkpoint: str = "") -> tuple[models.TextToVideo,
                                                              config_lib.ExperimentConfig, int]:
    """Rebuilds the task of a run and restores its latest (or the named) checkpoint."""
    cfg = load_run_config(model_dir)
    task = build_task(cfg)
    step = tf.Variable(0, dtype=tf.int64)
    ckpt = make_checkpoint(task, step, tf.random.Generator.from_seed(0))
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if not path:
        raise FileNotFoundError(f"no checkpoint in {model_dir}/checkpoints")
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    restore(ckpt, path, expect_partial=True)
    return task, cfg, int(step.numpy())


# --------------------------------------------------------------------------- #
# The step.

def mismatch_pass(t: config_lib.TrainConfig) -> bool:
    """Whether D's trunks run a third pass, over the real clips with mismatched
    captions (not with `rescore_mismatch`, nor at `mismatch_weight` 0)."""
    return t.mismatch_weight > 0 and not t.rescore_mismatch


def make_train_step(task: models.TextToVideo, g_opt, d_opt, rng: tf.random.Generator,
                    cfg: config_lib.ExperimentConfig,
                    strategy: tf.distribute.Strategy, cache_text: bool = True) -> Callable:
    """Builds the distributed `tf.function` step: one D update, then one G update.

    `step_fn(batch, step, stop=None, r1=False)`: `batch` is a GLOBAL batch
    (distributed dataset element), `step` the int64 step number (EMA warm-up,
    indexed noise, augmentation seeds), `stop` an optional bool: this worker
    wants to stop; `r1` (Python bool, one trace each) adds the lazy R1
    penalty to this step's D loss. Returns float32
    scalars averaged over replicas: d_loss, g_loss, real_logit, fake_logit
    (d_contrastive and g_contrastive when `train.contrastive_weight` > 0, d_words
    and g_words with `model.discriminator.word_head`),
    and `stop` (> 0 when any worker asked to stop: all stop at the same step).

    D sees real clips with their captions (positives), generated clips and
    real clips with another clip's caption (negatives). The text encoder is
    trained with D (it must tell captions apart to score the match); G sees
    the embedding as a constant, so G cannot cheat by moving the text space.
    Losses are averaged over the global batch (per-replica mean / replicas);
    mismatched captions and contrastive columns come from the global batch.
    With `train.word_dropout`, G and D see word-dropped captions and a clip's
    negatives are only captions that contradict it (training/captions.py).
    String ops (tokenising, caption comparison, cache look-ups) run outside the
    per-replica core, which `train.jit_compile` compiles with XLA.
    """
    t = cfg.train
    enc, gen, disc, ema = task.text_encoder, task.generator, task.discriminator, task.ema_generator
    if cache_text and embedding_cache.is_frozen(enc):
        # Frozen (hub) encoder: embed each caption once, look it up in the step.
        enc = embedding_cache.for_training(enc, embedding_cache.known_captions(dataset_for(cfg)))
    z_dim = gen.z_dim
    replicas = strategy.num_replicas_in_sync
    scaled = isinstance(g_opt, keras.optimizers.LossScaleOptimizer)
    text_inputs, embed = _text_path(enc, t.jit_compile)
    word_classes = disc.word_classes
    # fake_word_weight applies to a sigmoid word head only (config.py).
    reject_fakes = bool(word_classes and t.fake_word_weight) and t.word_loss == "sigmoid"
    rejected = None
    if word_classes:
        ds = dataset_for(cfg)
        vocabulary = ds.vocabulary()
        if len(vocabulary) != word_classes:
            raise SetupError(f"the discriminator's word head has {word_classes} classes, the "
                             f"dataset's vocabulary {len(vocabulary)} words")
        words_of = functools.partial(captions_lib.word_targets,
                                     table=captions_lib.word_table(vocabulary),
                                     size=word_classes)
        # The caption words fake_word_weight rejects on generated clips: a 0/1
        # mask over the vocabulary, or None for every caption word.
        if reject_fakes and t.fake_words == "attributes":
            named = set(ds.attribute_words())
            rejected = tf.constant([float(w in named) for w in vocabulary])

    def noise(n, step):
        if t.noise == "stream":
            return rng.normal([n, z_dim])  # a different stream on every replica
        # "indexed": the replica's share of the global batch is contiguous.
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group,
                          tf.int64)
        return indexed_latents(t.seed, step * t.batch_size + replica * tf.cast(n, tf.int64),
                               n, z_dim)

    policy = augment_lib.check_policy(t.augment) and t.augment

    def d_input(clips, seed, rows, groups: int):
        """DiffAugment: the same policy for real and fake, fresh parameters per clip.

        `clips` holds `groups` stacked shares of this replica's clips; `rows`:
        None (one replica) or (positions, size) in the global batch, whose draws
        each replica then takes its rows of.
        """
        if not policy:
            return clips
        if rows is None:
            return augment_lib.augment(clips, policy, seed)
        own, total = rows
        own = tf.concat([own + g * total for g in range(groups)], 0)
        return augment_lib.augment(clips, policy, seed, own, groups * total)

    def replica_step(batch, step, stop, r1):
        video, captions = batch["video"], batch["caption"]
        z = noise(tf.shape(video)[0], step)
        # Stateless seeds for augmentation and word dropout: a function of (seed,
        # step) drawn for the global batch, so a resumed run, and N replicas,
        # draw exactly what an uninterrupted run on one device does.
        aug_seed = tf.stack([tf.constant(t.seed, tf.int64) * 65537, step])
        rows = None if replicas == 1 else captions_lib.global_rows(tf.shape(video)[0])
        if t.word_dropout:
            ids = text_inputs(captions)  # the builtin encoder's token ids (validated)
            text = captions_lib.drop_words(
                ids, t.word_dropout, tf.random.experimental.stateless_fold_in(aug_seed, 2),
                *(rows or ()))
            negatives = captions_lib.negatives(ids, text, rows)
        else:
            text = text_inputs(captions)
            negatives = captions_lib.negatives(captions_lib.caption_keys(captions), rows=rows)
        words = words_of(captions) if word_classes else None
        out = core(video, text, *negatives, words, z, aug_seed, rows, r1)
        return {**out, "stop": tf.cast(stop, tf.float32)}

    grads = embedding_gradients(t.embedding_grads)
    word_loss = losses.WORD_LOSSES[t.word_loss]

    contrast = t.contrastive_weight > 0
    # mismatch_weight 0: no mismatched negatives, and no D pass over them.
    mismatch = t.mismatch_weight > 0

    def contrastive(features, emb, same_caption):
        return losses.contrastive(disc.similarity(features, emb), same_caption,
                                  t.contrastive_temperature)

    def update(video, text, mismatch_mask, mismatch_count, same_caption, prev, words, z,
               aug_seed, rows, r1: bool):
        """`prev` None: one replica. Else the global-batch index of each clip's
        predecessor, `same_caption` is [local clips, global captions] and
        `mismatch_count` the global number of mismatched pairs / replicas.
        `words`: multi-hot [clips, V] of each caption's words (word head) or None."""
        d_vars = disc.trainable_variables + enc.trainable_variables
        g_vars = gen.trainable_variables
        with tf.GradientTape() as d_tape:
            emb = embed(text)
            cond = tf.stop_gradient(emb)
            if prev is None:
                all_emb, wrong = emb, tf.roll(emb, shift=1, axis=0)
            else:
                # Differentiable: a trainable encoder gets each replica's share back.
                all_emb = tf.distribute.get_replica_context().all_gather(emb, axis=0)
                # A one-hot matmul, not tf.gather: all_gather's gradient all-reduces
                # dense tensors only (gather's would be IndexedSlices).
                wrong = tf.matmul(tf.one_hot(prev, tf.shape(all_emb)[0], dtype=all_emb.dtype),
                                  all_emb)
            all_cond = tf.stop_gradient(all_emb)
            # G runs once per step: its tape stays open across the D update, and
            # the G loss re-scores the same clips with the updated D (as in the
            # PyTorch DCGAN recipe), saving a generator forward pass.
            with tf.GradientTape() as g_tape:
                fake = gen(z, cond, training=True)
            # One D pass (D is per-sample) over [real; fake; real-with-wrong-caption],
            # or, with rescore_mismatch, over [real; fake]: D's conv trunks do not see
            # the text, so the real clips' features are rescored by the heads alone
            # (with mismatch_weight 0, [real; fake] and no rescoring).
            fake_in = tf.stop_gradient(tf.cast(fake, video.dtype))
            clips, texts = [video, fake_in], [emb, emb]
            if mismatch_pass(t):
                clips, texts = [*clips, video], [*texts, wrong]
            logits, features = disc(
                d_input(tf.concat(clips, 0), tf.random.experimental.stateless_fold_in(aug_seed, 0),
                        rows, len(clips)),
                tf.concat(texts, 0), training=True, return_features=True)
            n = tf.shape(video)[0]
            real_features = [f[:n] for f in features]
            real_l, fake_l, *mis_l = tf.split(logits, len(clips), axis=0)
            if not mismatch:
                mis_l = None
            elif not mis_l:
                mis_l = disc.score(real_features, wrong)
            else:
                mis_l = mis_l[0]
            d_loss = losses.discriminator_loss(t.loss, real_l, fake_l, mis_l, mismatch_mask,
                                               t.mismatch_weight, mismatch_count)
            d_obj = d_loss
            extra = {}
            if contrast:
                extra["d_contrastive"] = contrastive(real_features, all_emb, same_caption)
                d_obj += t.contrastive_weight * extra["d_contrastive"]
            if words is not None:
                # Real clips (as in improved AC-GAN variants): D learns what the words
                # look like, not how to name G's failures. With fake_word_weight, a
                # generated clip's caption words are also "no" (Omni-GAN style).
                extra["d_words"] = word_loss(disc.word_logits(real_features), words)
                d_obj += t.word_weight * extra["d_words"]
                if reject_fakes:
                    fake_words = disc.word_logits([f[n:2 * n] for f in features])
                    targets = words if rejected is None else words * rejected
                    extra["d_fake_words"] = losses.word_rejection(fake_words, targets)
                    d_obj += t.fake_word_weight * extra["d_fake_words"]
            if r1:
                # Lazy R1 (StyleGAN2): every r1_every-th step, weighted by r1_every.
                with tf.GradientTape() as r1_tape:
                    r1_tape.watch(video)
                    real_sum = tf.reduce_sum(tf.cast(disc(video, emb, training=True),
                                                     tf.float32))
                d_obj += losses.r1_penalty(r1_tape.gradient(real_sum, video),
                                           t.r1_gamma) * t.r1_every
            d_obj = d_obj / replicas
            if scaled:
                d_obj = d_opt.scale_loss(d_obj)
        d_opt.apply(grads(d_tape.gradient(d_obj, d_vars)), d_vars)

        with g_tape:
            g_in = d_input(fake, tf.random.experimental.stateless_fold_in(aug_seed, 1), rows, 1)
            g_logits, g_features = disc(g_in, cond, training=True, return_features=True)
            g_loss = losses.generator_loss(t.loss, g_logits)
            g_obj = g_loss
            if contrast:
                extra["g_contrastive"] = contrastive(g_features, all_cond, same_caption)
                g_obj += t.contrastive_weight * extra["g_contrastive"]
            if words is not None:
                extra["g_words"] = word_loss(disc.word_logits(g_features), words)
                g_obj += t.word_weight * extra["g_words"]
            g_obj = g_obj / replicas
            if scaled:
                g_obj = g_opt.scale_loss(g_obj)
        g_opt.apply(grads(g_tape.gradient(g_obj, g_vars)), g_vars)
        return {"d_loss": d_loss, "g_loss": g_loss,
                "real_logit": tf.reduce_mean(tf.cast(real_l, tf.float32)),
                "fake_logit": tf.reduce_mean(tf.cast(fake_l, tf.float32)), **extra}

    # A nested tf.function only for XLA: plain (inlined) otherwise, since
    # MirroredStrategy's merge_call cannot run inside a nested function.
    core = tf.function(update, jit_compile=True) if t.jit_compile else update

    @tf.function
    def step_fn(batch, step, stop=None, r1: bool = False):
        step = tf.cast(step, tf.int64)
        stop = tf.constant(False) if stop is None else tf.convert_to_tensor(stop, tf.bool)
        out = strategy.run(replica_step, args=(batch, step, stop, r1))
        out = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
               for k, v in out.items()}
        if ema is not None:
            # Warm-up so early samples are not dominated by the random init.
            s = tf.cast(step, tf.float32)
            decay = tf.minimum(t.ema_decay, (1.0 + s) / (10.0 + s))
            for e, w in zip(ema.weights, gen.weights):
                e.assign(decay * e + (1.0 - decay) * tf.cast(w, e.dtype))
        return out

    return step_fn


def indexed_latents(seed: int, first, n, z_dim: int) -> tf.Tensor:
    """z of the run's examples first, ..., first + n - 1: float32 [n, z_dim], N(0, 1).

    Row i is a pure function of (seed, first + i), so how a global batch is
    split over replicas (or resumed) does not change any example's noise.
    """
    index = tf.cast(first, tf.int64) + tf.range(n, dtype=tf.int64)
    keys = tf.stack([tf.fill(tf.shape(index), tf.constant(seed, tf.int64)), index], axis=1)
    return tf.map_fn(lambda k: tf.random.stateless_normal([z_dim], seed=k), keys,
                     fn_output_signature=tf.TensorSpec([z_dim], tf.float32))


def embedding_gradients(mode: str) -> Callable[[list], list]:
    """The gradient-list transform for train.embedding_grads ("sparse" | "dense")."""
    return _dense if mode == "dense" else (lambda grads: grads)


def _dense(grads: list) -> list:
    """IndexedSlices (embedding tables) -> dense gradients (train.embedding_grads=dense).

    Keras 3 Adam squares an IndexedSlices gradient slice by slice, before
    duplicate rows are summed: v gets sum(g_i^2) instead of (sum g_i)^2, which
    also depends on how the batch is split over replicas. Adam densifies the
    gradient anyway (m is dense), so this costs no extra memory.
    """
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def _text_path(enc: keras.Model, jit_compile: bool) -> tuple[Callable, Callable]:
    """(outside-core text transform, in-core embed) for the encoder `enc`.

    Builtin encoder: tokenise outside (string ops), embed ids inside (trained).
    Frozen encoder/cache: embed outside (constant: no gradient, no XLA issue).
    A trainable encoder without `tokenize` (fine-tuned hub) must see strings
    inside the core, which XLA cannot compile.
    """
    if embedding_cache.is_frozen(enc):
        return (lambda c: tf.cast(enc(c, training=True), tf.float32)), (lambda e: e)
    if isinstance(enc, models.TextEncoder):
        return enc.tokenize, (lambda ids: enc.embed_tokens(ids, training=True))
    if jit_compile:
        raise SetupError(f"train.jit_compile needs the builtin or a frozen text encoder: the "
                         f"trainable {enc.name!r} takes strings, which XLA cannot compile")
    return (lambda c: c), (lambda c: enc(c, training=True))


# --------------------------------------------------------------------------- #
# The loop.

class _Preemption:
    """SIGTERM/SIGINT -> finish the current step, checkpoint, exit cleanly."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        logging.warning("signal %d: checkpointing after this step, then stopping", signum)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: config_lib.ExperimentConfig, model_dir: str) -> TrainResult:
    """Trains (or resumes) the experiment `cfg` into `model_dir`.

    `cfg.train.batch_size` is the GLOBAL batch: each of the strategy's replicas
    gets batch_size / replicas clips. SIGTERM/SIGINT stop the run after the
    current step with a checkpoint (`preempted=True`; with several workers all
    stop at the same step). Under multi-worker, only the chief writes the run
    directory; the other workers checkpoint to temporary directories.
    """
    cfg.validate()
    cfg = with_resolved_precision(cfg)  # config.json gets the precision the run used
    t = cfg.train
    configure_runtime(t)
    with precision(t.mixed_precision):
        keras.utils.set_random_seed(t.seed)
        strategy = make_strategy(t.strategy)
        # Our handlers go on after the strategy: multi-worker's coordination
        # service installs a C++ SIGTERM notifier that would replace them.
        with _Preemption() as stop:
            return _train(cfg, model_dir, strategy, stop)


def _train(cfg: config_lib.ExperimentConfig, model_dir: str, strategy: tf.distribute.Strategy,
           stop: _Preemption) -> TrainResult:
    t = cfg.train
    replicas = strategy.num_replicas_in_sync
    if t.batch_size % replicas:
        raise SetupError(f"train.batch_size={t.batch_size} (the global batch) must be a multiple "
                         f"of the {replicas} replicas of strategy {t.strategy!r}")
    chief = is_chief(strategy)
    multi_worker = t.strategy == "multi_worker"
    if t.jit_compile and t.strategy != "tpu" and (replicas > 1 or multi_worker):
        # The XLA core is a nested tf.function: only on all-GPU replicas does
        # the strategy all-reduce without a merge_call, which cannot run inside.
        devices = strategy.extended.worker_devices
        if not all("GPU" in d.upper() for d in devices):
            raise SetupError(f"train.jit_compile with several replicas needs GPU replicas; "
                             f"strategy {t.strategy!r} runs on {', '.join(devices)}. "
                             f"Use train.jit_compile=false")
    tf.io.gfile.makedirs(model_dir)
    check_run_dir(model_dir, cfg)
    dataset = dataset_for(cfg)

    with strategy.scope():
        task = build_task(cfg)
        g_opt = make_optimizer(t.g_learning_rate, t, "g_optimizer")
        d_opt = make_optimizer(t.d_learning_rate, t, "d_optimizer")
        g_opt.build(task.generator.trainable_variables)
        d_opt.build(task.discriminator.trainable_variables
                    + task.text_encoder.trainable_variables)
        rng = tf.random.Generator.from_seed(t.seed)
        step_var = tf.Variable(0, dtype=tf.int64, name="step")
    checkpoint = make_checkpoint(task, step_var, rng, g_opt, d_opt)
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    # Every worker must save (the save is collective), but only the chief's
    # files are kept; the others write to a temporary directory.
    save_dir = ckpt_dir if chief else tempfile.mkdtemp(prefix="tfvideogen_worker_ckpt_")
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=t.keep_checkpoints)
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest:
        older = not any(name.startswith(SEED_STATES + "/")
                        for name, _ in tf.train.list_variables(latest))
        if older and seed_states(task):
            logging.warning("%s has no seed states (written before 2026-11-28): D's frame "
                            "sampler restarts its stream; the run goes on, but not bitwise "
                            "as the uninterrupted one", latest)
        restore(make_checkpoint(task, step_var, rng, g_opt, d_opt, with_seed_states=False)
                if older else checkpoint, latest)
        logging.info("resumed from %s at step %d", latest, int(step_var.numpy()))
    if chief:
        write_config(model_dir, cfg)
    start = int(step_var.numpy())

    # The global batch; experimental_distribute_dataset splits it per replica
    # and auto-shards across workers (files when it can, else elements).
    ds = strategy.experimental_distribute_dataset(
        data_lib.batched(training_stream(cfg, start * t.batch_size), t.batch_size))
    step_fn = make_train_step(task, g_opt, d_opt, rng, cfg, strategy)
    writer = (tf.summary.create_file_writer(os.path.join(model_dir, "logs")) if chief
              else tf.summary.create_noop_writer())
    sample_captions = sample_caption_set(dataset, t.num_samples)

    progress = Progress(t.steps, start=start, every=t.log_every)
    values: dict[str, float] = {}
    step = start
    preempted = False
    try:
        with writer.as_default():
            iterator = iter(ds)
            while step < t.steps:
                out = step_fn(next(iterator), tf.constant(step, tf.int64),
                              tf.constant(stop.requested),
                              r1=t.r1_gamma > 0 and step % t.r1_every == 0)
                values = {k: float(v) for k, v in out.items()}
                signalled = values.pop("stop") > 0  # on any worker, at the step's start
                bad = [k for k in ("d_loss", "g_loss") if not math.isfinite(values[k])]
                if bad:
                    raise NonFiniteLossError(
                        f"non-finite {', '.join(bad)} at step {step + 1} ({values}); stopped. "
                        f"The last good checkpoint ({latest_checkpoint(model_dir) or 'none'}) "
                        f"is kept.")
                step += 1
                step_var.assign(step)
                progress.update(step, {"d": values["d_loss"], "g": values["g_loss"]})
                if step % t.log_every == 0 or step == t.steps:
                    summaries.scalars({**values, "steps_per_second": progress.rate(step)}, step)
                # Workers stop together: a signal reaches the others through the
                # next step's reduced `stop`. A single process stops right away.
                stopping = signalled or (stop.requested and not multi_worker)
                if step % t.checkpoint_every == 0 or step == t.steps or stopping:
                    manager.save(checkpoint_number=step)
                if chief and (step % t.sample_every == 0 or step == t.steps):
                    write_samples(task, sample_captions, model_dir, step)
                if stopping and step < t.steps:
                    preempted = True
                    logging.warning("stopped by signal at step %d; rerun to resume", step)
                    break
            writer.flush()
    finally:
        if not chief:
            tf.io.gfile.rmtree(save_dir)
    progress.close()
    if chief and not preempted:
        save_keras(task, model_dir)
    return TrainResult(model_dir=model_dir, step=step, losses=values,
                       steps_per_second=progress.rate(step), task=task, preempted=preempted)


def latest_checkpoint(model_dir: str) -> str | None:
    """The last complete checkpoint of a run (the state file is written last)."""
    return tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))


def sample_caption_set(dataset: data_lib.BuiltinDataset, count: int) -> list[str]:
    """The fixed caption set of the sample grids: half train, half held-out captions."""
    if "heldout" not in dataset.splits:
        return dataset.sample_captions("train", count)
    return (dataset.sample_captions("train", (count + 1) // 2)
            + dataset.sample_captions("heldout", count // 2))


def write_samples(task: models.TextToVideo, captions: list[str], model_dir: str, step: int,
                  fps: int = 8) -> np.ndarray:
    """Videos for a fixed caption/seed set -> samples/step_N.{gif,mp4} + TensorBoard."""
    videos = task.generate(captions, seed=0)
    clip = video_lib.upscale(video_lib.grid(videos, columns=len(captions) // 2 or 1),
                             max(1, 128 // task.video_shape[1]))
    out = os.path.join(model_dir, "samples")
    tf.io.gfile.makedirs(out)
    for ext in ("gif", "mp4"):
        video_lib.write_video(os.path.join(out, f"step_{step:06d}.{ext}"), clip, fps)
    with tf.io.gfile.GFile(os.path.join(out, "captions.txt"), "w") as f:
        f.write("".join(f"{i}: {c}\n" for i, c in enumerate(captions)))
    summaries.gif_summary("samples", clip, step, fps)
    return videos


def save_keras(task: models.TextToVideo, model_dir: str) -> str:
    """The final task as a `.keras` file (atomic: temp name, then rename)."""
    path = os.path.join(model_dir, "text_to_video.keras")
    tmp = path + ".tmp.keras"
    task.save(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


def timestamped_dir(root: str = "runs") -> str:
    return os.path.join(root, time.strftime("%Y%m%d-%H%M%S"))
