"""Word dropout and the negatives D is shown (tfvideogen/training/captions.py)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfvideogen import config as config_lib
from tfvideogen.training import captions, trainer

# Token ids: 0 pad; 2 "the", 3 "digit", 4 "is", 5 "moving", 6 "up", 7 "down",
# 8 "left", 9 "right", 10 "and", 13 "3", 17 "7".
THREE_UD = [2, 3, 13, 4, 5, 6, 10, 7, 0]
SEVEN_UD = [2, 3, 17, 4, 5, 6, 10, 7, 0]
THREE_LR = [2, 3, 13, 4, 5, 8, 10, 9, 0]
MOTION_ONLY = [2, 3, 0, 4, 5, 6, 10, 7, 0]  # "the digit is moving up and down"
DIGIT_ONLY = [2, 3, 13, 4, 5, 0, 0, 0, 0]  # "the digit 3 is moving"
SEED = tf.constant([1, 2], tf.int64)


def test_drop_words_removes_words_only_and_never_empties_a_caption():
    ids = tf.constant(np.tile(np.array([THREE_UD, [4, 0, 0, 0, 0, 0, 0, 0, 0]]), (500, 1)),
                      tf.int64)
    dropped = captions.drop_words(ids, 0.3, SEED).numpy()
    words = ids.numpy() != 0
    # Only words are touched, and a kept word keeps its id and position.
    assert np.all(dropped[~words] == 0)
    assert np.all((dropped == ids.numpy()) | (dropped == 0))
    assert np.all((dropped != 0).sum(axis=1) >= 1)
    long = dropped[::2][:, words[0]]
    assert (long == 0).mean() == pytest.approx(0.3, abs=0.02)
    # One-word captions: dropping the word would empty them, so it stays.
    assert np.all(dropped[1::2, 0] == 4)
    # Stateless: the same seed drops the same words; another seed others.
    np.testing.assert_array_equal(captions.drop_words(ids, 0.3, SEED), dropped)
    assert not np.array_equal(captions.drop_words(ids, 0.3, SEED + 1), dropped)
    np.testing.assert_array_equal(captions.drop_words(ids, 0.0, SEED), ids)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        captions.drop_words(ids, 1.0, SEED)


def test_covers_is_word_set_inclusion():
    full = tf.constant([THREE_UD, SEVEN_UD, THREE_LR])
    shown = tf.constant([THREE_UD, MOTION_ONLY, DIGIT_ONLY, SEVEN_UD])
    got = captions.covers(full[:, None], shown[None]).numpy()
    np.testing.assert_array_equal(got, [
        # 3 up-down, "up and down", "3", 7 up-down
        [True, True, True, False],  # a 3 moving up and down
        [False, True, False, True],  # a 7 moving up and down
        [False, False, True, False],  # a 3 moving left and right
    ])
    np.testing.assert_array_equal(captions.covers(full, shown[:3]).numpy(), [True, True, True])


def test_negatives_with_full_captions_are_string_inequality():
    strings = tf.constant(["a", "b", "b", "c"])
    mask, count, same, prev = captions.negatives(captions.caption_keys(strings))
    # Wrong caption of clip i: clip i-1's (clip 0 gets clip 3's).
    np.testing.assert_array_equal(mask.numpy(), [True, True, False, True])
    np.testing.assert_array_equal(same.numpy(), strings.numpy()[:, None] == strings.numpy()[None])
    assert count is None and prev is None


def test_negatives_with_word_dropout_keep_consistent_captions_positive():
    full = tf.constant([THREE_UD, SEVEN_UD, THREE_LR, THREE_UD])
    shown = tf.constant([MOTION_ONLY, SEVEN_UD, DIGIT_ONLY, THREE_UD])  # words dropped
    mask, count, same, prev = captions.negatives(full, shown)
    # Wrong caption of clip i: clip i-1's shown one. Clip 0 (3 up-down) gets
    # "3 up-down" (its own words: no negative). Clip 1 (7 up-down) gets "up and
    # down": true of it, so no negative, though the full captions differ. Clip 2
    # (3 left-right) gets "7 up-down": a negative. Clip 3 (3 up-down) gets "3":
    # true of it, no negative.
    np.testing.assert_array_equal(mask.numpy(), [False, False, True, False])
    np.testing.assert_array_equal(same.numpy(), captions.covers(full[:, None], shown[None]))
    assert same.numpy().diagonal().all()
    assert count is None and prev is None


def test_word_dropout_config_is_validated():
    assert tiny_config("train.word_dropout=0.3").train.word_dropout == 0.3
    for bad in ("1.0", "-0.1"):
        with pytest.raises(ValueError, match=r"train.word_dropout must be in \[0, 1\)"):
            tiny_config(f"train.word_dropout={bad}")
    cfg = config_lib.apply_overrides(config_lib.get_experiment("tiny"),
                                     ["train.word_dropout=0.3", "model.text_encoder.kind=/m"])
    with pytest.raises(ValueError, match="needs model.text_encoder.kind=builtin"):
        cfg.validate()


def _two_steps(cfg, batch) -> dict:
    keras.utils.set_random_seed(3)
    task = trainer.build_task(cfg)
    step_fn = trainer.make_train_step(
        task, trainer.make_optimizer(1e-3, cfg.train, "g"),
        trainer.make_optimizer(1e-3, cfg.train, "d"), tf.random.Generator.from_seed(0), cfg,
        tf.distribute.get_strategy())
    out = [step_fn(batch, tf.constant(s, tf.int64)) for s in range(2)]
    return {k: float(v) for k, v in out[-1].items()}


def test_train_step_with_word_dropout_trains_and_is_seeded():
    from tfvideogen import data

    batch = next(iter(data.batched(data.load("moving_shapes", frames=4, height=16, width=16), 4)))
    cfg = tiny_config("train.word_dropout=0.5", "train.contrastive_weight=1")
    first, again = _two_steps(cfg, batch), _two_steps(cfg, batch)
    assert all(np.isfinite(v) for v in first.values())
    for k in first:
        assert again[k] == pytest.approx(first[k], rel=1e-5, abs=1e-6), k
    # The dropout is real: without it the same seeds give other losses.
    plain = _two_steps(tiny_config("train.contrastive_weight=1"), batch)
    assert plain["d_loss"] != pytest.approx(first["d_loss"], rel=1e-4)


def test_word_targets_are_the_captions_known_words():
    table = captions.word_table(["a", "red", "square", "is"])
    got = captions.word_targets(tf.constant(["A red, square!", "a blue thing", "", "is is"]),
                                table, 4)
    np.testing.assert_array_equal(got.numpy(), [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0],
                                                [0, 0, 0, 1]])
    # A batch of empty captions: zeros, not -inf.
    np.testing.assert_array_equal(
        captions.word_targets(tf.constant(["", ""]), table, 4).numpy(), np.zeros((2, 4)))


def test_word_head_config_is_validated():
    assert tiny_config("model.discriminator.word_head=true").model.discriminator.word_head
    with pytest.raises(ValueError, match=r"word_head \(on by default\) and train.word_dropout"):
        tiny_config("model.discriminator.word_head=true", "train.word_dropout=0.2")
    with pytest.raises(ValueError, match="train.word_weight must be >= 0"):
        tiny_config("train.word_weight=-1")
    with pytest.raises(ValueError, match="train.fake_word_weight must be >= 0"):
        tiny_config("train.fake_word_weight=-1")
    # On by default; without a (sigmoid) word head it has nothing to act on.
    for extra in ("train.word_loss=softmax", "model.discriminator.word_head=false"):
        assert tiny_config("train.fake_word_weight=1", extra).train.fake_word_weight == 1
    with pytest.raises(ValueError, match="train.fake_words='some' is not one of all, attributes"):
        tiny_config("train.fake_words=some")


def test_train_step_with_word_head_trains_it_and_is_seeded():
    from tfvideogen import data

    batch = next(iter(data.batched(data.load("moving_shapes", frames=4, height=16, width=16), 4)))
    cfg = tiny_config("model.discriminator.word_head=true")
    first, again = _two_steps(cfg, batch), _two_steps(cfg, batch)
    assert {"d_words", "g_words"} <= set(first)
    assert all(np.isfinite(v) for v in first.values())
    for k in first:
        assert again[k] == pytest.approx(first[k], rel=1e-5, abs=1e-6), k
    # The head is built over the dataset's vocabulary and its loss is live: with
    # weight 0 the same seeds give another D loss trajectory.
    task = trainer.build_task(cfg)
    assert task.discriminator.word_classes == len(trainer.dataset_for(cfg).vocabulary())
    off = _two_steps(tiny_config("model.discriminator.word_head=true", "train.word_weight=0"),
                     batch)
    assert off["d_loss"] != pytest.approx(first["d_loss"], rel=1e-4)
    # The configured word loss is the one the step reports and trains with.
    sig, soft = (_two_steps(tiny_config("model.discriminator.word_head=true",
                                        f"train.word_loss={kind}", "train.fake_word_weight=0"),
                            batch)
                 for kind in ("sigmoid", "softmax"))
    assert all(np.isfinite(v) for v in [*sig.values(), *soft.values()])
    # V binary losses near log 2 each at first, against one KL near log(V / words).
    assert sig["d_words"] > 3 * soft["d_words"]
    assert sig["d_loss"] != pytest.approx(soft["d_loss"], rel=1e-4)
    # The word head's fake term: reported, near log 2 per caption word at first, and
    # live (D's second step differs); absent at weight 0 and with the softmax loss.
    fake = _two_steps(tiny_config("model.discriminator.word_head=true",
                                  "train.fake_word_weight=1", "train.fake_words=all"), batch)
    assert "d_fake_words" not in sig
    assert 2 * math.log(2) < fake["d_fake_words"] < 20 * math.log(2)
    assert fake["d_loss"] != pytest.approx(sig["d_loss"], rel=1e-4)
    soft_fake = _two_steps(tiny_config("model.discriminator.word_head=true",
                                       "train.word_loss=softmax", "train.fake_word_weight=1"),
                           batch)
    assert "d_fake_words" not in soft_fake and soft_fake["d_loss"] == soft["d_loss"]
    # Only the attribute words ("red", "circle", "up", "down"; not "a", "is",
    # "moving", "and"): about half the words, so about half the loss at first.
    named = _two_steps(tiny_config("model.discriminator.word_head=true",
                                   "train.fake_word_weight=1", "train.fake_words=attributes"),
                       batch)
    assert 0.3 < named["d_fake_words"] / fake["d_fake_words"] < 0.7
