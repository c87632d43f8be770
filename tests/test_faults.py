"""Faults: SIGTERM checkpoints and exits 0; SIGKILL anywhere resumes to identical weights."""

import os
import random
import re
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from tests._proc import REPO, Run
from tests.conftest import tiny_config
from tfvideogen import training
from tfvideogen.training import trainer

WORKER = os.path.join(REPO, "tests", "_worker.py")
STEPS = 8
# Deterministic ops, a checkpoint every step (so killed and straight runs save
# at the same steps), samples only at the end, a progress line every step. D's
# frame head scores 2 of the 4 frames, at a random offset: the sampler's stream
# must resume too.
OVERRIDES = ("train.checkpoint_every=1,train.log_every=1,train.sample_every=1000,"
             "train.keep_checkpoints=2,model.discriminator.frame_frames=2")
RUN_FLAGS = ["--experiment=tiny", f"--steps={STEPS}", "--deterministic", f"--override={OVERRIDES}"]


def _ckpt_dir(model_dir: str) -> str:
    return os.path.join(model_dir, "checkpoints")


def _latest_step(model_dir: str) -> int:
    path = tf.train.latest_checkpoint(_ckpt_dir(model_dir))
    return int(path.rsplit("-", 1)[1]) if path else 0


def _train_py(model_dir: str, *extra: str) -> Run:
    return Run([os.path.join(REPO, "train.py"), f"--model_dir={model_dir}", *RUN_FLAGS, *extra])


def _checkpoint_tensors(path: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


@pytest.mark.slow
def test_sigterm_checkpoints_exits_zero_and_resumes(tmp_path):
    model_dir = str(tmp_path / "run")
    run = _train_py(model_dir, "--steps=60")
    run.wait_for_step(2)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0, run.output[-3000:]
    m = re.search(r"preempted: checkpoint at step (\d+)", run.output)
    assert m, run.output[-3000:]
    reached = int(m.group(1))
    assert 2 <= reached < 60 and _latest_step(model_dir) == reached
    assert not os.path.exists(os.path.join(model_dir, "text_to_video.keras"))  # not finished

    # (The rerun also sizes the thread pools: train.py does it before any op.)
    rerun = _train_py(model_dir, f"--steps={reached + 2}", "--intra_op_threads=1",
                      "--inter_op_threads=2")
    assert rerun.finish() == 0, rerun.output[-3000:]
    assert "TF thread pools: intra-op 1, inter-op 2" in rerun.output
    ckpt = os.path.join(_ckpt_dir(model_dir), f"ckpt-{reached}")
    assert f"resumed from {ckpt} at step {reached}" in rerun.output
    assert f"done: step {reached + 2}" in rerun.output
    assert _latest_step(model_dir) == reached + 2


@pytest.mark.slow
def test_sigkill_anywhere_then_rerun_equals_uninterrupted_run(tmp_path):
    rand = random.Random(8)
    straight_dir, killed_dir = str(tmp_path / "straight"), str(tmp_path / "killed")
    straight = _train_py(straight_dir)  # runs alongside the killed sequence

    # 1. SIGKILL at a random moment of a random step (checkpoints every step,
    #    so many kills land inside a save).
    kill_steps = []
    for _ in range(2):
        run = _train_py(killed_dir)
        # (At least 3 steps and the final writes remain: the kill lands mid-run.)
        target = min(STEPS - 3, _latest_step(killed_dir) + rand.randint(2, 3))
        run.wait_for_step(target)  # printed after step `target`, before its save
        time.sleep(rand.uniform(0.0, 0.5))
        run.proc.kill()
        assert run.finish() == -signal.SIGKILL
        kill_steps.append(run.step)
        # Whatever the kill interrupted, the last recorded checkpoint loads.
        _, _, step = training.load_task(killed_dir)
        assert step == _latest_step(killed_dir) >= target - 1

    # 2. SIGKILL inside a save: checkpoint N's files are written, the state
    #    file is not yet updated. The previous checkpoint stays the latest.
    n = _latest_step(killed_dir) + 2
    assert n <= STEPS
    run = Run([WORKER, "train", f"--model_dir={killed_dir}", f"--kill_at_save={n}",
               f"--override=train.steps={STEPS},train.deterministic=true,{OVERRIDES}"])
    assert run.finish() == -signal.SIGKILL, run.output[-3000:]
    assert f"KILLING in save of ckpt-{n}" in run.output
    assert os.path.exists(os.path.join(_ckpt_dir(killed_dir), f"ckpt-{n}.index"))
    assert _latest_step(killed_dir) == n - 1
    training.load_task(killed_dir)

    # 3. Rerun to the end.
    final = _train_py(killed_dir)
    assert final.finish() == 0, final.output[-3000:]
    assert f"done: step {STEPS}" in final.output
    assert straight.finish() == 0, straight.output[-3000:]

    # Every checkpointed tensor matches: weights, EMA, optimizer slots and
    # iterations, step, RNG states (and so the data position and D's frames).
    a = _checkpoint_tensors(os.path.join(_ckpt_dir(straight_dir), f"ckpt-{STEPS}"))
    b = _checkpoint_tensors(os.path.join(_ckpt_dir(killed_dir), f"ckpt-{STEPS}"))
    assert a.keys() == b.keys()
    assert all(any(part in k for k in a) for part in ("ema_generator", "g_optimizer",
                                                        trainer.SEED_STATES))
    differ = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not differ, f"kills at steps {kill_steps} changed {differ[:5]}"


@pytest.mark.slow
def test_signal_mid_run_checkpoints_then_resume_finishes(tmp_path, monkeypatch):
    model_dir = str(tmp_path / "run")
    real_update = trainer.Progress.update

    def update_then_sigterm(self, step, *args, **kwargs):
        real_update(self, step, *args, **kwargs)
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # lands between steps

    monkeypatch.setattr(trainer.Progress, "update", update_then_sigterm)
    cfg = tiny_config("train.steps=6", "train.checkpoint_every=100", "train.sample_every=100")
    result = training.train(cfg, model_dir)
    assert result.preempted and result.step == 2
    assert _latest_step(model_dir) == 2  # saved although checkpoint_every=100
    # The handler is removed again: the default SIGTERM handler is back.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    monkeypatch.setattr(trainer.Progress, "update", real_update)
    result = training.train(tiny_config("train.steps=3", "train.checkpoint_every=100",
                                        "train.sample_every=100"), model_dir)
    assert not result.preempted and result.step == 3 and _latest_step(model_dir) == 3


def test_thread_settings_after_init_are_ignored_with_a_warning(caplog):
    tf.constant(1.0) + 1.0  # the runtime is up
    current = tf.config.threading.get_intra_op_parallelism_threads()
    cfg = tiny_config(f"train.intra_op_threads={current + 3}")
    with caplog.at_level("WARNING"):
        trainer.configure_runtime(cfg.train)
    assert tf.config.threading.get_intra_op_parallelism_threads() == current
    assert f"train.intra_op_threads={current + 3} ignored" in caplog.text
