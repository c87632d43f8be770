import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfvideogen import data, models
from tfvideogen.models import layers
from tfvideogen.models.text_encoder import OOV_ID, PAD_ID

CAPTIONS = ["a red square is moving up and down", "a blue circle is moving left and right"]


@pytest.fixture(scope="module")
def task():
    cfg = tiny_config()
    return models.build_task(cfg.model, data.get("moving_shapes").vocabulary(), 4, 16)


def test_text_encoder_tokenizes_in_graph():
    enc = models.TextEncoder(["a", "red", "square"], max_tokens=5, embedding_dim=4,
                             hidden_dim=3, output_dim=6)
    ids = enc.tokenize(tf.constant(["A Red, SQUARE!", "red zebra"])).numpy()
    assert ids.shape == (2, 5)
    assert list(ids[0][:3]) == [2, 3, 4] and ids[0][3] == PAD_ID
    assert list(ids[1][:2]) == [3, OOV_ID]
    out = enc(tf.constant(["a red square", "red"]))
    assert out.shape == (2, 6) and out.dtype == tf.float32


def test_text_encoder_rejects_empty_caption_and_bad_vocab():
    enc = models.TextEncoder(["a"], embedding_dim=2, hidden_dim=2, output_dim=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty caption"):
        enc(tf.constant(["a", " ,. "]))
    with pytest.raises(ValueError, match="distinct, non-empty"):
        models.TextEncoder(["a", "a"])


def test_text_encoder_padding_does_not_change_embedding():
    enc = models.TextEncoder(["a", "b"], max_tokens=8, embedding_dim=4, hidden_dim=4,
                             output_dim=4)
    enc8 = enc(tf.constant(["a b"])).numpy()
    enc2 = enc.embed_tokens(tf.constant([[2, 3]])).numpy()
    np.testing.assert_allclose(enc8, enc2, atol=1e-6)


def test_mean_pooling_encoder_is_a_sum_of_its_words():
    enc = models.TextEncoder(["a", "b", "c"], max_tokens=6, embedding_dim=4, output_dim=5,
                             pooling="mean")
    e = enc(tf.constant(["a b", "c", "b a", "a b c c", "a zzz"])).numpy()
    emb = enc.embedding.embeddings.numpy()
    kernel, bias = enc.projection.kernel.numpy(), enc.projection.bias.numpy()
    ids = {"a": 2, "b": 3, "c": 4, "zzz": OOV_ID}
    for row, words in zip(e, ["a b", "c", "b a", "a b c c", "a zzz"]):
        mean = emb[[ids[w] for w in words.split()]].mean(axis=0)
        np.testing.assert_allclose(row, mean @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(e[0], e[2], atol=1e-6)  # order-blind
    assert not any("bigru" in w.path for w in enc.weights)
    with pytest.raises(ValueError, match="pooling='max'; valid: gru, mean, routed"):
        models.TextEncoder(["a"], pooling="max")


def test_routed_encoder_splits_each_word_between_heads():
    enc = models.TextEncoder(["a", "b", "c"], max_tokens=6, embedding_dim=4, output_dim=6,
                             pooling="routed", heads=3)
    texts = ["a b", "c", "b a", "a b c c", "a zzz"]
    e = enc(tf.constant(texts)).numpy()
    assert e.shape == (5, 6)
    emb = enc.embedding.embeddings.numpy()
    wr, br = enc.routing.kernel.numpy(), enc.routing.bias.numpy()
    kernel, bias = enc.projection.kernel.numpy(), enc.projection.bias.numpy()  # [3, 4, 2], [3, 2]
    ids = {"a": 2, "b": 3, "c": 4, "zzz": OOV_ID}
    for row, words in zip(e, texts):
        x = emb[[ids[w] for w in words.split()]]  # [n, E]
        logits = x @ wr + br
        share = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # [n, heads]
        for h in range(3):
            pooled = (share[:, h:h + 1] * x).sum(axis=0) / len(x)
            np.testing.assert_allclose(row[2 * h:2 * h + 2], pooled @ kernel[h] + bias[h],
                                       atol=1e-5)
    np.testing.assert_allclose(e[0], e[2], atol=1e-6)  # order-blind
    shares = enc.routing_shares(enc.tokenize(tf.constant(texts))).numpy()  # [5, 6, 3]
    np.testing.assert_allclose(shares.sum(-1), [[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0],
                                                [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0],
                                                [1, 1, 0, 0, 0, 0]], atol=1e-6)
    clone = models.TextEncoder.from_config(enc.get_config())
    assert clone.get_config() == enc.get_config() and clone.get_config()["heads"] == 3
    with pytest.raises(ValueError, match="output_dim=5 must be a multiple of heads=2"):
        models.TextEncoder(["a"], output_dim=5, pooling="routed")
    with pytest.raises(ValueError, match="needs pooling='routed'"):
        models.TextEncoder(["a"]).routing_shares(tf.constant([[2]]))


def test_routed_encoder_with_fixed_routes():
    enc = models.TextEncoder(["a", "b", "up", "down"], max_tokens=6, embedding_dim=4,
                             output_dim=6, pooling="routed", route_words=["up", "down"])
    texts = ["a up", "b down b", "up"]
    shares = enc.routing_shares(enc.tokenize(tf.constant(texts))).numpy()
    np.testing.assert_array_equal(shares[:, :3], [[[1, 0], [0, 1], [0, 0]],
                                                  [[1, 0], [0, 1], [1, 0]],
                                                  [[0, 1], [0, 0], [0, 0]]])
    e = enc(tf.constant(texts)).numpy()
    emb = enc.embedding.embeddings.numpy()
    kernel, bias = enc.projection.kernel.numpy(), enc.projection.bias.numpy()
    # "up" alone: head 0 holds no word (its bias only), head 1 the whole word.
    np.testing.assert_allclose(e[2, :3], bias[0], atol=1e-6)
    np.testing.assert_allclose(e[2, 3:], emb[4] @ kernel[1] + bias[1], atol=1e-5)
    assert not enc.routing.trainable and not any("routing" in w.path
                                                 for w in enc.trainable_weights)
    clone = models.TextEncoder.from_config(enc.get_config())
    assert clone.get_config()["route_words"] == ["down", "up"]
    # Under mixed precision Keras autocasts the table inside call(): still float32 out.
    mixed = models.TextEncoder.from_config({**enc.get_config(), "dtype": "mixed_bfloat16"})
    assert mixed(tf.constant(texts)).dtype == tf.float32
    with pytest.raises(ValueError, match="route_words not in the vocabulary: left"):
        models.TextEncoder(["a"], pooling="routed", route_words=["left"])
    with pytest.raises(ValueError, match="route_words needs pooling='routed' with heads=2"):
        models.TextEncoder(["a"], route_words=["a"])


def test_route_words_resolve_against_the_dataset():
    from tfvideogen.training import trainer

    cfg = tiny_config("data.name=bouncing_digits", "model.text_encoder.pooling=routed",
                      "model.text_encoder.route_words=motion")
    assert trainer.route_words(cfg, trainer.dataset_for(cfg)) == ["down", "left", "right", "up"]
    task = trainer.build_task(cfg)
    assert task.text_encoder.route_words == ["down", "left", "right", "up"]
    cfg = tiny_config("model.text_encoder.pooling=routed", "model.text_encoder.route_words=up red")
    assert trainer.route_words(cfg, trainer.dataset_for(cfg)) == ["up", "red"]


def test_sampling_weights_shift_and_scale():
    from tfvideogen.models.layered import sampling_weights

    s = 8
    w = sampling_weights(tf.constant([0.0, 2.0 / s, 0.5 / s]), tf.constant([1.0, 1.0, 1.0]),
                         s).numpy()
    np.testing.assert_allclose(w[0], np.eye(s), atol=1e-6)  # identity
    np.testing.assert_allclose(w[1], np.eye(s, k=-1), atol=1e-6)  # one pixel to the right
    np.testing.assert_allclose(w[2], 0.75 * np.eye(s) + 0.25 * np.eye(s, k=-1), atol=1e-6)
    # Scale 2 about the centre: source pixels 3-4 (centres -1/8, 1/8) cover outputs
    # 2.5-4.5 (centres -1/4, 1/4), fading over one output pixel on either side.
    up = sampling_weights(tf.constant(0.0), tf.constant(2.0), s).numpy()
    np.testing.assert_allclose(up[:, 3] + up[:, 4], [0, .25, .75, 1, 1, .75, .25, 0], atol=1e-6)
    # Scale 1/2: the border outputs read outside the canvas, so nothing.
    down = sampling_weights(tf.constant(0.0), tf.constant(0.5), s).numpy()
    np.testing.assert_allclose(down.sum(axis=1), [0, 0, 1, 1, 1, 1, 0, 0], atol=1e-6)


@pytest.mark.parametrize("rgb_kernel", [3, 0])
def test_layered_generator_contract_and_separation(rgb_kernel):
    g = models.LayeredGenerator(frames=6, size=16, z_dim=8, text_dim=6, motion_dim=4,
                                base_width=16, min_width=8, rgb_kernel=rgb_kernel)
    z, t = tf.random.normal([3, 8]), tf.random.normal([3, 6])
    # Non-identity poses, so frames differ.
    g.build()
    g.pose.kernel.assign(tf.random.normal(g.pose.kernel.shape))
    out = g(z, t)
    assert out.shape == (3, 6, 16, 16, 3) and out.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(out))) <= 1.0
    assert float(tf.reduce_max(tf.abs(out[:, 0] - out[:, -1]))) > 0.0
    np.testing.assert_allclose(g(z[1:2], t[1:2]).numpy(), out[1:2].numpy(), atol=1e-5)
    # The first half of the caption vector draws, the second moves; neither leaks.
    other = tf.random.normal([3, 3])
    look, pose = g.layers_and_poses(z, t)
    look2, pose2 = g.layers_and_poses(z, tf.concat([t[:, :3], other], axis=1))
    np.testing.assert_array_equal(look.numpy(), look2.numpy())
    assert float(tf.reduce_max(tf.abs(pose - pose2))) > 1e-4
    look3, pose3 = g.layers_and_poses(z, tf.concat([other, t[:, 3:]], axis=1))
    np.testing.assert_array_equal(pose.numpy(), pose3.numpy())
    assert float(tf.reduce_max(tf.abs(look - look3))) > 1e-4
    # Pose t = bounds * tanh(pose(FiLM(GRU state t))), FiLM from [z, motion half].
    g.motion_gamma.kernel.assign(tf.random.normal(g.motion_gamma.kernel.shape))
    g.pose.kernel.assign(tf.random.normal(g.pose.kernel.shape))
    move = tf.concat([z, t[:, 3:]], axis=-1)
    motion = g.motion_rnn(
        tf.concat([tf.reshape(g.innovations(z), [3, 6, 4]),
                   tf.repeat(t[:, None, 3:], 6, axis=1)], axis=-1),
        initial_state=g.motion_init(move))
    motion = motion * g.motion_gamma(move)[:, None] + g.motion_beta(move)[:, None]
    np.testing.assert_allclose(g.layers_and_poses(z, t)[1].numpy(),
                               np.tanh(g.pose(motion).numpy()) * [1.0, 1.0, 0.5], atol=1e-5)
    # At the identity pose every frame is the composite of the layers.
    g.pose.kernel.assign(tf.zeros_like(g.pose.kernel))
    layers_, _ = g.layers_and_poses(z, t)
    alpha = tf.sigmoid(layers_[..., 3:4])
    still = tf.tanh(layers_[..., :3]) * alpha + (1 - alpha) * tf.tanh(layers_[..., 4:])
    for f in range(6):
        np.testing.assert_allclose(g(z, t)[:, f].numpy(), still.numpy(), atol=1e-5)
    # ... and the pose gets a gradient there (a hat kernel's is 0 at pixel centres).
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(g(z, t, training=True) * tf.random.normal([3, 6, 16, 16, 3]))
    assert float(tf.norm(tape.gradient(loss, g.pose.bias))) > 1e-3
    clone = models.LayeredGenerator.from_config(g.get_config())
    assert clone.get_config() == g.get_config()
    with pytest.raises(ValueError, match="text_dim=5 must be even"):
        models.LayeredGenerator(text_dim=5)
    with pytest.raises(ValueError, match="rgb_kernel must be 0 or 3, got 1"):
        models.LayeredGenerator(rgb_kernel=1)


