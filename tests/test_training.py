import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfvideogen import training
from tfvideogen.training import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _weights(task):
    return [w.numpy().copy() for w in task.generator.weights + task.discriminator.weights
            + task.text_encoder.weights]


def test_one_real_step_changes_weights_and_keeps_losses_finite():
    cfg = tiny_config()
    task = trainer.build_task(cfg)
    strategy = tf.distribute.get_strategy()
    g_opt = trainer.make_optimizer(1e-3, cfg.train, "g")
    d_opt = trainer.make_optimizer(1e-3, cfg.train, "d")
    step_fn = trainer.make_train_step(task, g_opt, d_opt, tf.random.Generator.from_seed(0), cfg,
                                      strategy)
    from tfvideogen import data
    batch = next(iter(data.batched(data.load("moving_shapes", frames=4, height=16, width=16), 4)))
    before = {
        "g": [w.numpy().copy() for w in task.generator.trainable_weights],
        "d": [w.numpy().copy() for w in task.discriminator.trainable_weights],
        "enc": [w.numpy().copy() for w in task.text_encoder.trainable_weights],
        "ema": [w.numpy().copy() for w in task.ema_generator.weights],
    }
    out = step_fn(batch, tf.constant(0, tf.int64))
    assert all(np.isfinite(float(v)) for v in out.values())
    after = {
        "g": task.generator.trainable_weights, "d": task.discriminator.trainable_weights,
        "enc": task.text_encoder.trainable_weights, "ema": task.ema_generator.weights,
    }
    for part in before:
        changed = [not np.array_equal(b, a.numpy()) for b, a in zip(before[part], after[part])]
        assert any(changed), f"{part} weights did not change"
    # EMA moved towards G: after one step at warm-up decay 0.1, ema = 0.1 ema + 0.9 g.
    for e, g, e0 in zip(task.ema_generator.weights, task.generator.weights, before["ema"]):
        np.testing.assert_allclose(e.numpy(), 0.1 * e0 + 0.9 * g.numpy(), rtol=1e-5, atol=1e-6)


