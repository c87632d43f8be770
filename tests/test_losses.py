"""Losses against values computed by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfvideogen.training import losses

REAL = np.array([[2.0], [0.5], [-1.0]], np.float32)
FAKE = np.array([[-2.0], [0.0], [1.5]], np.float32)
MIS = np.array([[0.5], [-3.0], [2.0]], np.float32)


def test_hinge_discriminator_by_hand():
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3 ; relu(1 + fake) = [0, 1, 2.5] -> 3.5/3
    got = losses.hinge_discriminator(REAL, FAKE)
    assert float(got) == pytest.approx(2.5 / 3 + 3.5 / 3)


def test_hinge_with_masked_mismatch_by_hand():
    # relu(1 + mis) = [1.5, 0, 3]; mask keeps rows 0 and 2 -> mean 2.25
    mask = tf.constant([True, False, True])
    got = losses.hinge_discriminator(REAL, FAKE, MIS, mask, mismatch_weight=0.5)
    assert float(got) == pytest.approx(2.5 / 3 + 0.5 * 3.5 / 3 + 0.5 * 2.25)


def test_mismatch_count_is_the_divisor_and_splits_over_replicas():
    # relu(1 + mis) = [1.5, 0, 3] kept on rows 0 and 2 (sum 4.5), divided by a
    # given count instead of 2; with two heads, by count x heads.
    mask = tf.constant([True, False, True])
    got = losses.discriminator_loss("hinge", REAL, FAKE, MIS, mask, 0.5, mismatch_count=3.0)
    assert float(got) == pytest.approx(2.5 / 3 + 0.5 * 3.5 / 3 + 0.5 * 4.5 / 3)
    two = np.concatenate([MIS, MIS], axis=1)
    got2 = losses.hinge_discriminator(np.tile(REAL, 2), np.tile(FAKE, 2), two, mask, 0.5, 3.0)
    assert float(got2) == pytest.approx(float(got))
    # Two "replicas" holding rows [0] and [1, 2], real/fake terms zeroed
    # (hinge margins met), mismatch weight 1: each divides by the global count
    # (2) / replicas; their mean is the one-device masked mean 4.5 / 2.
    real, fake = np.full([3, 1], 5.0, np.float32), np.full([3, 1], -5.0, np.float32)
    m = mask.numpy()
    parts = [float(losses.hinge_discriminator(real[i], fake[i], MIS[i], m[i], 1.0, 2 / 2))
             for i in ([0], [1, 2])]
    assert parts == pytest.approx([1.5, 3.0])
    assert sum(parts) / 2 == pytest.approx(
        float(losses.hinge_discriminator(real, fake, MIS, mask, 1.0)))


def test_hinge_generator_by_hand():
    assert float(losses.hinge_generator(FAKE)) == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)


def _softplus(x):
    return math.log1p(math.exp(x))


def test_non_saturating_by_hand():
    d = sum(_softplus(-r) for r in REAL.ravel()) / 3 + sum(_softplus(f) for f in FAKE.ravel()) / 3
    g = sum(_softplus(-f) for f in FAKE.ravel()) / 3
    assert float(losses.non_saturating_discriminator(REAL, FAKE)) == pytest.approx(d, rel=1e-6)
    assert float(losses.non_saturating_generator(FAKE)) == pytest.approx(g, rel=1e-6)


def test_mismatch_mask_all_false_contributes_zero():
    mask = tf.constant([False, False, False])
    with_mask = losses.hinge_discriminator(REAL, FAKE, MIS, mask, mismatch_weight=0.5)
    assert float(with_mask) == pytest.approx(2.5 / 3 + 0.5 * 3.5 / 3)


def test_multi_head_logits_average_over_heads():
    real = np.array([[2.0, 0.0]], np.float32)   # relu(1-x) = [0, 1] -> 0.5
    fake = np.array([[0.0, -2.0]], np.float32)  # relu(1+x) = [1, 0] -> 0.5
    assert float(losses.hinge_discriminator(real, fake)) == pytest.approx(1.0)


def test_float16_logits_give_float32_loss():
    got = losses.hinge_generator(tf.constant(FAKE, tf.float16))
    assert got.dtype == tf.float32


def test_dispatch_and_unknown_kind():
    assert float(losses.generator_loss("hinge", FAKE)) == float(losses.hinge_generator(FAKE))
    with pytest.raises(ValueError, match="valid: hinge, non_saturating"):
        losses.generator_loss("wasserstein", FAKE)


def test_contrastive_by_hand_with_a_repeated_caption():
    # Rows 0 and 2 share a caption, so each is the other's positive too.
    s = np.array([[0.5, 0.1, 0.3], [0.0, 0.8, -0.2], [0.2, -0.4, 0.6]], np.float32)
    pos = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], bool)
    t = 0.5
    e = np.exp(s / t)
    expected = np.mean([-math.log((e[0, 0] + e[0, 2]) / e[0].sum()),
                        -math.log(e[1, 1] / e[1].sum()),
                        -math.log((e[2, 0] + e[2, 2]) / e[2].sum())])
    assert float(losses.contrastive(s, pos, t)) == pytest.approx(expected, rel=1e-6)
    # Per-head similarities [heads, B, B] average over heads.
    two = losses.contrastive(np.stack([s, s]), pos, t)
    assert float(two) == pytest.approx(expected, rel=1e-6)
    # All captions equal: every column is a positive, nothing to push apart.
    assert float(losses.contrastive(s, np.ones((3, 3), bool), t)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss, row0, row2, perfect", [
    # KL(uniform over 3 || uniform over 4); softmax mass on the caption's words only.
    (losses.word_classification, math.log(4 / 3), math.log(1 + 3 * math.exp(-5)), (0.0, -1e4)),
    # Every word at p = 1/2, present or not; confident yes/no per word.
    (losses.word_detection, 4 * math.log(2), math.log(1 + math.exp(-5)) + 3 * math.log(2),
     (30.0, -30.0)),
    # On generated clips only the caption's words count, each a "no".
    (losses.word_rejection, 3 * math.log(2), math.log(1 + math.exp(5)), (-30.0, 30.0)),
])
def test_word_losses_by_hand(loss, row0, row2, perfect):
    # Row 0 holds words 0-2 under zero logits; row 1 holds no known word (skipped);
    # row 2 holds word 0 with logits (5, 0, 0, 0).
    logits = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [5, 0, 0, 0]], np.float32)
    words = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]], np.float32)
    expected = (row0 + row2) / 2
    assert float(loss(logits, words)) == pytest.approx(expected, rel=1e-5)
    # Heads [heads, B, V] average like rows.
    assert float(loss(np.stack([logits, logits]), words)) == pytest.approx(expected, rel=1e-5)
    # A perfect classifier scores 0.
    assert float(loss(np.where(words > 0, *perfect).astype(np.float32), words)) == \
        pytest.approx(0.0, abs=1e-6)
    # No known word anywhere: nothing to learn, 0 (not NaN).
    assert float(loss(logits, np.zeros_like(words))) == 0.0


def test_word_detection_gradient_does_not_shrink_with_caption_length():
    # The softmax loss gives a present word 1/len(caption) of the mass.
    for n_words in (2, 8):
        w = np.zeros([1, 10], np.float32)
        w[0, :n_words] = 1
        x = tf.Variable(np.zeros([1, 10], np.float32))
        with tf.GradientTape(persistent=True) as tape:
            det, cls = losses.word_detection(x, w), losses.word_classification(x, w)
        assert float(tape.gradient(det, x)[0, 0]) == pytest.approx(-0.5)
        assert float(tape.gradient(cls, x)[0, 0]) == pytest.approx(0.1 - 1 / n_words)
    assert set(losses.WORD_LOSSES) == {"softmax", "sigmoid"}