@pytest.mark.parametrize("upsampling, rgb_kernel", [("transpose", 3), ("nearest", 3),
                                                    ("nearest", 1), ("nearest", 0),
                                                    ("transpose", 0)])
@pytest.mark.parametrize("frames, size, base_frames", [(4, 16, 1), (16, 32, 2), (8, 64, 1)])
def test_generator_output_contract(upsampling, rgb_kernel, frames, size, base_frames):
    g = models.VideoGenerator(frames=frames, size=size, z_dim=8, text_dim=6, base_width=16,
                              min_width=8, base_frames=base_frames, upsampling=upsampling,
                              rgb_kernel=rgb_kernel)
    out = g(tf.random.normal([3, 8]), tf.random.normal([3, 6]))
    assert out.shape == (3, frames, size, size, 3) and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= -1.0 and float(tf.reduce_max(out)) <= 1.0
    if rgb_kernel:
        assert g.to_rgb.kernel.shape == (rgb_kernel,) * 3 + (8, 3)
    else:
        # The last block's upsampling conv is the RGB layer: no norm, no RGB conv.
        last_conv, last_norm = g.blocks[-1]
        assert last_conv.filters == 3 and last_norm is None and not hasattr(g, "to_rgb")
        assert g.rgb_layer is last_conv
        assert all(norm is not None for _, norm in g.blocks[:-1])


