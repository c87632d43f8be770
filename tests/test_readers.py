"""Readers: `tfrecord:<glob>`, `videos:<dir|glob>`, `moving_mnist:<path>` and training on them."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from test_prepare_data import color_clip, make_corpus, write_csv, write_video

from tfvideogen import config as config_lib
from tfvideogen import data
from tfvideogen.data import prepare, tfrecord

NAMES = ("zero", "one", "two", "three", "four", "five")


def half_clip(n: int = 8, size: int = 32) -> np.ndarray:
    """Left half red, right half blue: tells a horizontal flip."""
    clip = np.zeros((n, size, size, 3), np.uint8)
    clip[:, :, : size // 2, 0] = 255
    clip[:, :, size // 2:, 2] = 255
    return clip


@pytest.fixture(scope="module")
def six_videos(tmp_path_factory) -> str:
    """Six captioned 8-frame videos (clip i starts at palette color i) + captions.csv."""
    root = str(tmp_path_factory.mktemp("six"))
    with open(os.path.join(root, "captions.csv"), "w") as f:
        for i, name in enumerate(NAMES):
            write_video(os.path.join(root, f"v{i}.mp4"), color_clip(8, shift=i))
            f.write(f"v{i}.mp4,clip number {name}\n")
    return root


@pytest.fixture(scope="module")
def shards(six_videos, tmp_path_factory) -> str:
    """`six_videos` prepared into 3 shards."""
    root = six_videos
    out = str(tmp_path_factory.mktemp("six_shards"))
    prepare.prepare(prepare.PrepareConfig(input=root, output_dir=out,
                                          captions=os.path.join(root, "captions.csv"),
                                          clip_frames=8, size=32, videos_per_shard=2,
                                          progress=False))
    return out


def elements(name: str, n: int, **kw) -> list[dict]:
    kw = {"frames": 4, "height": 16, "width": 16, "seed": 0, "shuffle_buffer": 8, **kw}
    return [{k: v.numpy() for k, v in e.items()}
            for e in data.load(name, num_examples=n, **kw)]


def first_color(video: np.ndarray) -> int:
    """Palette index of the clip's first (solid) frame."""
    rgb = (video[0].mean((0, 1)) + 1.0) * 127.5
    from test_prepare_data import PALETTE

    return int(np.argmin(np.abs(PALETTE.astype(float) - rgb).sum(1)))


def test_unknown_dataset_lists_every_choice():
    with pytest.raises(ValueError) as e:
        data.get("webdataset:/x")
    for choice in ("moving_shapes", "bouncing_digits", "tfrecord:<", "videos:<",
                   "moving_mnist:<"):
        assert choice in str(e.value)
    with pytest.raises(ValueError, match="needs an argument"):
        data.get("tfrecord:")
    with pytest.raises(FileNotFoundError, match="no files match"):
        data.get("tfrecord:/nonexistent/*.tfrecord")


def test_tfrecord_reader_contract(shards):
    spec = f"tfrecord:{shards}/*.tfrecord"
    ds = data.get(spec, num_objects=1, mnist_path="")  # trainer's extra options are ignored
    assert ds.splits == ("train",)
    assert ds.captions("train") == sorted(f"clip number {n}" for n in NAMES)
    assert set(ds.vocabulary()) == {"clip", "number", *NAMES}
    assert ds.parse_caption("clip number one") == {}
    assert len(ds.sample_captions("train", 4)) == 4
    with pytest.raises(ValueError, match="no split 'heldout'"):
        data.load(spec, split="heldout")
    out = elements(spec, 40)
    for e in out:
        assert e["video"].shape == (4, 16, 16, 3) and e["video"].dtype == np.float32
        assert e["video"].min() >= -1.0 and e["video"].max() <= 1.0
        # Consecutive frames of clip i: palette colors i+o, i+o+1, ... (o = crop offset).
        i = NAMES.index(e["caption"].decode().split()[-1])
        c0 = first_color(e["video"])
        offset = (c0 - i) % 8
        assert offset <= 4  # 8 stored frames, 4 taken
        for k in range(4):
            want = (color_clip(1, 16, 16, shift=i + offset + k)[0] / 127.5 - 1.0)
            assert np.abs(e["video"][k] - want).max() < 0.1
    # Random temporal crops and every clip show up.
    assert len({first_color(e["video"]) - NAMES.index(e["caption"].decode().split()[-1])
                for e in out}) > 1
    assert {e["caption"] for e in out} == {f"clip number {n}".encode() for n in NAMES}


