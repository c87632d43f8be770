"""tf.distribute: global batch on 2 replicas == 1 device, multi-worker training, chief logic.

The multi-replica checks run in subprocesses (tests/_worker.py): logical CPU
devices and TF_CONFIG must be set before TensorFlow initialises.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests._proc import Run
from tests.conftest import tiny_config
from tfvideogen import config as config_lib
from tfvideogen.training import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "_worker.py")


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                **extra)


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line in output:\n{stdout[-2000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def mirrored_result() -> dict:
    proc = subprocess.run([sys.executable, WORKER, "mirrored"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _result(proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["word_dropout", "word_head"])
def test_mirrored_two_replicas_equal_single_device(mirrored_result, case):
    r = mirrored_result if case == "word_dropout" else mirrored_result["word_head"]
    assert mirrored_result["replicas"] == 2
    # Same global batch of 4 (2 + 2 on the replicas), same per-example noise
    # (train.noise=indexed), textbook Adam on the embedding table
    # (train.embedding_grads=dense), same initial weights, augmentation and word
    # dropout drawn for the global batch, negatives (mismatched
    # and contrastive captions) drawn from the global batch: losses and weights
    # after two D+G steps (optimizer slots, EMA included) match one device.
    # The second case swaps word dropout for the word head (its losses too).
    keys = ["d_loss", "g_loss", "real_logit", "fake_logit", "d_contrastive", "g_contrastive"]
    keys += ["d_words", "g_words"] if case == "word_head" else []
    for one, two in zip(r["losses_one"], r["losses_two"]):
        for k in keys:
            assert two[k] == pytest.approx(one[k], rel=1e-4, abs=1e-5), k
    # Adam moves each weight by ~lr = 2e-4 per step: a replica-split bug
    # (loss not divided by replicas, per-replica noise, unreduced gradients)
    # shows as differences of that order; float summation order gives ~1e-8.
    assert min(r["max_update"]) > 1e-4
    assert max(r["max_diff"]) < 1e-6, (r["max_diff"], r["worst"])
    assert r["replicas_agree"]


@pytest.mark.slow
def test_mirrored_word_dropout_negatives_come_from_the_global_batch(mirrored_result):
    r = mirrored_result["dropout_negatives"]
    assert r["mask_two"] == r["mask_one"]
    assert r["same_two"] == r["same_one"]
    # Clip 0's wrong caption is the last replica's last clip; the loss divisor
    # is the global count of negatives per replica.
    assert r["prev_two"] == [[3, 0], [1, 2]]
    assert r["count_two"] == [sum(r["mask_one"]) / 2] * 2
    assert 0 < sum(r["mask_one"]) < 4  # the case has both kinds


@pytest.mark.slow
def test_mirrored_replicas_draw_distinct_noise_and_loss_scale_agrees(mirrored_result):
    r = mirrored_result
    # A tf.random.Generator made in the strategy scope: one stream per replica.
    assert r["stream_replicas_differ"]
    # mixed_float16, NaN clips on replica 1 only: D's update is skipped on both
    # replicas and D's loss scale halves; nothing non-finite is applied.
    assert r["lso_d_scale"] == [2.0**15, 2.0**14]
    assert r["lso_d_unchanged"] and r["lso_finite"] and r["lso_replicas_agree"]
    assert r["batch_error"].startswith("train.batch_size=3 (the global batch) must be a "
                                       "multiple of the 2 replicas")
    assert r["jit_error"].startswith("train.jit_compile with several replicas needs GPU "
                                     "replicas; strategy 'mirrored' runs on ")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_two_processes_train_and_stop_together(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    model_dir = str(tmp_path / "run")
    runs = []
    for index in range(2):
        tmp = tmp_path / f"tmp{index}"
        tmp.mkdir()
        runs.append(Run(
            [WORKER, "train", f"--model_dir={model_dir}",
             "--override=train.strategy=multi_worker,train.steps=200,train.checkpoint_every=2,"
             "train.sample_every=1000,train.log_every=1"],
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            TMPDIR=str(tmp)))
    chief_run, worker_run = runs
    try:
        # Workers take ~10 s to find each other; then several synchronous steps.
        worker_run.wait_for_step(3, timeout=420)
        # Preempt the non-chief only: its stop request reaches the chief through
        # the next step, and both checkpoint and stop at the same step.
        worker_run.proc.send_signal(signal.SIGTERM)
        codes = [r.finish(timeout=300) for r in runs]
    finally:
        for r in runs:
            if r.proc.poll() is None:
                r.proc.kill()
    assert codes == [0, 0], chief_run.output[-2000:] + worker_run.output[-2000:]
    chief, worker = _result(chief_run.output), _result(worker_run.output)
    assert chief["preempted"] and worker["preempted"], (chief, worker, worker_run.output[-1500:])
    assert 3 <= chief["step"] == worker["step"] < 200
    # Metrics are reduced across both workers: identical on each.
    assert chief["losses"] == worker["losses"]
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith(
        f"ckpt-{chief['step']}")
    assert os.path.exists(os.path.join(model_dir, "config.json"))
    # The non-chief checkpointed into a temporary directory and removed it.
    assert not [f for f in os.listdir(tmp_path / "tmp1") if f.startswith("tfvideogen_worker")]


def test_is_chief():
    def strategy(task_type, task_id, cluster):
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
        return type("S", (), {"cluster_resolver": resolver})()

    workers = {"worker": ["a:1", "b:2"]}
    assert trainer.is_chief(tf.distribute.get_strategy())
    assert trainer.is_chief(strategy("worker", 0, workers))
    assert not trainer.is_chief(strategy("worker", 1, workers))
    with_chief = {"chief": ["c:0"], **workers}
    assert trainer.is_chief(strategy("chief", 0, with_chief))
    assert not trainer.is_chief(strategy("worker", 0, with_chief))


def test_indexed_latents_depend_on_example_index_only():
    z = trainer.indexed_latents(0, 12, 4, 8).numpy()
    assert z.shape == (4, 8) and z.dtype == np.float32
    for k in range(4):
        np.testing.assert_array_equal(
            z[k], tf.random.stateless_normal([8], seed=tf.constant([0, 12 + k], tf.int64)))
    # Examples 12..15 as one batch or as replica shares 10..13 + 14..17.
    split = np.concatenate([trainer.indexed_latents(0, 10, 4, 8),
                            trainer.indexed_latents(0, 14, 4, 8)])
    np.testing.assert_array_equal(z, split[2:6])
    assert not np.allclose(z, trainer.indexed_latents(1, 12, 4, 8))
    assert 0.5 < np.std(trainer.indexed_latents(0, 0, 256, 8)) < 1.5


def test_distribution_config_validation():
    with pytest.raises(ValueError, match="train.noise='random' is not one of stream, indexed"):
        tiny_config("train.noise=random")
    with pytest.raises(ValueError, match="train.intra_op_threads must be >= 0"):
        tiny_config("train.intra_op_threads=-1")
    cfg = config_lib.loads(config_lib.dumps(tiny_config("train.deterministic=yes")))
    assert cfg.train.deterministic is True and cfg.train.jit_compile is False