def _overdriven_generator(output_activation: str, gain: float):
    """A built tiny generator whose RGB map is scaled by `gain` (outputs leave [-1, 1])."""
    g = models.VideoGenerator(frames=4, size=16, z_dim=8, text_dim=6, base_width=16,
                              min_width=8, base_frames=1, output_activation=output_activation)
    z, t = tf.random.normal([2, 8]), tf.random.normal([2, 6])
    g(z, t)
    g.to_rgb.kernel.assign(g.to_rgb.kernel * gain)
    return g, z, t


def test_generator_clip_output_is_linear_in_training_and_clipped_otherwise():
    g, z, t = _overdriven_generator("clip", 50.0)
    raw = g(z, t, training=True).numpy()
    served = g(z, t, training=False).numpy()
    assert raw.min() < -1.0 and raw.max() > 1.0 and raw.dtype == np.float32
    np.testing.assert_array_equal(served, np.clip(raw, -1.0, 1.0))
    np.testing.assert_array_equal(g(z, t).numpy(), served)  # training=None: inference
    with pytest.raises(ValueError, match="output_activation='sigmoid'; valid: tanh, clip"):
        models.VideoGenerator(output_activation="sigmoid")


def test_generator_leaky_tanh_by_hand():
    g, z, t = _overdriven_generator("leaky_tanh", 500.0)
    # The pre-activation, recomputed from the layers.
    from keras import ops
    cond = ops.concatenate([z, t], axis=-1)
    x = ops.reshape(g.stem(cond), [-1, g.base_frames, g.base_size, g.base_size, g.widths[0]])
    x = ops.relu(g.stem_norm(x, cond))
    for conv, norm in g.blocks:
        x = ops.relu(norm(conv(x), cond))
    pre = g.to_rgb(x).numpy()
    assert np.abs(pre).max() > 150  # deep in tanh's saturation
    raw = g(z, t, training=True).numpy()
    np.testing.assert_allclose(raw, np.tanh(pre) + 0.01 * pre, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(g(z, t).numpy(), np.clip(raw, -1.0, 1.0))
    # Saturated pixels still pass gradient (>= 0.01), unlike tanh (~0).
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(g(z, t, training=True))
    grad = tape.gradient(total, g.to_rgb.trainable_variables[1]).numpy()
    # d total / d bias_c = sum over the 2 x 4 x 16 x 16 pixels of (1 - tanh^2 + 0.01).
    expected = (1 - np.tanh(pre) ** 2 + 0.01).sum(axis=(0, 1, 2, 3))
    np.testing.assert_allclose(grad, expected, rtol=1e-4)
    assert np.all(grad >= 0.01 * pre[..., 0].size)


def test_generator_rejects_bad_sizes():
    with pytest.raises(ValueError, match="power of two"):
        models.VideoGenerator(frames=16, size=24)
    with pytest.raises(ValueError, match="raise base_frames"):
        models.VideoGenerator(frames=64, size=16, base_frames=1)
    with pytest.raises(ValueError, match="upsampling"):
        models.VideoGenerator(upsampling="bicubic")
    with pytest.raises(ValueError, match=r"rgb_kernel must be one of \(0, 1, 3\), got 5"):
        models.VideoGenerator(rgb_kernel=5)


@pytest.mark.parametrize("frame_frames, sn, stem", [(0, False, 0), (2, True, 0), (2, False, 5)])
def test_discriminator_heads(frame_frames, sn, stem):
    d = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=8, max_width=16,
                                  spectral_norm=sn, frame_frames=frame_frames, frame_stem=stem)
    logits = d(tf.random.normal([5, 4, 16, 16, 3]), tf.random.normal([5, 6]))
    assert logits.shape == (5, 2 if frame_frames else 1) and logits.dtype == tf.float32
    if stem:
        # The stem is a stride-1 full-resolution conv feeding the first stride-2 layer.
        assert d.f_stem.kernel.shape == (3, 3, 3, stem)
        assert d.frame_convs[0].kernel.shape[2] == stem
    with pytest.raises(ValueError, match="frame_stem"):
        models.VideoDiscriminator(frames=4, size=16, frame_stem=4)


