"""The #7 training-recipe pieces: R1, spectral norm, augmentation, MoCoGAN generator."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvideogen.models import layers
from tfvideogen.models.mocogan import MoCoGenerator
from tfvideogen.training import augment, losses


def test_r1_on_a_linear_discriminator_is_exact():
    # D(x) = <w, x> + b  =>  dD/dx = w for every sample  =>  R1 = gamma/2 * |w|^2.
    w = tf.constant(np.arange(1.0, 7.0).reshape(1, 6), tf.float32)
    x = tf.random.normal([4, 6])
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(tf.reduce_sum(x * w, axis=1) + 3.0)
    grads = tape.gradient(total, x)
    gamma = 0.7
    expected = 0.5 * gamma * float(np.sum(np.arange(1.0, 7.0) ** 2))
    assert float(losses.r1_penalty(grads, gamma)) == pytest.approx(expected, rel=1e-6)


def test_spectral_norm_bounds_the_largest_singular_value():
    conv = layers.maybe_spectral(keras.layers.Conv3D(8, 3, name="c"), True)
    x = tf.random.normal([2, 4, 8, 8, 3]) * 10.0
    for _ in range(30):  # power iterations run in training mode
        conv(x, training=True)
    kernel = conv.layer.kernel.numpy().reshape(-1, 8)
    assert np.linalg.svd(kernel, compute_uv=False)[0] == pytest.approx(1.0, abs=0.05)
    plain = layers.maybe_spectral(keras.layers.Dense(3), False)
    assert isinstance(plain, keras.layers.Dense)


def test_ema_update_math():
    # The trainer's EMA: e <- d e + (1 - d) w with d = min(decay, (1 + s) / (10 + s)).
    decay, s = 0.999, 90
    d = min(decay, (1 + s) / (10 + s))
    assert d == pytest.approx(0.91)
    e, w = np.array([1.0, -2.0]), np.array([3.0, 0.0])
    assert np.allclose(d * e + (1 - d) * w, [1.18, -1.82])


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_augment_contract_and_gradients(policy):
    video = tf.random.uniform([3, 4, 16, 16, 3], -1.0, 1.0)
    seed = tf.constant([1, 2], tf.int64)
    with tf.GradientTape() as tape:
        tape.watch(video)
        out = augment.augment(video, policy, seed)
        total = tf.reduce_sum(out)
    assert out.shape == video.shape and out.dtype == video.dtype
    np.testing.assert_array_equal(out.numpy(), augment.augment(video, policy, seed).numpy())
    grad = tape.gradient(total, video)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0.0  # differentiable
    # Shares of a global batch (tf.distribute): drawn for all clips, each share
    # takes its rows, so the shares together are the whole batch's augmentation.
    shares = [augment.augment(tf.gather(video, rows), policy, seed, tf.constant(rows), 3)
              for rows in ([0, 1], [2])]
    np.testing.assert_array_equal(tf.concat(shares, 0).numpy(), out.numpy())


def test_translation_moves_every_frame_by_the_same_shift():
    frame = np.zeros((16, 16, 3), np.float32) - 1.0
    frame[6:9, 6:9] = 1.0
    video = tf.constant(np.stack([frame] * 4)[None])
    out = augment.translation(video, tf.constant([5, 7], tf.int64)).numpy()[0]
    lit = [tuple(np.argwhere(f[..., 0] > 0).min(axis=0)) for f in out]
    assert len(set(lit)) == 1  # consistent over time: no fake motion
    assert 0 < (out[0] > 0).sum() <= (frame > 0).sum()


def test_translation_is_an_exact_shift_with_black_fill_and_its_gradient():
    rng = np.random.default_rng(0)
    video = rng.uniform(-1, 1, (6, 3, 16, 16, 3)).astype(np.float32)
    weights = rng.normal(size=video.shape).astype(np.float32)
    v = tf.constant(video)
    with tf.GradientTape() as tape:
        tape.watch(v)
        out = augment.translation(v, tf.constant([7, 9], tf.int64))
        total = tf.reduce_sum(out * weights)
    out, grad = out.numpy(), tape.gradient(total, v).numpy()

    def shift(x, dy, dx, fill):  # [T, H, W, C]: content moved down dy, right dx
        y, (h, w) = np.full_like(x, fill), x.shape[1:3]
        y[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return y

    shifts = []
    for clip in range(len(video)):
        # Up to 2 pixels (ratio 0.125 of 16) each way; exactly one shift fits.
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(out[clip], shift(video[clip], dy, dx, -1.0))]
        assert len(found) == 1, found
        dy, dx = found[0]
        shifts.append(found[0])
        # A pixel's gradient is the weight where it landed, 0 if it left the frame.
        np.testing.assert_array_equal(grad[clip], shift(weights[clip], -dy, -dx, 0.0))
    assert len(set(shifts)) > 1  # drawn per clip


def test_cutout_blanks_the_same_square_in_all_frames():
    video = tf.ones([2, 3, 16, 16, 3])
    out = augment.cutout(video, tf.constant([3, 4], tf.int64)).numpy()
    holes = out[..., 0] < 0
    assert np.array_equal(holes[:, 0], holes[:, 1]) and np.array_equal(holes[:, 0], holes[:, 2])
    rows, cols = np.flatnonzero(holes[0, 0].any(1)), np.flatnonzero(holes[0, 0].any(0))
    # An axis-aligned square of side 8 (ratio 0.5 of 16), possibly clipped by the border.
    assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8
    assert holes[0, 0].sum() == len(rows) * len(cols)
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        augment.check_policy("color,flip")


@pytest.mark.parametrize("rgb_kernel", [3, 0])
def test_mocogan_generator_contract_and_round_trip(rgb_kernel):
    g = MoCoGenerator(frames=6, size=16, z_dim=8, text_dim=5, motion_dim=4, base_width=16,
                      min_width=8, rgb_kernel=rgb_kernel)
    z, t = tf.random.normal([3, 8]), tf.random.normal([3, 5])
    out = g(z, t)
    assert out.shape == (3, 6, 16, 16, 3) and out.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(out))) <= 1.0
    # Frames differ (motion codes), and one sample does not depend on the batch.
    assert float(tf.reduce_max(tf.abs(out[:, 0] - out[:, -1]))) > 0.0
    np.testing.assert_allclose(g(z[1:2], t[1:2]).numpy(), out[1:2].numpy(), atol=1e-5)
    clone = MoCoGenerator.from_config(g.get_config())
    assert clone.get_config() == g.get_config()
    # Without an RGB conv the last block's transposed conv outputs RGB, un-normalised.
    assert hasattr(g, "to_rgb") == bool(rgb_kernel)
    assert (g.up1.filters, hasattr(g, "norm1")) == ((8, True) if rgb_kernel else (3, False))
    with pytest.raises(ValueError, match="rgb_kernel must be 0 or 3, got 1"):
        MoCoGenerator(rgb_kernel=1)


def _seeded_step(cfg):
    """Task (seed 0 init) and its train step, with fixed noise: one knob differs per call."""
    from tfvideogen.training import trainer

    keras.utils.set_random_seed(0)
    task = trainer.build_task(cfg)
    g_opt = trainer.make_optimizer(1e-3, cfg.train, "g")
    d_opt = trainer.make_optimizer(1e-3, cfg.train, "d")
    return task, trainer.make_train_step(task, g_opt, d_opt, tf.random.Generator.from_seed(0),
                                         cfg, tf.distribute.get_strategy())


def _tiny_batch():
    from tfvideogen import data

    return next(iter(data.batched(data.load("moving_shapes", frames=4, height=16, width=16), 4)))


def test_train_step_with_augment_r1_and_downsampled_video_head():
    from tests.conftest import tiny_config

    cfg = tiny_config("train.augment=translation,cutout", "train.r1_gamma=10",
                      "model.discriminator.video_downsample=2")
    batch = _tiny_batch()
    grads = {}
    for r1 in (False, True):
        task, step_fn = _seeded_step(cfg)
        before = [w.numpy().copy() for w in task.discriminator.trainable_weights]
        out = step_fn(batch, tf.constant(0, tf.int64), r1=r1)
        assert all(np.isfinite(float(v)) for v in out.values())
        grads[r1] = [w.numpy() - b for w, b in zip(task.discriminator.trainable_weights, before)]
    # Same init, data and noise: the R1 term alone changes D's update.
    assert any(not np.allclose(a, b) for a, b in zip(grads[False], grads[True]))


@pytest.mark.parametrize("extra", [(), ("model.discriminator.word_head=true",
                                    "train.contrastive_weight=1")])
def test_rescore_mismatch_takes_the_same_steps_without_augmentation(extra):
    """Without augmentation the third trunk pass over the real clips is redundant:
    rescoring their features gives the same D and G updates."""
    from tests.conftest import tiny_config

    batch = _tiny_batch()
    results = {}
    for rescore in (False, True):
        task, step_fn = _seeded_step(tiny_config("model.discriminator.frame_frames=2",
                                                 f"train.rescore_mismatch={rescore}", *extra))
        # A few steps: at init the captions' embeddings are nearly alike, so only
        # later steps tell a right from a wrong caption in the mismatched term.
        outs = [{k: float(v) for k, v in step_fn(batch, tf.constant(s, tf.int64)).items()}
                for s in range(4)]
        results[rescore] = (outs, [w.numpy() for w in task.discriminator.trainable_weights
                                   + task.generator.trainable_weights])
    (plain, w_plain), (rescored, w_rescored) = results[False], results[True]
    for a, b in zip(plain, rescored):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-4), k
    for a, b in zip(w_plain, w_rescored):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-4)


def test_mismatch_weight_zero_drops_the_mismatched_pass():
    """Weight 0: D's trunks see [real; fake] only and the loss has no mismatch term;
    `trainer.mismatch_pass` (which the FLOP count reads) says what the step runs."""
    from tests.conftest import tiny_config
    from tfvideogen.training import trainer

    batch = _tiny_batch()  # 4 clips
    # (weight, rescore): rescoring needs mismatched negatives (config validation).
    for weight, rescore in ((0.5, False), (0.5, True), (0, False)):
        cfg = tiny_config(f"train.mismatch_weight={weight}", f"train.rescore_mismatch={rescore}")
        _, step_fn = _seeded_step(cfg)
        graph = step_fn.get_concrete_function(batch, tf.constant(0, tf.int64)).graph
        # The clip trunk's forward convs: D's step pass, then G's (4 clips).
        sizes = {op.inputs[0].shape[0] for op in graph.get_operations()
                 if op.type == "Conv3D" and "discriminator" in op.name}
        third = trainer.mismatch_pass(cfg.train)
        assert third == (weight > 0 and not rescore)
        assert sizes == {12 if third else 8, 4}
    out = step_fn(batch, tf.constant(0, tf.int64))  # weight 0
    assert all(np.isfinite(float(v)) for v in out.values())


def test_discriminator_similarity_is_cosine_through_each_heads_projection():
    from tfvideogen.models.discriminator import VideoDiscriminator

    disc = VideoDiscriminator(frames=4, size=16, text_dim=8, base_width=8, frame_frames=2)
    video = tf.random.uniform([3, 4, 16, 16, 3], -1, 1)
    text = tf.random.normal([5, 8])
    logits, features = disc(video, text[:3], return_features=True)
    np.testing.assert_allclose(logits.numpy(), disc(video, text[:3]).numpy(), rtol=1e-6)
    sim = disc.similarity(features, text).numpy()
    assert sim.shape == (2, 3, 5)
    h = features[0].numpy()
    e = disc.video_embed(text).numpy()
    expected = (h / np.linalg.norm(h, axis=1, keepdims=True)) @ (
        e / np.linalg.norm(e, axis=1, keepdims=True)).T
    np.testing.assert_allclose(sim[0], expected, rtol=1e-4, atol=1e-5)
    assert np.all(np.abs(sim) <= 1 + 1e-5)


def test_train_step_with_contrastive_loss_moves_g_towards_its_captions():
    from tests.conftest import tiny_config

    batch = _tiny_batch()
    deltas = {}
    for weight in (0.0, 1.0):
        task, step_fn = _seeded_step(tiny_config(f"train.contrastive_weight={weight}"))
        before = [w.numpy().copy() for w in task.generator.trainable_weights]
        out = {k: float(v) for k, v in step_fn(batch, tf.constant(0, tf.int64)).items()}
        assert all(np.isfinite(v) for v in out.values())
        if weight:
            # Cosines lie in [-1, 1]: 0 < loss <= log(B) + 2 / temperature.
            for key in ("d_contrastive", "g_contrastive"):
                assert 0 < out[key] <= math.log(4) + 2 / 0.1
        else:
            assert "d_contrastive" not in out
        deltas[weight] = [w.numpy() - b for w, b in zip(task.generator.trainable_weights, before)]
    # Same init, data and noise: the contrastive term alone changes G's update.
    assert any(not np.allclose(a, b) for a, b in zip(deltas[0.0], deltas[1.0]))


def test_contrastive_settings_are_validated():
    from tests.conftest import tiny_config

    with pytest.raises(ValueError, match="contrastive_temperature"):
        tiny_config("train.contrastive_temperature=0")
