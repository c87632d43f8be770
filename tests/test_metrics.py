"""Metrics: Fréchet distance, FVD pipeline, attribute classifier, diversity."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from tfvideogen import data as data_lib
from tfvideogen.metrics import classifier as classifier_lib
from tfvideogen.metrics import diversity as diversity_lib
from tfvideogen.metrics import frechet
from tfvideogen.metrics import fvd as fvd_lib
from tfvideogen.metrics import objects as objects_lib

# --------------------------------------------------------------------------- #
# Fréchet distance.


def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula, straight from numpy/scipy (np.cov, sqrtm)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root))


def _eig_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """TF-GAN's route: Tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1)))."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.maximum(w, 0))) @ v.T
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    d = a.mean(0) - b.mean(0)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.maximum(ev, 0))))


@pytest.mark.parametrize("n,d", [(300, 8), (64, 32), (16, 400)])
def test_frechet_matches_scipy_and_eigen_forms(n, d):
    rng = np.random.default_rng(n + d)
    a = np.maximum(rng.normal(size=(n, d)), 0)
    b = np.maximum(rng.normal(size=(n + 5, d)) * 1.3 + 0.2, 0)
    got = frechet.frechet_distance(a, b)
    assert got == pytest.approx(_scipy_frechet(a, b), rel=1e-7)
    assert got == pytest.approx(_eig_frechet(a, b), rel=1e-6)
    assert got > 0