def test_train_writes_run_and_resumes_step_counter(tmp_path):
    model_dir = str(tmp_path / "run")
    cfg = tiny_config("train.steps=2")
    first = training.train(cfg, model_dir)
    assert first.step == 2
    for name in ("config.json", "text_to_video.keras", "logs", "checkpoints/checkpoint",
                 "samples/step_000002.gif", "samples/step_000002.mp4"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    with open(os.path.join(model_dir, "config.json")) as f:
        stored = json.load(f)
    assert stored["train"]["steps"] == 2 and stored["name"] == "tiny"
    w2 = _weights(first.task)

    second = training.train(tiny_config("train.steps=4"), model_dir)
    assert second.step == 4
    ckpts = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    assert ckpts.model_checkpoint_path.endswith("ckpt-4")
    # Resumed from the step-2 weights: restoring ckpt-2 gives them back exactly.
    task, _, step = training.load_task(model_dir, os.path.join(model_dir, "checkpoints", "ckpt-2"))
    assert step == 2
    for a, b in zip(w2, _weights(task)):
        np.testing.assert_array_equal(a, b)


def test_resume_equals_uninterrupted_training(tmp_path):
    # D's frame head scores 2 of the 4 frames at a random offset (as the default
    # does 4 of 16): the resumed run must draw the uninterrupted run's offsets.
    frames = "model.discriminator.frame_frames=2"
    straight = training.train(tiny_config("train.steps=4", frames), str(tmp_path / "a"))
    training.train(tiny_config("train.steps=2", frames), str(tmp_path / "b"))
    resumed = training.train(tiny_config("train.steps=4", frames), str(tmp_path / "b"))
    for a, b in zip(_weights(straight.task), _weights(resumed.task)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_frame_sampler_starts_from_train_seed(tmp_path):
    """Runs with different seeds draw different frame offsets: D's sampler starts at
    (train.seed, 0) and advances once per D call (two per step)."""
    run = training.train(tiny_config("train.steps=2", "train.seed=3",
                                     "model.discriminator.frame_frames=2"), str(tmp_path / "a"))
    np.testing.assert_array_equal(run.task.discriminator.seed_generator.state.numpy(), [3, 4])


def test_checkpoint_without_seed_states_still_resumes(tmp_path, caplog):
    """Runs checkpointed before the seed states were saved resume, with a warning."""
    model_dir = str(tmp_path / "run")
    frames = "model.discriminator.frame_frames=2"
    cfg = tiny_config("train.steps=2", frames)
    first = training.train(cfg, model_dir)
    # Rewrite ckpt-2 as the older code saved it (no seed states).
    task = first.task
    opts = [trainer.make_optimizer(1e-3, cfg.train, name) for name in ("g", "d")]
    opts[0].build(task.generator.trainable_variables)
    opts[1].build(task.discriminator.trainable_variables + task.text_encoder.trainable_variables)
    parts = (task, tf.Variable(0, dtype=tf.int64), tf.random.Generator.from_seed(0), *opts)
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    latest = tf.train.latest_checkpoint(ckpt_dir)
    assert any(n.startswith(trainer.SEED_STATES + "/") for n, _ in tf.train.list_variables(latest))
    trainer.restore(trainer.make_checkpoint(*parts), latest)
    for name in os.listdir(ckpt_dir):
        os.remove(os.path.join(ckpt_dir, name))
    old = trainer.make_checkpoint(*parts, with_seed_states=False)
    tf.train.CheckpointManager(old, ckpt_dir, 1).save(checkpoint_number=2)
    with caplog.at_level("WARNING"):
        resumed = training.train(tiny_config("train.steps=3", frames), model_dir)
    assert resumed.step == 3
    assert "has no seed states" in caplog.text


def test_same_seed_same_video(tmp_path):
    a = training.train(tiny_config("train.steps=1"), str(tmp_path / "a"))
    b = training.train(tiny_config("train.steps=1"), str(tmp_path / "b"))
    captions = ["a red square is moving up and down"]
    np.testing.assert_array_equal(a.task.generate(captions, seed=1),
                                  b.task.generate(captions, seed=1))


def test_incompatible_run_dir_is_refused_and_untouched(tmp_path):
    model_dir = str(tmp_path / "run")
    training.train(tiny_config("train.steps=2"), model_dir)
    config_path = os.path.join(model_dir, "config.json")
    with open(config_path) as f:
        before = f.read()
    with pytest.raises(training.IncompatibleRunError,
                       match="different model .*base_width: stored 16, requested 32"):
        training.train(tiny_config("model.generator.base_width=32"), model_dir)
    with open(config_path) as f:
        assert f.read() == before
    # A checkpoint that does not fit (config file removed) is refused too.
    os.remove(config_path)
    with pytest.raises(training.IncompatibleRunError, match="does not match this model"):
        training.train(tiny_config("model.generator.base_width=32"), model_dir)
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-2")


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    model_dir = str(tmp_path / "run")
    training.train(tiny_config("train.steps=2"), model_dir)
    real = trainer.losses.generator_loss
    monkeypatch.setattr(trainer.losses, "generator_loss",
                        lambda kind, fake: real(kind, fake) * float("nan"))
    with pytest.raises(training.NonFiniteLossError, match=r"g_loss at step 3 .*ckpt-2\) is kept"):
        training.train(tiny_config("train.steps=4"), model_dir)
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-2")


def test_load_task_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a tfvideogen run directory"):
        training.load_task(str(tmp_path))


def _run_train_py(*args, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_py_smoke_and_bad_flags(tmp_path):
    model_dir = str(tmp_path / "run")
    ok = _run_train_py("--experiment=tiny", f"--model_dir={model_dir}", "--steps=2",
                       "--override=train.sample_every=1")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "done: step 2" in ok.stdout
    assert os.path.exists(os.path.join(model_dir, "samples", "step_000001.gif"))
    bad = _run_train_py("--experiment=tiny", "--dataset=imagenet", f"--model_dir={model_dir}")
    assert bad.returncode != 0 and "unknown dataset 'imagenet'; valid:" in bad.stderr
    bad = _run_train_py("--mixed_precision=fp8")
    assert bad.returncode != 0 and "float32|mixed_float16|mixed_bfloat16" in bad.stderr


@pytest.mark.parametrize("mode, expected", [("sparse", 2.0), ("dense", 1.0)])
def test_embedding_grads_mode_sets_adams_step_for_repeated_words(mode, expected):
    # A word used n = 4 times in a batch, same gradient each time. Textbook Adam's
    # first step is lr per weight; Keras 3's IndexedSlices path puts sum(g_i^2)
    # = n g^2 in v instead of (n g)^2, so it steps lr * sqrt(n).
    import keras
    table = keras.Variable(np.zeros((3, 2), np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [1, 1, 1, 1]))
    grad = tape.gradient(loss, table)
    assert isinstance(grad, tf.IndexedSlices)
    opt = keras.optimizers.Adam(1e-3)
    opt.apply(trainer.embedding_gradients(mode)([grad]), [table])
    np.testing.assert_allclose(table.numpy()[1], [-1e-3 * expected] * 2, rtol=1e-3)
    np.testing.assert_array_equal(table.numpy()[[0, 2]], 0.0)


def test_embedding_grads_mode_is_validated():
    assert tiny_config().train.embedding_grads == "sparse"
    with pytest.raises(ValueError,
                       match="train.embedding_grads='rows' is not one of sparse, dense"):
        tiny_config("train.embedding_grads=rows")


def test_train_py_reports_a_batch_that_does_not_split_over_replicas(tmp_path):
    # Three replicas (stubbed: only their count matters here) and a global batch of 4.
    code = (
        "import sys, types\n"
        "from absl import app\n"
        "from tfvideogen.training import trainer\n"
        "trainer.make_strategy = lambda name: types.SimpleNamespace(num_replicas_in_sync=3)\n"
        "import train\n"
        "sys.argv = ['train.py', '--experiment=tiny', '--batch_size=4', '--strategy=mirrored',\n"
        f"            '--model_dir={tmp_path / 'run'}']\n"
        "app.run(train.main)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert ("train.batch_size=4 (the global batch) must be a multiple of the 3 replicas of "
            "strategy 'mirrored'") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
