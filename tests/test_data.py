import re

import numpy as np
import pytest

from tfvideogen import data
from tfvideogen.data import bouncing_digits, moving_shapes


def _take(name, n=8, **kw):
    kw.setdefault("frames", 8)
    kw.setdefault("height", 32)
    kw.setdefault("width", 32)
    return list(data.load(name, num_examples=n, **kw).as_numpy_iterator())


@pytest.mark.parametrize("name", ["moving_shapes", "bouncing_digits"])
def test_shapes_dtypes_and_range(name):
    items = _take(name, frames=6, height=16, width=16)
    assert len(items) == 8
    for x in items:
        assert x["video"].shape == (6, 16, 16, 3)
        assert x["video"].dtype == np.float32
        assert x["video"].min() >= -1.0 and x["video"].max() <= 1.0
        assert x["video"].max() > 0.0  # something is drawn on the black background
        assert isinstance(x["caption"], bytes)


def test_moving_shapes_caption_grammar_and_colors():
    grammar = re.compile(r"a (red|green|blue|yellow|magenta|cyan|white) (square|circle|triangle)"
                         r" is moving (left and right|up and down)")
    for x in _take("moving_shapes", 16):
        caption = x["caption"].decode()
        m = grammar.fullmatch(caption)
        assert m, caption
        rgb = np.array(moving_shapes.COLORS[m[1]]) / 127.5 - 1.0
        # The object's fully covered pixels have exactly the caption's color.
        pixels = x["video"].reshape(-1, 3)
        lit = pixels[np.abs(pixels - rgb).max(axis=1) < 1e-5]
        assert len(lit) > 10, caption
        # Background is black.
        assert (np.abs(pixels + 1.0).max(axis=1) < 1e-5).mean() > 0.5


def _centroids(video):
    mass = (video + 1.0).sum(axis=-1)  # [T, H, W]
    ys, xs = np.mgrid[: video.shape[1], : video.shape[2]]
    total = mass.sum(axis=(1, 2))
    return (mass * xs).sum(axis=(1, 2)) / total, (mass * ys).sum(axis=(1, 2)) / total


@pytest.mark.parametrize("name", ["moving_shapes", "bouncing_digits"])
def test_motion_matches_caption(name):
    for x in _take(name, 12, frames=16):
        cx, cy = _centroids(x["video"])
        caption = x["caption"].decode()
        moving, still = (cx, cy) if caption.endswith("left and right") else (cy, cx)
        assert np.ptp(moving) > 3.0, caption
        assert np.ptp(still) < 0.5, caption


def test_object_size_within_range():
    for x in _take("moving_shapes", 12, height=64, width=64):
        if "square" not in x["caption"].decode():
            continue
        mask = (x["video"][0] > -1.0).any(axis=-1)
        rows = np.flatnonzero(mask.any(axis=1))
        side = (rows[-1] - rows[0] + 1) / 64
        assert 0.24 <= side <= 0.42


def test_two_objects_caption():
    items = _take("moving_shapes", 4, num_objects=2)
    for x in items:
        parts = x["caption"].decode().split(" and a ")
        assert len(parts) == 2
        parsed = data.get("moving_shapes", num_objects=2).parse_caption(x["caption"].decode())
        assert set(parsed) == {"color", "shape", "motion", "color_2", "shape_2", "motion_2"}


def test_moving_shapes_splits_are_disjoint_and_cover_attributes():
    ds = data.get("moving_shapes")
    train, heldout = set(ds.captions("train")), set(ds.captions("heldout"))
    assert train.isdisjoint(heldout)
    assert len(train) + len(heldout) == 7 * 3 * 2
    assert set(ds.captions("validation")) == train
    for attr in ("color", "shape", "motion"):
        assert {ds.parse_caption(c)[attr] for c in train} == set(ds.attributes[attr])
    seen = {x["caption"].decode() for x in _take("moving_shapes", 64, split="heldout")}
    assert seen <= heldout and len(seen) > 1