def test_discriminator_pooling():
    """"sum_max" features are the sum- and the max-pooled last feature maps, side by
    side, per head; the frame head's are averaged over its frames."""
    video, text = tf.random.normal([3, 4, 16, 16, 3]), tf.random.normal([3, 6])
    ds = {}
    for pooling in ("sum", "max", "sum_max"):
        ds[pooling] = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=4,
                                                max_width=8, frame_frames=2, pooling=pooling)
        ds[pooling].build()
        if pooling != "sum":
            for a, b in zip(ds[pooling].video_convs + ds[pooling].frame_convs,
                            ds["sum"].video_convs + ds["sum"].frame_convs):
                a.set_weights(b.get_weights())
    assert (ds["sum"].video_width, ds["sum_max"].video_width) == (8, 16)
    assert ds["sum_max"].video_head.kernel.shape == (16, 1)
    feats = {k: d(video, text, return_features=True)[1] for k, d in ds.items()}
    # Rebuild the last feature maps by hand.
    x = video
    for layer in ds["sum"].video_convs:
        x = tf.nn.leaky_relu(layer(x), 0.2)
    f = tf.reshape(video[:, ::2], [-1, 16, 16, 3])  # frame sampler: offset 0 when not training
    for layer in ds["sum"].frame_convs:
        f = tf.nn.leaky_relu(layer(f), 0.2)
    f = tf.reshape(f, [3, 2, *f.shape[1:]])
    want = {"sum": [tf.reduce_sum(x, [1, 2, 3]), tf.reduce_mean(tf.reduce_sum(f, [2, 3]), 1)],
            "max": [tf.reduce_max(x, [1, 2, 3]), tf.reduce_mean(tf.reduce_max(f, [2, 3]), 1)]}
    want["sum_max"] = [tf.concat([s, m], -1) for s, m in zip(want["sum"], want["max"])]
    for pooling, heads in want.items():
        for got, expected in zip(feats[pooling], heads):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pooling='mean'; valid: sum, max, sum_max"):
        models.VideoDiscriminator(frames=4, size=16, pooling="mean")


