"""Subprocess helper for the distribution and fault tests (not a test module).

    python tests/_worker.py mirrored            # 2 logical CPUs: equivalence checks
    python tests/_worker.py train --model_dir=D --override=... [--kill_at_save=N]

`mirrored` needs its own process because logical devices must be configured
before TensorFlow initialises. It prints one JSON line (prefixed `RESULT `).
`train` runs `tfvideogen.training.train`; `--kill_at_save=N` SIGKILLs the
process inside checkpoint N's save, after its data files are written and
before the `checkpoint` state file names it (the window a crash can hit).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model_dir", "", "train: run directory.")
flags.DEFINE_string("experiment", "tiny", "train: named experiment.")
flags.DEFINE_multi_string("override", [], "train: dotted config overrides.")
flags.DEFINE_integer("kill_at_save", 0, "train: SIGKILL inside the save of checkpoint N.")
FLAGS = flags.FLAGS

# Captions [a, b, c, a] for the global batch of 4, split 2 + 2 over replicas:
# clip 0's wrong caption is clip 3's (the same: no negative), which only a
# global roll gets right, and the contrastive positives of clips 0 and 3
# span the two replicas.
CAPTIONS = ["a red square is moving up and down", "a blue circle is moving left and right",
            "a green triangle is moving up and down", "a red square is moving up and down"]


def _result(**values) -> None:
    print("RESULT " + json.dumps(values), flush=True)


def _batch(cfg):
    import tensorflow as tf

    from tfvideogen import data as data_lib
    from tfvideogen.training import trainer

    b = cfg.train.batch_size
    batch = next(iter(data_lib.batched(trainer.training_stream(cfg), b)))
    return {"video": batch["video"], "caption": tf.constant((CAPTIONS * b)[:b])}


def _setup(cfg, strategy, source=None):
    """Task + optimizers + step under `strategy`, weights copied from `source`."""
    import tensorflow as tf

    from tfvideogen.training import trainer

    t = cfg.train
    with strategy.scope():
        task = trainer.build_task(cfg)
        g_opt = trainer.make_optimizer(t.g_learning_rate, t, "g_optimizer")
        d_opt = trainer.make_optimizer(t.d_learning_rate, t, "d_optimizer")
        # Built in scope, as train() does: slots must not be created in the step.
        g_opt.build(task.generator.trainable_variables)
        d_opt.build(task.discriminator.trainable_variables
                    + task.text_encoder.trainable_variables)
        rng = tf.random.Generator.from_seed(t.seed)
    if source is not None:
        for model in ("text_encoder", "generator", "discriminator", "ema_generator"):
            getattr(task, model).set_weights(getattr(source, model).get_weights())
    step_fn = trainer.make_train_step(task, g_opt, d_opt, rng, cfg, strategy)
    return task, g_opt, d_opt, rng, step_fn


def _run(strategy, step_fn, batch, steps: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(batch).batch(len(batch["caption"]), True).repeat()
    it = iter(strategy.experimental_distribute_dataset(ds))
    return [{k: float(v) for k, v in step_fn(next(it), tf.constant(i, tf.int64)).items()}
            for i in range(steps)]


def _weights(task) -> dict:
    import numpy as np

    return {f"{m}/{i}": np.asarray(w) for m in ("text_encoder", "generator", "discriminator",
                                                "ema_generator")
            for i, w in enumerate(getattr(task, m).get_weights())}


def _replicas_agree(strategy, variables) -> bool:
    import numpy as np

    for v in variables:
        local = [np.asarray(x) for x in strategy.experimental_local_results(v)]
        if any(not np.array_equal(local[0], x, equal_nan=True) for x in local[1:]):
            return False
    return True


def _equivalence(mirrored, default, extra: str) -> dict:
    """1 device vs 2 replicas, 2 steps on the same global batch (see `mirrored`)."""
    import numpy as np

    from tests.conftest import tiny_config

    # (D's frame head on 2 of the 4 frames: its random offset must agree too.)
    cfg = tiny_config("train.noise=indexed", "train.embedding_grads=dense",
                      "train.adam_epsilon=1e-3", "train.contrastive_weight=1",
                      "train.augment=translation,color,cutout",
                      "model.discriminator.frame_frames=2", extra)
    batch = _batch(cfg)
    one, *_, step_one = _setup(cfg, default)
    two, g2, d2, _, step_two = _setup(cfg, mirrored, source=one)
    w0 = _weights(one)
    res: dict = {"losses_one": [], "losses_two": [], "max_diff": [], "max_update": []}
    for _ in range(2):
        res["losses_one"] += _run(default, step_one, batch, 1)
        res["losses_two"] += _run(mirrored, step_two, batch, 1)
        w1, w2 = _weights(one), _weights(two)
        res["max_update"].append(max(float(np.max(np.abs(w1[k] - w0[k]))) for k in w0))
        res["max_diff"].append(max(float(np.max(np.abs(w1[k] - w2[k]))) for k in w1))
    res["worst"] = max(w1, key=lambda k: float(np.max(np.abs(w1[k] - w2[k]))))
    res["replicas_agree"] = _replicas_agree(mirrored, two.weights + g2.variables + d2.variables)
    return res


def mirrored() -> None:
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.conftest import tiny_config
    from tfvideogen.training import trainer

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    default = tf.distribute.get_strategy()
    out: dict = {"replicas": mirrored.num_replicas_in_sync}

    # 1. Per-replica RNG streams: a generator made in the strategy scope.
    with mirrored.scope():
        gen = tf.random.Generator.from_seed(0)
    draws = mirrored.experimental_local_results(
        tf.function(lambda: mirrored.run(lambda: gen.normal([4])))())
    out["stream_replicas_differ"] = not np.allclose(draws[0], draws[1])

    # 2. Same global batch, same (indexed) noise: 1 device vs 2 replicas, 2 steps.
    # adam_epsilon=1e-3: Adam's first step is ~lr * sign(g), which turns the
    # summation-order noise of a near-zero gradient into a weight change of up
    # to lr (seen: 1.4e-5 on a CI host); with a larger epsilon the update is
    # ~lr * g / epsilon for small g, so noise stays noise while a gradient
    # scaled by the replica count (a split bug) still moves weights by ~lr/20.
    # Augmentation and word dropout on: their draws are the global batch's.
    out.update(_equivalence(mirrored, default, "train.word_dropout=0.3"))
    # 2c. The same with the word head (default; not combinable with word dropout).
    out["word_head"] = _equivalence(mirrored, default, "model.discriminator.word_head=true")

    # 2b. Word-dropout negatives (token ids, set inclusion) from the global batch:
    # the 2 replicas' masks, positives and predecessors are one device's.
    from tfvideogen.training import captions

    full = tf.constant([[2, 3, 4], [2, 5, 4], [2, 3, 6], [2, 5, 6]], tf.int64)
    shown = tf.constant([[2, 0, 4], [0, 5, 0], [2, 3, 6], [2, 0, 0]], tf.int64)
    mask, _, same, _ = captions.negatives(full, shown)
    split = mirrored.experimental_distribute_values_from_function(
        lambda ctx: tuple(x[2 * ctx.replica_id_in_sync_group:][:2] for x in (full, shown)))
    got = mirrored.experimental_local_results(tf.function(
        lambda ids: mirrored.run(captions.negatives, args=ids))(split))
    out["dropout_negatives"] = {
        "mask_one": mask.numpy().tolist(), "same_one": same.numpy().tolist(),
        "mask_two": sum((r[0].numpy().tolist() for r in got), []),
        "same_two": sum((r[2].numpy().tolist() for r in got), []),
        "count_two": [float(r[1]) for r in got], "prev_two": [r[3].numpy().tolist() for r in got]}

    # 3. mixed_float16 + loss scaling, one replica's D gradients overflow (NaN
    # clips on replica 1 only): every replica must skip the D update and halve
    # the D scale; G (whose loss does not see the clips) still updates.
    with trainer.precision("mixed_float16"):
        cfg16 = tiny_config("train.mixed_precision=mixed_float16")
        task16, g16, d16, _, step16 = _setup(cfg16, mirrored)
    batch = _batch(cfg16)
    nan_batch = dict(batch)
    video = batch["video"].numpy()
    video[2:] = np.nan  # the second half = replica 1's share
    nan_batch["video"] = tf.constant(video)
    d_before = [np.asarray(w) for w in task16.discriminator.get_weights()]
    g_before = [np.asarray(w) for w in task16.generator.trainable_weights]
    scale0 = (float(d16.dynamic_scale.numpy()), float(g16.dynamic_scale.numpy()))
    _run(mirrored, step16, nan_batch, 1)
    out["lso_d_scale"] = [scale0[0], float(d16.dynamic_scale.numpy())]
    out["lso_g_scale"] = [scale0[1], float(g16.dynamic_scale.numpy())]
    out["lso_d_unchanged"] = all(np.array_equal(a, np.asarray(b)) for a, b in
                                 zip(d_before, task16.discriminator.get_weights()))
    out["lso_g_changed"] = any(not np.array_equal(a, np.asarray(b)) for a, b in
                               zip(g_before, task16.generator.trainable_weights))
    out["lso_finite"] = all(np.all(np.isfinite(w)) for w in task16.get_weights())
    out["lso_replicas_agree"] = _replicas_agree(mirrored, task16.weights + d16.variables)

    # 4. Refused: a global batch that does not split evenly over the replicas;
    # XLA on CPU replicas (the strategy's merge_call cannot run in the XLA core).
    trainer.make_strategy = lambda name: mirrored
    for key, override in (("batch_error", "train.batch_size=3"),
                          ("jit_error", "train.jit_compile=true")):
        try:
            trainer.train(tiny_config(override, "train.strategy=mirrored"), tempfile.mkdtemp())
        except ValueError as e:
            out[key] = str(e)
    _result(**out)


def train() -> None:
    from tfvideogen import config as config_lib
    from tfvideogen import training

    if FLAGS.kill_at_save:
        from tensorflow.python.checkpoint import checkpoint_management as cm

        record = cm.update_checkpoint_state_internal
        suffix = f"ckpt-{FLAGS.kill_at_save}"

        def record_or_die(save_dir, model_checkpoint_path, *args, **kwargs):
            if model_checkpoint_path.endswith(suffix):
                print(f"KILLING in save of {suffix}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return record(save_dir, model_checkpoint_path, *args, **kwargs)

        cm.update_checkpoint_state_internal = record_or_die

    cfg = config_lib.resolve(FLAGS.experiment, "", FLAGS.override)
    result = training.train(cfg, FLAGS.model_dir)
    _result(step=result.step, preempted=result.preempted, losses=result.losses)


def main(argv):
    modes = {"mirrored": mirrored, "train": train}
    if len(argv) != 2 or argv[1] not in modes:
        raise app.UsageError(f"usage: _worker.py {{{'|'.join(modes)}}} [flags]")
    modes[argv[1]]()


if __name__ == "__main__":
    app.run(main)