def test_frechet_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 12))
    assert frechet.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_shifted_mean_is_squared_norm():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 0.25])
    assert frechet.frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_frechet_closed_forms_from_statistics():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
    s1 = frechet.Statistics(np.array([1.0]), np.array([[4.0]]), 10)
    s2 = frechet.Statistics(np.array([-2.0]), np.array([[9.0]]), 10)
    assert frechet.frechet_distance_from_statistics(s1, s2) == pytest.approx(9.0 + 1.0)
    # Commuting (diagonal) covariances: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    d = frechet.frechet_distance_from_statistics(frechet.Statistics(mu1, np.diag(a), 5),
                                                 frechet.Statistics(mu2, np.diag(b), 5))
    assert d == pytest.approx(5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def test_frechet_degenerate_sets_reduce_to_mean_distance():
    # Identical rows (the FVD sanity case): zero covariances, only the means count.
    a = np.tile(np.linspace(-1, 1, 100), (16, 1))
    b = np.tile(np.linspace(2, 0, 100), (16, 1))
    assert frechet.frechet_distance(a, b) == pytest.approx(float(np.sum((a[0] - b[0]) ** 2)))


def test_frechet_works_in_float64():
    rng = np.random.default_rng(2)
    x = (1e4 + rng.normal(size=(400, 4))).astype(np.float32)
    y = (x.astype(np.float64) * 1.001 + 0.05).astype(np.float32)
    stats = frechet.statistics(x)
    assert stats.mean.dtype == np.float64 and stats.cov.dtype == np.float64
    # float32 inputs, float64 math: agrees with the float64 formula on the same values.
    want = _scipy_frechet(x.astype(np.float64), y.astype(np.float64))
    assert frechet.frechet_distance(x, y) == pytest.approx(want, rel=1e-9)


def test_frechet_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        frechet.frechet_distance(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        frechet.frechet_distance(np.full((4, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet.frechet_distance(np.zeros((4, 2)), np.zeros((4, 3)))


def test_frechet_refuses_a_large_imaginary_residue():
    # Not a covariance (a negative eigenvalue): sqrtm(S1 S2) is genuinely complex.
    bad = frechet.Statistics(np.zeros(2), np.diag([1.0, -1.0]), 10)
    good = frechet.Statistics(np.zeros(2), np.eye(2), 10)
    with pytest.raises(ValueError, match="imaginary residue"):
        frechet.frechet_distance_from_statistics(bad, good)


# --------------------------------------------------------------------------- #
# FVD: preprocessing, a stand-in I3D with the module's call contract, the cache.


def _legacy_bilinear(frames: np.ndarray, out: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False) in numpy."""
    n, h, w, c = frames.shape

    def axis(size):
        src = np.arange(out) * (size / out)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, size - 1), src - lo

    y0, y1, dy = axis(h)
    x0, x1, dx = axis(w)
    f = frames.astype(np.float64)
    top = f[:, y0][:, :, x0] * (1 - dx)[None, None, :, None] + f[:, y0][:, :, x1] * dx[
        None, None, :, None]
    bot = f[:, y1][:, :, x0] * (1 - dx)[None, None, :, None] + f[:, y1][:, :, x1] * dx[
        None, None, :, None]
    return top * (1 - dy)[None, :, None, None] + bot * dy[None, :, None, None]


def test_fvd_preprocess_is_the_reference_resize_and_scale():
    rng = np.random.default_rng(3)
    videos = rng.integers(0, 256, size=(2, 3, 8, 8, 3), dtype=np.uint8)
    got = fvd_lib.preprocess(videos).numpy()
    assert got.shape == (2, 3, 224, 224, 3) and got.dtype == np.float32
    want = _legacy_bilinear(videos.reshape(-1, 8, 8, 3), 224).reshape(2, 3, 224, 224, 3)
    np.testing.assert_allclose(got, 2.0 * want / 255.0 - 1.0, atol=1e-5)
    assert got.min() >= -1.0 and got.max() <= 1.0
    # Frame order and batch layout survive the reshape round trip.
    np.testing.assert_allclose(fvd_lib.preprocess(videos[1:, 2:]).numpy()[0, 0], got[1, 2],
                               atol=1e-6)


def test_fvd_preprocess_rejects_float_and_bad_shapes():
    with pytest.raises(ValueError, match="uint8"):
        fvd_lib.preprocess(np.zeros((1, 2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[N, T, H, W, 3\]"):
        fvd_lib.preprocess(np.zeros((2, 8, 8, 3), np.uint8))


STANDIN_DIM = 400


class _StandInI3D(tf.Module):
    """I3D's call contract: signature `default`, float32 [B,T,224,224,3] in [-1,1]
    -> {"default": [B, 400]}; a fixed nonlinear projection of 56x56 block means."""

    def __init__(self, seed: int = 0):
        super().__init__()
        w = np.random.default_rng(seed).normal(size=(48, STANDIN_DIM)) / 4
        self.w = tf.Variable(w.astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 224, 224, 3], tf.float32)])
    def default(self, rgb_input):
        tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(rgb_input)), 1.001)
        x = tf.nn.avg_pool2d(tf.reduce_mean(rgb_input, axis=1), 56, 56, "VALID")
        return {"default": tf.tanh(tf.reshape(x, [-1, 48]) @ self.w)}


def _standin_numpy(videos: np.ndarray, seed: int = 0) -> np.ndarray:
    w = (np.random.default_rng(seed).normal(size=(48, STANDIN_DIM)) / 4).astype(np.float32)
    n, t = videos.shape[:2]
    x = _legacy_bilinear(videos.reshape(-1, *videos.shape[2:]), 224)
    x = (2.0 * x / 255.0 - 1.0).reshape(n, t, 224, 224, 3).mean(axis=1)
    x = x.reshape(n, 4, 56, 4, 56, 3).mean(axis=(2, 4)).reshape(n, 48)
    return np.tanh(x @ w.astype(np.float64))


@pytest.fixture(scope="module")
def standin_module(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("standin_i3d"))
    module = _StandInI3D()
    tf.saved_model.save(module, path, signatures={"default": module.default})
    return path


def test_fvd_pipeline_with_standin_module(standin_module):
    rng = np.random.default_rng(4)
    real = rng.integers(0, 256, size=(21, 3, 16, 16, 3), dtype=np.uint8)
    fake = np.clip(real[:19].astype(int) + rng.integers(-60, 60, size=(19, 3, 16, 16, 3)),
                   0, 255).astype(np.uint8)
    embedder = fvd_lib.I3DEmbedder(standin_module, batch_size=fvd_lib.BATCH_SIZE)
    feats = embedder(real)
    assert feats.shape == (21, STANDIN_DIM) and feats.dtype == np.float64
    np.testing.assert_allclose(feats, _standin_numpy(real), atol=2e-4)
    # Batching does not change the embeddings (21 = 16 + 5 vs 5 + 5 + 5 + 5 + 1).
    small = fvd_lib.I3DEmbedder(standin_module, batch_size=5)
    np.testing.assert_allclose(small(real), feats, atol=1e-5)
    result = fvd_lib.fvd(real, fake, embedder, split="train")
    want = _scipy_frechet(_standin_numpy(real), _standin_numpy(fake))
    assert result.value == pytest.approx(want, rel=1e-3) and result.value > 1.0
    p = result.protocol
    assert p["samples_real"] == 21 and p["samples_generated"] == 19 and p["frames"] == 3
    assert p["source_resolution"] == [16, 16] and p["feature_dim"] == STANDIN_DIM
    assert p["split"] == "train" and "224x224" in p["resize"] and p["module"] == standin_module
    assert result.to_dict()["value"] == result.value


def test_fvd_module_is_found_in_the_tfhub_cache(standin_module, tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    cached = fvd_lib.cached_module_dir(fvd_lib.I3D_HANDLE)
    assert os.path.dirname(cached) == str(tmp_path)
    tf.io.gfile.makedirs(cached)
    for name in tf.io.gfile.listdir(standin_module):
        src = os.path.join(standin_module, name.rstrip("/"))
        if tf.io.gfile.isdir(src):
            tf.io.gfile.makedirs(os.path.join(cached, name.rstrip("/")))
            for f in tf.io.gfile.listdir(src):
                tf.io.gfile.copy(os.path.join(src, f), os.path.join(cached, name.rstrip("/"), f))
        else:
            tf.io.gfile.copy(src, os.path.join(cached, name))
    # Our lookup agrees with TF-Hub's own resolver (which would not download now).
    import tensorflow_hub as hub

    assert fvd_lib.resolve_module(fvd_lib.I3D_HANDLE) == cached == hub.resolve(fvd_lib.I3D_HANDLE)
    videos = np.zeros((2, 2, 8, 8, 3), np.uint8)
    np.testing.assert_allclose(fvd_lib.I3DEmbedder()(videos), _standin_numpy(videos), atol=2e-4)


def test_fvd_fails_fast_without_the_module(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "empty_cache"))
    t0 = time.perf_counter()
    with pytest.raises(fvd_lib.ModuleNotAvailableError, match="TFHUB_CACHE_DIR") as err:
        fvd_lib.I3DEmbedder(fvd_lib.I3D_HANDLE)
    assert time.perf_counter() - t0 < 5.0  # no network attempt
    assert fvd_lib.I3D_HANDLE in str(err.value) and "--fvd_module" in str(err.value)
    with pytest.raises(fvd_lib.ModuleNotAvailableError, match="saved_model.pb"):
        fvd_lib.resolve_module(str(tmp_path))


@pytest.mark.slow
def test_fvd_reference_sanity_value():
    """The reference's example: 16 all-zero vs 16 all-255 videos, 15 frames 64x64 -> ~131."""
    cached = fvd_lib.cached_module_dir(fvd_lib.I3D_HANDLE)
    if not fvd_lib._is_saved_model(cached):
        pytest.skip(f"the I3D module is not in the TF-Hub cache ({cached}); set "
                    f"TFHUB_CACHE_DIR to a cache holding {fvd_lib.I3D_HANDLE} to run the "
                    f"reference sanity check (no network here)")
    zeros = np.zeros((16, 15, 64, 64, 3), np.uint8)
    full = np.full((16, 15, 64, 64, 3), 255, np.uint8)
    result = fvd_lib.fvd(zeros, full, fvd_lib.I3DEmbedder())
    assert result.value == pytest.approx(131.0, abs=3.0)
    assert result.protocol["feature_dim"] == 400


# --------------------------------------------------------------------------- #
# The attribute classifier.


def test_attribute_heads_and_labels():
    shapes = data_lib.get("moving_shapes")
    heads = classifier_lib.attribute_heads(shapes)
    assert list(heads) == ["color", "shape", "motion"]
    assert heads["shape"] == ("square", "circle", "triangle")
    labels = classifier_lib.caption_labels(
        shapes, ["a blue circle is moving up and down", "a red square is moving left and right"],
        heads)
    assert labels["color"].tolist() == [2, 0] and labels["shape"].tolist() == [1, 0]
    assert labels["motion"].tolist() == [1, 0]
    two = classifier_lib.attribute_heads(data_lib.get("moving_shapes", num_objects=2))
    assert list(two) == ["color", "shape", "motion", "color_2", "shape_2", "motion_2"]
    assert two["color_2"] == heads["color"]
    digits = classifier_lib.attribute_heads(data_lib.get("bouncing_digits"))
    assert list(digits) == ["digit", "motion"] and len(digits["digit"]) == 10
    with pytest.raises(ValueError, match="not a moving_shapes caption"):
        classifier_lib.caption_labels(shapes, ["the digit 3 is moving up and down"], heads)


def test_accuracy_and_chance():
    preds = {"a": np.array([0, 1, 2, 2]), "b": np.array([1, 1, 0, 0])}
    labels = {"a": np.array([0, 1, 1, 2]), "b": np.array([1, 0, 0, 0])}
    acc = classifier_lib.accuracy(preds, labels)
    assert acc == {"a": 0.75, "b": 0.75, "all_correct": 0.5}
    chance = classifier_lib.chance_accuracy({"a": ("x", "y"), "b": ("p", "q", "r", "s")})
    assert chance == {"a": 0.5, "b": 0.25, "all_correct": 0.125}
    with pytest.raises(ValueError, match="heads differ"):
        classifier_lib.accuracy(preds, {"a": labels["a"]})
    # Rows: asked value, columns: judged value.
    conf = classifier_lib.confusion(preds, labels, {"a": "xyz", "b": "pq"})
    assert conf == {"a": [[1, 0, 0], [0, 1, 1], [0, 0, 1]], "b": [[2, 1], [0, 1]]}


def test_classifier_shapes_and_config_roundtrip():
    heads = {"color": ("r", "g", "b"), "motion": ("x", "y")}
    model = classifier_lib.VideoClassifier(4, 16, heads, base_width=4, feature_dim=8)
    model.build()
    video = tf.zeros([2, 4, 16, 16, 3])
    logits = model(video)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {"color": (2, 3), "motion": (2, 2)}
    assert tuple(model.features(video).shape) == (2, 8)
    clone = classifier_lib.VideoClassifier.from_config(model.get_config())
    clone.build()
    clone.set_weights(model.get_weights())
    x = tf.random.uniform([2, 4, 16, 16, 3], -1, 1, seed=1)
    np.testing.assert_allclose(clone(x)["color"], model(x)["color"], atol=1e-6)
    with pytest.raises(ValueError, match="videos must be"):
        classifier_lib.predict(model, np.zeros((2, 4, 8, 8, 3), np.uint8))


# 4x16x16 clips: shapes are 4-6 px wide, so shape is the slow attribute to learn.
TINY_JUDGE = classifier_lib.ClassifierConfig(steps=1000, batch_size=64, eval_examples=128,
                                             feature_dim=32)


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("judges"))
    t0 = time.perf_counter()
    model, info, path = classifier_lib.load_or_train("moving_shapes", 4, 16, 16, cache,
                                                     TINY_JUDGE)
    return model, info, path, cache, time.perf_counter() - t0


@pytest.mark.slow
def test_classifier_is_right_on_real_clips_and_at_chance_on_noise(tiny_judge):
    model, info, _, _, _ = tiny_judge
    dataset = data_lib.get("moving_shapes")
    heads = classifier_lib.attribute_heads(dataset)
    # Real clips of a seed the classifier never trained on, held-out combinations included.
    for split in ("validation", "heldout"):
        videos, captions = classifier_lib.real_clips("moving_shapes", split, 4, 16, 16,
                                                     seed=777, count=128)
        preds, feats = classifier_lib.predict(model, videos)
        acc = classifier_lib.accuracy(preds, classifier_lib.caption_labels(dataset, captions,
                                                                           heads))
        assert acc["color"] >= 0.97 and acc["motion"] >= 0.95, (split, acc)
        assert acc["shape"] >= 0.8 and acc["all_correct"] >= 0.78, (split, acc)
        assert feats.shape == (128, TINY_JUDGE.feature_dim)
    assert info["real_accuracy"]["heldout"]["all_correct"] >= 0.78
    # Uniform noise, labelled with real captions: about chance for every attribute.
    noise = np.random.default_rng(5).integers(0, 256, size=(240, 4, 16, 16, 3), dtype=np.uint8)
    _, captions = classifier_lib.real_clips("moving_shapes", "train", 4, 16, 16, seed=778,
                                            count=240)
    preds, _ = classifier_lib.predict(model, noise)
    acc = classifier_lib.accuracy(preds, classifier_lib.caption_labels(dataset, captions, heads))
    chance = classifier_lib.chance_accuracy(heads)
    for head in heads:
        assert acc[head] <= chance[head] + 0.15, (head, acc, chance)
    assert acc["all_correct"] <= 0.1


@pytest.mark.slow
def test_classifier_is_cached_and_not_retrained(tiny_judge, monkeypatch):
    model, info, path, cache, _ = tiny_judge
    assert os.path.isfile(os.path.join(path, classifier_lib.CLASSIFIER_FILE))
    assert not [d for d in os.listdir(cache) if ".tmp-" in d]

    def fail(*args, **kwargs):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr(classifier_lib, "train_classifier", fail)
    again, info2, path2 = classifier_lib.load_or_train("moving_shapes", 4, 16, 16, cache,
                                                       TINY_JUDGE)
    assert path2 == path and info2 == info
    x = np.random.default_rng(6).integers(0, 256, size=(3, 4, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(classifier_lib.predict(again, x)[1],
                               classifier_lib.predict(model, x)[1], atol=1e-5)
    # Another setting is another cache entry.
    other = classifier_lib.ClassifierConfig(**{**TINY_JUDGE.__dict__, "steps": 5})
    assert classifier_lib.cache_key("moving_shapes", 4, 16, 16, other, {}) != os.path.basename(
        path)


# --------------------------------------------------------------------------- #
# Diversity.


def test_mean_pairwise_distance_known_values():
    black = np.zeros((2, 3, 4, 4, 3), np.uint8)
    white = np.full((2, 3, 4, 4, 3), 255, np.uint8)
    assert diversity_lib.mean_pairwise_distance(black) == 0.0
    assert diversity_lib.mean_pairwise_distance(
        np.concatenate([black[:1], white[:1]])) == pytest.approx(1.0)
    rng = np.random.default_rng(7)
    v = rng.integers(0, 256, size=(4, 2, 3, 3, 3), dtype=np.uint8)
    x = v.reshape(4, -1).astype(np.float64) / 255
    want = np.mean([np.sqrt(np.mean((x[i] - x[j]) ** 2)) for i in range(4)
                    for j in range(i + 1, 4)])
    assert diversity_lib.mean_pairwise_distance(v) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        diversity_lib.mean_pairwise_distance(v[:1])
    with pytest.raises(ValueError, match="uint8"):
        diversity_lib.mean_pairwise_distance(v.astype(np.float32))


def test_diversity_flags_mode_collapse():
    rng = np.random.default_rng(8)
    real = {c: rng.integers(0, 256, size=(6, 2, 8, 8, 3), dtype=np.uint8) for c in "abc"}
    same = np.repeat(real["a"][:1], 5, axis=0)
    collapsed = diversity_lib.diversity_scores({"a": same, "b": same, "c": real["c"]}, real)
    assert collapsed["per_caption"]["a"]["ratio"] == 0.0
    assert collapsed["per_caption"]["a"]["collapsed"] and collapsed["per_caption"]["b"]["collapsed"]
    assert not collapsed["per_caption"]["c"]["collapsed"]
    assert collapsed["per_caption"]["c"]["ratio"] == pytest.approx(1.0)
    assert collapsed["collapsed"] == ["a", "b"] and collapsed["mode_collapse"]
    healthy = diversity_lib.diversity_scores(real, real)
    assert healthy["mean_ratio"] == pytest.approx(1.0) and not healthy["mode_collapse"]
    # A caption without 2 real clips is normalised by the pooled real diversity.
    pooled = diversity_lib.diversity_scores({"z": real["a"]}, real)
    assert pooled["per_caption"]["z"]["pooled"]
    assert pooled["per_caption"]["z"]["real"] == pytest.approx(np.mean(
        [diversity_lib.mean_pairwise_distance(v) for v in real.values()]))


def test_real_clips_by_caption_matches_captions():
    dataset = data_lib.get("moving_shapes")
    wanted = dataset.sample_captions("train", 3)
    clips = diversity_lib.real_clips_by_caption("moving_shapes", "validation", wanted, 3,
                                                frames=2, height=8, width=8, seed=5,
                                                max_scan=400)
    assert set(clips) == set(wanted)
    for caption, videos in clips.items():
        assert videos.shape == (3, 2, 8, 8, 3) and videos.dtype == np.uint8
        # Each clip shows its caption's color (the brightest channel pattern).
        color = dataset.parse_caption(caption)["color"]
        rgb = np.array(__import__("tfvideogen.data.moving_shapes", fromlist=["COLORS"]).COLORS[
            color]) > 0
        for v in videos:
            lit = v.reshape(-1, 3).max(axis=0) > 100
            assert (lit == rgb).all(), (caption, v.reshape(-1, 3).max(axis=0))


# --------------------------------------------------------------------------- #
# Objects per frame.


def _boxes(n, t, size=16, side=4, fade=(), ghosts=(), grow=0):
    """uint8 clips [n, t, size, size, 3]: one side x side box per frame, moving right."""
    v = np.zeros((n, t, size, size, 3), np.uint8)
    for i, j in np.ndindex(n, t):
        s = side + grow
        x = (i + j) % (size - s - 6)
        value = 60 if j in fade else 255
        v[i, j, 2:2 + s, x:x + s, 0] = value
        if j in ghosts:
            v[i, j, 10:10 + side, x:x + side, 1] = 255
    return v


def test_object_stats_known_values():
    real = _boxes(3, 4)
    area, components = objects_lib.frame_stats(real)
    assert area.shape == components.shape == (3, 4)
    assert (area == 16).all() and (components == 1).all()
    # Two diagonal pixels are one 8-connected group; an isolated speck is below min_pixels.
    v = np.zeros((1, 1, 8, 8, 3), np.uint8)
    v[0, 0, 1, 1] = v[0, 0, 2, 2] = v[0, 0, 3, 3] = v[0, 0, 4, 4] = 200
    v[0, 0, 7, 0] = 255
    area, components = objects_lib.frame_stats(v)
    assert area[0, 0] == 5 and components[0, 0] == 1
    # Below the threshold is background.
    assert objects_lib.frame_stats(v // 2)[0][0, 0] == 0


def test_object_compare_flags_blobs_fade_and_ghosts():
    real = _boxes(4, 6)
    same = objects_lib.compare(real, real)
    assert same["area_ratio"] == [1.0] * 6 and same["area_ratio_mean"] == 1.0
    assert same["components_mean"] == same["real_components_mean"] == 1.0
    assert same["empty_frames"] == 0.0
    blobs = objects_lib.compare(real, _boxes(4, 6, grow=2))  # 6x6 instead of 4x4
    assert blobs["area_ratio_mean"] == pytest.approx(36 / 16)
    faded = objects_lib.compare(real, _boxes(4, 6, fade=(0, 1)))
    assert faded["area_ratio"][:2] == [0.0, 0.0] and faded["area_ratio"][2:] == [1.0] * 4
    assert faded["area_ratio_min"] == 0.0 and faded["empty_frames"] == pytest.approx(2 / 6)
    ghosts = objects_lib.compare(real, _boxes(4, 6, ghosts=(0, 1, 2)))
    assert ghosts["generated_components"][:3] == [2.0] * 3
    assert ghosts["components_mean"] == pytest.approx(1.5)


def test_object_compare_rejects_bad_input():
    real = _boxes(2, 3)
    with pytest.raises(ValueError, match="uint8"):
        objects_lib.compare(real, real.astype(np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        objects_lib.compare(real, _boxes(2, 4))
    with pytest.raises(ValueError, match="black background"):
        objects_lib.compare(np.zeros_like(real), real)
    with pytest.raises(ValueError, match=r"must be \[B,T,H,W,3\]"):
        objects_lib.compare(real[0, 0], real)
    with pytest.raises(ValueError, match="holds no videos"):
        objects_lib.compare(real[:0], real)