def test_discriminator_group_norm_is_per_sample():
    d = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=4, max_width=8,
                                  frame_frames=2, norm="group", pooling="max")
    video, text = tf.random.normal([3, 4, 16, 16, 3]), tf.random.normal([3, 6])
    logits = d(video, text)
    # One group norm per stride-2 conv of each trunk, with the conv's width.
    norms = [layer for layer in d._flatten_layers()
             if isinstance(layer, keras.layers.GroupNormalization)]
    assert len(norms) == len(d.video_convs) + len(d.frame_convs) == 4
    assert [n.gamma.shape[0] for n in norms] == [4, 8, 4, 8]
    # Per sample: a clip scores the same alone as in its batch.
    np.testing.assert_allclose(d(video[1:2], text[1:2]), logits[1:2], rtol=1e-4, atol=1e-5)
    # The frame head's features, by hand: conv -> group norm -> leaky ReLU, max-pooled.
    f = tf.reshape(video[:, ::2], [-1, 16, 16, 3])
    for conv, norm in zip(d.frame_convs, norms[2:]):
        f = tf.nn.leaky_relu(norm(conv(f)), 0.2)
    want = tf.reduce_mean(tf.reshape(tf.reduce_max(f, [1, 2]), [3, 2, -1]), 1)
    np.testing.assert_allclose(d(video, text, return_features=True)[1][1], want, rtol=1e-5,
                               atol=1e-5)
    # "group_frame": the frame trunk's norms only; the video trunk as without a norm.
    g = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=4, max_width=8,
                                  frame_frames=2, norm="group_frame", pooling="max")
    g(video, text)
    assert [n.name for n in g._flatten_layers()
            if isinstance(n, keras.layers.GroupNormalization)] == ["f_norm0", "f_norm1"]
    x = video
    for conv in g.video_convs:
        x = tf.nn.leaky_relu(conv(x), 0.2)
    np.testing.assert_allclose(g(video, text, return_features=True)[1][0],
                               tf.reduce_max(x, [1, 2, 3]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="norm='batch'; valid: none, group, group_frame"):
        models.VideoDiscriminator(frames=4, size=16, norm="batch")


@pytest.mark.parametrize("frame_frames", [0, 2])
def test_discriminator_score_rescores_features_under_other_captions(frame_frames):
    d = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=8, max_width=16,
                                  frame_frames=frame_frames)
    video, text, other = (tf.random.normal([5, 4, 16, 16, 3]), tf.random.normal([5, 6]),
                          tf.random.normal([5, 6]))
    logits, features = d(video, text, return_features=True)
    np.testing.assert_allclose(d.score(features, text), logits, rtol=1e-5, atol=1e-5)
    # The trunks do not see the text: scoring the features under other captions
    # is the full pass with those captions.
    np.testing.assert_allclose(d.score(features, other), d(video, other), rtol=1e-5, atol=1e-5)
    # The frame head's logit is the mean of its frames' logits (projection is linear).
    if frame_frames:
        frames = tf.gather(video, [0, 2], axis=1)  # evenly spaced, offset 0 (inference)
        f = tf.reshape(frames, [-1, 16, 16, 3])
        for layer in d.frame_convs:
            f = tf.nn.leaky_relu(layer(f), 0.2)
        hf = tf.reduce_sum(f, axis=(1, 2))
        per_frame = d.score([hf, hf], tf.repeat(text, 2, axis=0))[:, 1]
        np.testing.assert_allclose(tf.reduce_mean(tf.reshape(per_frame, [5, 2]), axis=1),
                                   logits[:, 1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=f"expected features of {d.heads} heads, "
                                         f"got {d.heads + 1}"):
        d.score(features + features[:1], text)


@pytest.mark.parametrize("frame_frames", [0, 2])
def test_discriminator_word_head(frame_frames):
    d = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=8, max_width=16,
                                  frame_frames=frame_frames, word_classes=7)
    _, features = d(tf.random.normal([5, 4, 16, 16, 3]), tf.random.normal([5, 6]),
                    return_features=True)
    words = d.word_logits(features)
    assert words.shape == (d.heads, 5, 7) and words.dtype == tf.float32
    plain = models.VideoDiscriminator(frames=4, size=16, frame_frames=frame_frames)
    with pytest.raises(ValueError, match="no word head"):
        plain.word_logits(features)
    with pytest.raises(ValueError, match="word_classes must be >= 0"):
        models.VideoDiscriminator(frames=4, size=16, word_classes=-1)


