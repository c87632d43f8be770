"""Learning-rate schedules (tfvideogen/training/schedules.py)."""

import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfvideogen.training import trainer
from tfvideogen.training.schedules import TailDecay


def test_tail_decay_is_constant_then_linear_to_zero():
    s = TailDecay(2e-4, total_steps=3000, decay_steps=1000)
    for step, want in ((0, 2e-4), (2000, 2e-4), (2500, 1e-4), (2999, 2e-7), (3000, 0.0),
                       (3500, 0.0)):
        assert float(s(step)) == pytest.approx(want, rel=1e-5, abs=1e-12), step
    assert TailDecay.from_config(s.get_config()).get_config() == s.get_config()
    with pytest.raises(ValueError, match="decay_steps must be in"):
        TailDecay(1e-3, total_steps=10, decay_steps=11)


def test_lr_decay_config_drives_the_optimizer_and_resumes(tmp_path):
    cfg = tiny_config("train.steps=8", "train.lr_decay_steps=4")
    opt = trainer.make_optimizer(1e-3, cfg.train, "g")
    var = tf.Variable([1.0, 2.0])
    opt.build([var])
    for _ in range(6):
        opt.apply([tf.ones_like(var)], [var])
    # 6 steps of 8, decay over the last 4: the rate is 1e-3 * (8 - 6) / 4.
    assert float(opt.learning_rate) == pytest.approx(5e-4, rel=1e-5)
    # The schedule follows the checkpointed step counter.
    ckpt = tf.train.Checkpoint(opt=opt)
    path = ckpt.save(str(tmp_path / "ckpt"))
    fresh = trainer.make_optimizer(1e-3, cfg.train, "g")
    fresh.build([tf.Variable([0.0, 0.0])])
    tf.train.Checkpoint(opt=fresh).restore(path).assert_existing_objects_matched()
    assert int(fresh.iterations) == 6
    assert float(fresh.learning_rate) == pytest.approx(5e-4, rel=1e-5)
    with pytest.raises(ValueError, match="train.lr_decay_steps must be in"):
        tiny_config("train.steps=8", "train.lr_decay_steps=9")