def test_tfrecord_order_is_seeded_and_start_reseeds(shards):
    spec = f"tfrecord:{shards}"  # a folder works too
    caps = [e["caption"] for e in elements(spec, 12, shuffle_buffer=4)]
    assert caps == [e["caption"] for e in elements(spec, 12, shuffle_buffer=4)]
    resumed = [e["caption"] for e in elements(spec, 12, shuffle_buffer=4, start=12)]
    assert resumed != caps  # a resumed run does not replay the same order
    assert sorted(set(resumed)) == sorted(set(caps))


def test_tfrecord_flip_and_resize(tmp_path):
    root = str(tmp_path / "v")
    os.makedirs(root)
    write_video(os.path.join(root, "halves.mp4"), half_clip())
    prepare.prepare(prepare.PrepareConfig(input=root, output_dir=str(tmp_path / "s"),
                                          clip_frames=8, size=32, progress=False))
    spec = f"tfrecord:{tmp_path}/s/*.tfrecord"
    plain = elements(spec, 10, height=8, width=8)
    assert all(e["video"][0, 4, 0, 0] > 0.8 and e["video"][0, 4, -1, 2] > 0.8 for e in plain)
    assert plain[0]["caption"] == tfrecord.UNCONDITIONAL_CAPTION.encode()
    flipped = [e["video"][0, 4, 0, 2] > 0.8 for e in elements(spec, 24, flip=True)]
    assert 0 < sum(flipped) < len(flipped)


def test_tfrecord_auto_shard_policy(shards, monkeypatch):
    files = data.get(f"tfrecord:{shards}/*.tfrecord")
    assert len(files.files) == 3
    policy = tf.data.experimental.AutoShardPolicy
    ds = files.make("train", 4, 16, 16, 0)
    assert ds.options().experimental_distribute.auto_shard_policy == policy.FILE
    cluster = {"worker": ["localhost:1", "localhost:2"], "chief": ["localhost:3"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {}}))
    assert files.auto_shard_policy() == policy.FILE  # 3 files, 3 workers
    cluster["worker"].append("localhost:4")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {}}))
    ds = files.make("train", 4, 16, 16, 0)
    assert ds.options().experimental_distribute.auto_shard_policy == policy.DATA