def test_discriminator_frame_trunk_width_is_its_own():
    kw = dict(frames=4, size=16, text_dim=6, base_width=8, max_width=32, frame_frames=2)
    d = models.VideoDiscriminator(frame_base_width=12, **kw)
    v, t = tf.random.normal([3, 4, 16, 16, 3]), tf.random.normal([3, 6])
    _, features = d(v, t, return_features=True)
    assert [c.filters for c in d.frame_convs] == [12, 24]
    assert [c.filters for c in d.video_convs] == [8, 16]
    assert features[1].shape == (3, 24) and d.frame_width == 24 and d.video_width == 16
    again = models.VideoDiscriminator.from_config(d.get_config())
    assert again.frame_base_width == 12
    # 0 (the default) is the clip trunk's base width: the same layers as before.
    assert [c.filters for c in models.VideoDiscriminator(**kw).frame_convs] == [8, 16]
    with pytest.raises(ValueError, match="frame_base_width must be >= 0"):
        models.VideoDiscriminator(frame_base_width=-1, **kw)


def test_discriminator_video_head_on_a_downsampled_clip():
    # DVD-GAN's temporal D: the video head of a 16 px D with video_downsample=2 is
    # a video head over the 2x2 average-pooled (8 px) clip.
    v, t = tf.random.normal([3, 4, 16, 16, 3]), tf.random.normal([3, 6])
    down = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=8,
                                     video_downsample=2)
    small = models.VideoDiscriminator(frames=4, size=8, text_dim=6, base_width=8)
    down.build(), small.build()
    assert len(down.video_convs) == len(small.video_convs) == 1
    small.set_weights(down.get_weights())
    pooled = tf.nn.avg_pool3d(v, [1, 1, 2, 2, 1], [1, 1, 2, 2, 1], "VALID")
    np.testing.assert_allclose(down(v, t).numpy(), small(pooled, t).numpy(), atol=1e-5)
    both = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=8,
                                     frame_frames=2, video_downsample=2)
    assert both(v, t).shape == (3, 2)
    with pytest.raises(ValueError, match="video_downsample must divide size=16"):
        models.VideoDiscriminator(frames=4, size=16, video_downsample=3)
    with pytest.raises(ValueError, match="leave >= 8 pixels"):
        models.VideoDiscriminator(frames=4, size=16, video_downsample=4)
    with pytest.raises(ValueError, match="at least 8x8 pixels.*size=4"):
        models.VideoDiscriminator(frames=4, size=4)


def test_discriminator_is_per_sample():
    d = models.VideoDiscriminator(frames=4, size=16, text_dim=6, base_width=8, max_width=16,
                                  frame_frames=2)
    v, t = tf.random.normal([4, 4, 16, 16, 3]), tf.random.normal([4, 6])
    both = d(v, t).numpy()
    one = d(v[1:2], t[1:2]).numpy()
    np.testing.assert_allclose(both[1:2], one, atol=1e-5)


def test_conditional_norm_identity_at_init_and_per_sample():
    norm = layers.ConditionalNorm(4)
    x = tf.random.normal([2, 3, 5, 5, 4]) * 3.0 + 1.0
    y = norm(x, tf.random.normal([2, 7])).numpy()
    flat = y.reshape(2, -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=1), 1.0, atol=1e-3)
    y0 = norm(x[:1], tf.random.normal([1, 7])).numpy()
    np.testing.assert_allclose(y0, y[:1], atol=1e-5)