def test_attribute_words_are_the_words_that_name_a_value():
    from tfvideogen.data.registry import FileDataset, own_words

    assert own_words(("left and right", "up and down", "up")) == [["left", "right"], ["down"], []]
    shapes = data.get("moving_shapes")
    named = shapes.attribute_words()
    assert {"red", "circle", "square", "up", "left"} <= set(named) <= set(shapes.vocabulary())
    assert set(shapes.vocabulary()) - set(named) == {"a", "and", "is", "moving"}
    assert set(data.get("bouncing_digits").attribute_words()) == {
        *"0123456789", "up", "down", "left", "right"}

    class Files(FileDataset):  # captions read from files, normalised as the encoder does
        name, _captions = "files", ["A dog runs.", "a cat runs", "a dog, sleeping"]

        def make(self, *args):
            raise NotImplementedError

    # Free-form captions: the words some caption lacks; class captions: own words.
    assert Files().attribute_words() == ["cat", "dog", "runs", "sleeping"]
    classes = Files()
    classes.attributes = {"class": ("A Dog", "a cat")}
    assert classes.attribute_words() == ["cat", "dog"]


def test_bouncing_digits_sync_draw_split():
    ds = data.get("bouncing_digits")
    train = [ds.parse_caption(c) for c in ds.captions("train")]
    heldout = [ds.parse_caption(c) for c in ds.captions("heldout")]
    assert sorted(p["digit"] for p in train) == [str(d) for d in range(10)]
    for t, h in zip(sorted(train, key=lambda p: p["digit"]), sorted(heldout,
                                                                     key=lambda p: p["digit"])):
        assert t["digit"] == h["digit"] and t["motion"] != h["motion"]
    grammar = re.compile(r"the digit \d is moving (left and right|up and down)")
    assert all(grammar.fullmatch(x["caption"].decode()) for x in _take("bouncing_digits", 8))


def test_determinism_and_start_offset():
    a = _take("moving_shapes", 6, seed=3)
    b = _take("moving_shapes", 6, seed=3)
    c = _take("moving_shapes", 6, seed=4)
    tail = list(data.load("moving_shapes", frames=8, height=32, width=32, seed=3,
                          num_examples=2, start=4).as_numpy_iterator())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["video"], y["video"])
    assert any(not np.array_equal(x["video"], y["video"]) for x, y in zip(a, c))
    np.testing.assert_array_equal(tail[0]["video"], a[4]["video"])
    np.testing.assert_array_equal(tail[1]["video"], a[5]["video"])


def test_train_and_validation_streams_differ():
    a = _take("moving_shapes", 4, split="train")
    b = _take("moving_shapes", 4, split="validation")
    assert all(not np.array_equal(x["video"], y["video"]) for x, y in zip(a, b))


def test_mnist_npz_source(tmp_path):
    rng = np.random.default_rng(0)
    x = np.zeros((20, 28, 28), np.uint8)
    y = np.repeat(np.arange(10), 2)
    for i, d in enumerate(y):  # a digit-specific blob so the source is recognisable
        x[i, 4 + d: 14 + d, 6:22] = 200 + rng.integers(0, 55)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x, y_train=y)
    items = _take("bouncing_digits", 4, mnist_path=str(path), height=64, width=64)
    assert all(it["video"].max() > 0.5 for it in items)
    source = bouncing_digits.BouncingDigits(mnist_path=str(path), glyphs_per_digit=2)
    bank = source.glyph_bank(28, 0)
    assert bank.shape == (10, 2, 28, 28)
    sources = x[y == 3] / 255.0
    assert min(np.abs(bank[3, 0] - s).max() for s in sources) < 1e-5


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'; valid: .*moving_shapes"):
        data.load("nope")
    with pytest.raises(ValueError, match="no split 'test'"):
        data.load("moving_shapes", split="test")
    with pytest.raises(ValueError, match="frames must be positive"):
        data.load("moving_shapes", frames=0)
    with pytest.raises(FileNotFoundError, match="MNIST file not found"):
        data.load("bouncing_digits", mnist_path=str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="not an MNIST .npz"):
        data.load("bouncing_digits", mnist_path=str(bad))
    with pytest.raises(ValueError, match="not a moving_shapes caption"):
        data.get("moving_shapes").parse_caption("a purple square is moving up and down")