def test_tfrecord_truncated_shard_and_missing_info(shards, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(shards, copy, ignore=shutil.ignore_patterns(".prepare",
                                                                "dataset_info.json"))
    victim = sorted(tf.io.gfile.glob(f"{copy}/*.tfrecord"))[0]
    with open(victim, "rb") as f:
        raw = f.read()
    with open(victim, "wb") as f:
        f.write(raw[: len(raw) // 2])  # an interrupted copy
    ds = data.get(f"tfrecord:{copy}/*.tfrecord")
    # No dataset_info.json: captions and vocabulary come from a scan of the records.
    assert ds.info["captions"]["source"] == "scan"
    assert {"clip", "number"} <= set(ds.vocabulary())
    got = {e["caption"] for e in elements(f"tfrecord:{copy}/*.tfrecord", 30)}
    assert len(got) >= 4  # the intact shards (and the truncated one's first record)


def test_videos_reader_skips_bad_files(tmp_path):
    root = str(tmp_path / "messy")
    make_corpus(root)
    write_csv(root)  # found automatically as <folder>/captions.csv
    reader = data.get(f"videos:{root}", num_objects=1)
    assert reader.caption_source == "file"
    assert "colorful" in reader.vocabulary()
    out = [{k: v.numpy() for k, v in e.items()}
           for e in reader.make("train", 4, 16, 16, seed=0, num_examples=20)]
    good = {b"A red-green video!", b"a colorful clip", b"a wide, shifted video",
            b"a gray video", b"an odd sized video"}
    assert {e["caption"] for e in out} <= good
    assert len({e["caption"] for e in out}) >= 3
    for e in out:
        assert e["video"].shape == (4, 16, 16, 3) and e["video"].dtype == np.float32
    assert reader.bad == {"corrupt.mp4": "corrupt", "zero.avi": "no_frames",
                          "short.mp4": "too_short", "truncated.mp4": "truncated"}


def test_videos_reader_class_folders_and_all_bad(tmp_path):
    root = str(tmp_path / "ucf")
    for i, folder in enumerate(("ApplyEyeMakeup", "PlayingDaf")):
        os.makedirs(os.path.join(root, folder))
        write_video(os.path.join(root, folder, "a.avi"), color_clip(6, shift=i))
    reader = data.get(f"videos:{root}")
    assert reader.captions("train") == ["apply eye makeup", "playing daf"]
    assert reader.parse_caption("playing daf") == {"class": "playing daf"}
    with pytest.raises(ValueError, match="not one of its class captions"):
        reader.parse_caption("juggling")
    out = elements(f"videos:{root}/*/*.avi", 4)
    assert {e["caption"] for e in out} == {b"apply eye makeup", b"playing daf"}

    bad = str(tmp_path / "bad")
    os.makedirs(bad)
    for name in ("x.mp4", "y.avi"):
        with open(os.path.join(bad, name), "wb") as f:
            f.write(b"not a video" * 20)
    with pytest.raises(tf.errors.OpError, match="no usable video left"):
        elements(f"videos:{bad}", 2)


def test_moving_mnist(tmp_path):
    # Sequence s, frame t is the constant 20 * s + t: elements tell where they came from.
    t, n = 20, 10
    values = (20 * np.arange(n)[None, :] + np.arange(t)[:, None]).astype(np.uint8)
    array = np.broadcast_to(values[:, :, None, None], (t, n, 64, 64)).copy()
    path = str(tmp_path / "mnist_test_seq.npy")
    np.save(path, array)
    spec = f"moving_mnist:{path}"
    ds = data.get(spec, num_objects=1, mnist_path="")
    assert ds.vocabulary() == ["a", "video"] and ds.splits == ("train", "validation")

    def decoded(split, start=0, count=12):
        out = []
        for e in elements(spec, count, split=split, frames=8, height=32, width=32,
                          start=start):
            assert e["video"].shape == (8, 32, 32, 3)
            v = np.rint((e["video"][:, 0, 0, 0] + 1.0) * 127.5).astype(int)
            assert np.all(np.diff(v) == 1)  # consecutive frames of one sequence
            out.append((v[0] // 20, v[0] % 20))
        return out

    train = decoded("train")
    assert all(s < 9 for s, _ in train) and len({s for s, _ in train}) > 2
    assert all(0 <= f <= 12 for _, f in train)
    assert all(s == 9 for s, _ in decoded("validation", count=4))
    assert decoded("train", start=5, count=7) == train[5:]  # exact resume
    with pytest.raises(ValueError, match="sequences have 20 frames"):
        data.load(spec, frames=32)
    np.save(str(tmp_path / "bad.npy"), np.zeros((20, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="must hold uint8"):
        data.get(f"moving_mnist:{tmp_path}/bad.npy")


@pytest.mark.slow  # two tiny trainings, ~10 s each
@pytest.mark.parametrize("kind", ["tfrecord", "videos"])
def test_train_a_few_steps(kind, shards, six_videos, tmp_path):
    from tfvideogen import training

    name = f"tfrecord:{shards}/*.tfrecord" if kind == "tfrecord" else f"videos:{six_videos}"
    cfg = config_lib.apply_overrides(config_lib.get_experiment("tiny"),
                                     [f"data.name={name}", "train.steps=2",
                                      "train.sample_every=2"]).validate()
    result = training.train(cfg, str(tmp_path / "run"))
    assert result.step == 2
    assert all(math.isfinite(v) for v in result.losses.values())
    assert os.path.exists(tmp_path / "run" / "text_to_video.keras")
    vocab = result.task.text_encoder.vocabulary
    assert {"clip", "number"} <= set(vocab)