def _group_norm_float64(x, gamma, beta, groups, eps=1e-3):
    """The textbook group norm in float64: statistics per sample and group."""
    n, c = x.shape[0], x.shape[-1]
    g = tf.reshape(x, [n, -1, groups, c // groups])
    mean, var = tf.nn.moments(g, [1, 3], keepdims=True)
    x_hat = tf.reshape((g - mean) * tf.math.rsqrt(var + eps), tf.shape(x))
    shape = [-1 if gamma.shape.rank == 2 else 1] + [1] * (len(x.shape) - 2) + [c]
    return x_hat * tf.reshape(gamma, shape) + tf.reshape(beta, shape)


@pytest.mark.parametrize("shape,groups,per_sample", [
    ((3, 6, 6, 8), 4, False), ((2, 3, 4, 4, 6), 2, False), ((3, 5, 5, 4), 4, False),
    ((2, 3, 4, 4, 6), 1, True)])
def test_group_norm_value_gradient_and_second_derivative(shape, groups, per_sample):
    # Against float64 autodiff of the textbook form: output, d/d(x, gamma, beta),
    # and the derivative of |dL/dx|^2 (what R1 differentiates) - the hand-written
    # backward pass must itself be differentiable. Mean 4x the std: the variance
    # and the gradient's sums must not cancel.
    rs = np.random.RandomState(groups)
    c = shape[-1]
    x = rs.randn(*shape) * 0.5 + 2.0
    gamma = rs.rand(*((shape[0], c) if per_sample else (c,))) + 0.5
    beta = rs.randn(*gamma.shape)
    up = tf.constant(rs.randn(*shape))

    def derivatives(fn, dtype):
        args = [tf.constant(v, dtype) for v in (x, gamma, beta)]
        with tf.GradientTape() as outer:
            outer.watch(args)
            with tf.GradientTape() as inner:
                inner.watch(args)
                y = tf.cast(fn(*args, groups, 1e-3), tf.float64)
                loss = tf.reduce_sum(y * up) + tf.reduce_sum(y * y)
            grads = inner.gradient(loss, args)
            penalty = tf.reduce_sum(tf.cast(grads[0], tf.float64) ** 2)
        return [y] + grads + outer.gradient(penalty, args)

    want = derivatives(_group_norm_float64, tf.float64)
    got = derivatives(layers.group_norm, tf.float32)
    # Float32 rounding, relative to the largest value of each order (a second
    # derivative that is 0 in exact math, d2beta with one channel per group,
    # comes out as rounding noise of the others).
    scale = [np.abs(w).max() for w in want]
    scale = [scale[0]] + [max(scale[1:4])] * 3 + [max(scale[4:])] * 3
    for name, g, w, s in zip(["y", "dx", "dgamma", "dbeta", "d2x", "d2gamma", "d2beta"],
                             got, want, scale):
        np.testing.assert_allclose(tf.cast(g, tf.float64), w, rtol=0, atol=2e-6 * s,
                                   err_msg=name)
    with pytest.raises(ValueError, match="channels 8 not divisible by groups=3"):
        layers.group_norm(tf.zeros([1, 2, 8]), tf.ones([8]), tf.zeros([8]), 3, 1e-3)


def test_group_normalization_layer_is_keras_with_the_fast_path():
    x = tf.random.normal([3, 5, 5, 8]) * 2.0 + 1.0
    ours, theirs = layers.GroupNormalization(4), keras.layers.GroupNormalization(4)
    ours.build(x.shape), theirs.build(x.shape)
    for v in (ours.gamma, ours.beta):
        v.assign(tf.random.normal(v.shape))
    theirs.set_weights(ours.get_weights())
    assert [v.path.split("/")[-1] for v in ours.weights] == ["gamma", "beta"]
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = tf.reduce_sum(ours(x) ** 3), tf.reduce_sum(theirs(x) ** 3)
    for ga, gb in zip(tape.gradient(a, [x, *ours.weights]), tape.gradient(b, [x, *theirs.weights])):
        np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-4)
    # bfloat16 in, bfloat16 out, statistics in float32 (as Keras').
    mixed = layers.GroupNormalization(4, dtype="mixed_bfloat16")
    assert mixed(tf.cast(x, tf.bfloat16)).dtype == tf.bfloat16


@pytest.mark.parametrize("time", [True, False])
def test_nearest_up_conv_equals_upsample_then_conv(time):
    up = layers.NearestUpConv3D(5, time=time, bias_initializer="random_normal")
    x = tf.random.normal([2, 3, 4, 6, 7])
    y = up(x).numpy()
    repeated = x
    for axis in ((1, 2, 3) if time else (2, 3)):
        repeated = tf.repeat(repeated, 2, axis=axis)
    # The two-step form it replaces, with the same kernel and bias; zero padding
    # at every border must match too.
    ref = tf.nn.conv3d(repeated, up.kernel, [1] * 5, "SAME") + up.bias
    assert y.shape == (2, 6 if time else 3, 8, 12, 5) == up.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, ref.numpy(), atol=1e-4)
    assert tuple(up.kernel.shape) == (3, 3, 3, 7, 5)


@pytest.mark.parametrize("make", [
    lambda: layers.NearestUpConv3D(4, time=False, name="up"),
    lambda: models.TextEncoder(["x", "y"], max_tokens=4, embedding_dim=3, hidden_dim=2,
                               output_dim=5, name="enc"),
    lambda: models.TextEncoder(["x", "y"], embedding_dim=3, output_dim=5, pooling="mean"),
    lambda: models.VideoGenerator(frames=4, size=16, z_dim=4, text_dim=5, base_width=8,
                                  min_width=4, base_frames=1, upsampling="nearest",
                                  output_activation="clip"),
    lambda: models.VideoGenerator(frames=4, size=16, z_dim=4, text_dim=5, base_width=8,
                                  min_width=4, base_frames=1, output_activation="leaky_tanh",
                                  rgb_kernel=1),
    lambda: models.VideoDiscriminator(frames=4, size=16, text_dim=5, base_width=4, max_width=8,
                                      spectral_norm=True, frame_frames=2, video_downsample=2,
                                      frame_stem=3, word_classes=4, pooling="sum_max",
                                      norm="group"),
    lambda: layers.ConditionalNorm(3, epsilon=1e-3),
    lambda: layers.GroupNormalization(2, epsilon=1e-4, name="gn"),
])
def test_config_round_trip(make):
    obj = make()
    clone = type(obj).from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()


def test_keras_save_reload_is_equal(task, tmp_path):
    path = str(tmp_path / "task.keras")
    task.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, models.TextToVideo)
    np.testing.assert_array_equal(task.generate(CAPTIONS, seed=5),
                                  loaded.generate(CAPTIONS, seed=5))
    v, t = tf.random.normal([2, 4, 16, 16, 3]), tf.random.normal([2, task.text_encoder.output_dim])
    np.testing.assert_allclose(task.discriminator(v, t), loaded.discriminator(v, t), atol=1e-6)
    for a, b in zip(task.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_generate_same_seed_same_video_any_batch(task):
    a = task.generate(CAPTIONS, seed=11)
    b = task.generate(CAPTIONS, seed=11)
    alone = task.generate(CAPTIONS[1:], seed=12)  # caption 1 used seed 11 + 1
    other = task.generate(CAPTIONS, seed=99)
    assert a.shape == (2, 4, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[1:], alone)
    assert not np.array_equal(a, other)


def test_latents_from_seeds_are_per_row():
    z = models.latents_from_seeds(tf.constant([1, 2, 3], tf.int64), 6).numpy()
    z2 = models.latents_from_seeds(tf.constant([2], tf.int64), 6).numpy()
    np.testing.assert_array_equal(z[1], z2[0])
    assert not np.allclose(z[0], z[1])


def test_truncation_scales_the_seeded_latents(task):
    seeds = tf.constant([4, 5], tf.int64)
    z = models.latents_from_seeds(seeds, 6).numpy()
    np.testing.assert_allclose(models.latents_from_seeds(seeds, 6, 0.5).numpy(), 0.5 * z,
                               rtol=0, atol=0)
    np.testing.assert_array_equal(task.generate(CAPTIONS, seed=3, truncation=1.0),
                                  task.generate(CAPTIONS, seed=3))
    z = models.latents_from_seeds(tf.constant([3, 4], tf.int64), task.z_dim).numpy()
    np.testing.assert_array_equal(task.generate(CAPTIONS, seed=3, truncation=0.25),
                                  task.generate(CAPTIONS, z=0.25 * z))
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"truncation must be in \(0, 1\]"):
            task.generate(CAPTIONS, truncation=bad)
    with pytest.raises(ValueError, match="scale an explicit z"):
        task.generate(CAPTIONS, z=z, truncation=0.5)


def test_generate_validates_inputs(task):
    with pytest.raises(ValueError, match="caption 1 is empty"):
        task.generate(["a red square", "  "])
    with pytest.raises(ValueError, match="no captions"):
        task.generate([])
    with pytest.raises(ValueError, match="2 seeds for 1 captions"):
        task.generate(["a red square"], seed=[1, 2])
    with pytest.raises(ValueError, match="z must be"):
        task.generate(["a"], z=np.zeros((1, 3)))
    z = np.zeros((1, task.z_dim), np.float32)
    assert task.generate(["a red square"], z=z, dtype="float32").dtype == np.float32


def test_to_uint8_rounds_and_clips():
    got = models.to_uint8(tf.constant([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0])).numpy()
    assert list(got) == [0, 0, 128, 255, 255, 255]


def test_per_caption_seed_rule():
    from tfvideogen.utils.seeds import per_caption_seeds
    np.testing.assert_array_equal(per_caption_seeds(5, 3), [5, 6, 7])
    np.testing.assert_array_equal(per_caption_seeds([9, 1], 2), [9, 1])
    assert per_caption_seeds(0, 2).dtype == np.int64
    with pytest.raises(ValueError, match="got 3 seeds for 2 captions"):
        per_caption_seeds([1, 2, 3], 2)
