"""prepare_data: real video files (made here with imageio-ffmpeg) -> TFRecord shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf

from tfvideogen.data import decode, prepare, tfrecord

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Distinct solid colors (each channel 0 or 255): survive H.264/MJPEG + JPEG easily.
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255],
                    [255, 0, 255], [255, 255, 255], [0, 0, 0]], np.uint8)
TOLERANCE = 12  # max abs error per channel after video codec + JPEG round trips


def color_clip(n: int, height: int = 32, width: int = 32, shift: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3]: frame i is the solid color PALETTE[(i + shift) % 8]."""
    colors = PALETTE[(np.arange(n) + shift) % len(PALETTE)]
    return np.ascontiguousarray(np.broadcast_to(colors[:, None, None], (n, height, width, 3)))


def write_video(path: str, clip: np.ndarray, fps: int = 10) -> str:
    """mp4 (libx264), avi (mjpeg) or mkv (ffv1, gray when `clip` is [T, H, W])."""
    ext = os.path.splitext(path)[1]
    kw = {"mp4": dict(codec="libx264", quality=9), "avi": dict(codec="mjpeg", quality=9),
          "mkv": dict(codec="ffv1", pixelformat="gray" if clip.ndim == 3 else "yuv444p")}[ext[1:]]
    iio.imwrite(path, clip, extension=ext, fps=fps, macro_block_size=1, **kw)
    return path


def write_zero_frame_avi(path: str) -> str:
    """An AVI with a video stream and no frame."""
    subprocess.run([decode.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f",
                    "lavfi", "-i", "color=c=red:s=32x32:r=10", "-frames:v", "0", "-c:v", "mjpeg",
                    path], check=True, capture_output=True)
    return path


def make_corpus(root: str) -> dict:
    """A messy folder: good mp4, avi, gray mkv and odd-size mkv; too short, corrupt,
    zero-frame, truncated and duplicate files; a text file.

    Returns the expected outcome per file.
    """
    os.makedirs(root, exist_ok=True)
    write_video(os.path.join(root, "colors.mp4"), color_clip(12))
    write_video(os.path.join(root, "wide.avi"), color_clip(12, 48, 64, shift=3))
    gray_levels = np.array([40, 120, 200, 80] * 3, np.uint8)
    write_video(os.path.join(root, "gray.mkv"),
                np.ascontiguousarray(np.broadcast_to(gray_levels[:, None, None], (12, 32, 32))))
    write_video(os.path.join(root, "odd.mkv"), color_clip(12, 27, 35, shift=5))  # odd size
    write_video(os.path.join(root, "short.mp4"), color_clip(3))
    with open(os.path.join(root, "corrupt.mp4"), "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    write_zero_frame_avi(os.path.join(root, "zero.avi"))
    # Noise (incompressible) with the index up front, then cut in half: the header
    # promises 20 frames, about 10 decode.
    noise = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    full = os.path.join(root, "truncated.mp4")
    iio.imwrite(full, noise, extension=".mp4", fps=10, codec="libx264", quality=9,
                macro_block_size=1, output_params=["-movflags", "+faststart"])
    with open(full, "rb") as f:
        data = f.read()
    with open(full, "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(root, "colors.mp4"), "rb") as src, \
            open(os.path.join(root, "copy_of_colors.mp4"), "wb") as dst:
        dst.write(src.read())
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not a video")
    return {"gray_levels": gray_levels}


def write_csv(root: str) -> str:
    path = os.path.join(root, "captions.csv")
    rows = [b"path,caption",
            b"colors.mp4,A red-green video!",
            b"colors.mp4,a colorful clip",
            b"colors.mp4,A red-green video!",             # exact repeat -> duplicate
            b'wide.avi,"a wide, shifted video"',
            b"gray.mkv,a gray video",
            b"odd.mkv,an odd sized video",
            b"short.mp4,too short",
            b"corrupt.mp4,broken bytes",
            b"zero.avi,no frames at all",
            b"truncated.mp4,cut in half",
            b"copy_of_colors.mp4,same bytes again",
            b"missing.mp4,not on disk",
            b"wide.avi,   ",                               # empty caption
            b"gray.mkv,caf\xe9 latin-1 bytes",             # not UTF-8
            b"gray.mkv,???"]                               # no tokenizable word
    with open(path, "wb") as f:
        f.write(b"\n".join(rows) + b"\n")
    return path


def read_records(pattern: str) -> list[dict]:
    out = []
    for raw in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))):
        ex = tf.train.Example.FromString(raw.numpy())
        f = ex.features.feature
        frames = [tf.io.decode_image(b, channels=3).numpy() for b in f[tfrecord.FRAMES]
                  .bytes_list.value]
        out.append({
            "frames": np.stack(frames),
            "captions": [c.decode() for c in f[tfrecord.CAPTION].bytes_list.value],
            "source": f[tfrecord.SOURCE].bytes_list.value[0].decode(),
            "clip_start": f[tfrecord.CLIP_START].int64_list.value[0],
            "fps": f[tfrecord.FPS].float_list.value[0],
            "original": (f[tfrecord.ORIGINAL_HEIGHT].int64_list.value[0],
                         f[tfrecord.ORIGINAL_WIDTH].int64_list.value[0]),
            "num_frames": f[tfrecord.NUM_FRAMES].int64_list.value[0],
        })
    return out


def base_config(root: str, out: str, **kw) -> prepare.PrepareConfig:
    defaults = dict(input=root, output_dir=out, clip_frames=8, size=32, workers=2,
                    progress=False)
    defaults.update(kw)
    return prepare.PrepareConfig(**defaults)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[str, dict]:
    root = str(tmp_path_factory.mktemp("corpus"))
    expected = make_corpus(root)
    write_csv(root)
    return root, expected


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> tuple[str, dict]:
    root, _ = corpus
    out = str(tmp_path_factory.mktemp("shards"))
    info = prepare.prepare(base_config(root, out, captions=os.path.join(root, "captions.csv")))
    return out, info


def test_frames_round_trip_within_jpeg_tolerance(corpus, prepared):
    root, expected = corpus
    out, info = prepared
    records = {r["source"]: r for r in read_records(os.path.join(out, "*.tfrecord"))}
    assert sorted(records) == ["colors.mp4", "gray.mkv", "odd.mkv", "wide.avi"]
    assert info["num_examples"] == 4
    for name, shift in (("colors.mp4", 0), ("wide.avi", 3), ("odd.mkv", 5)):
        rec = records[name]
        assert rec["frames"].shape == (8, 32, 32, 3)
        # "spread" placement centers one 8-frame clip in 12 frames: it starts at 2.
        assert rec["clip_start"] == 2
        want = color_clip(8, shift=shift + 2)
        err = np.abs(rec["frames"].astype(int) - want.astype(int))
        assert err.max() <= TOLERANCE, (name, err.max())
    gray = records["gray.mkv"]["frames"].astype(int)
    levels = expected["gray_levels"][2:10].astype(int)
    assert np.abs(gray - levels[:, None, None, None]).max() <= TOLERANCE
    assert np.abs(gray[..., 0] - gray[..., 2]).max() <= 4  # gray stays gray
    assert records["wide.avi"]["original"] == (48, 64)
    assert records["odd.mkv"]["original"] == (27, 35)
    assert records["colors.mp4"]["fps"] == pytest.approx(10.0)


def test_captions_round_trip(prepared):
    out, info = prepared
    records = {r["source"]: r for r in read_records(os.path.join(out, "*.tfrecord"))}
    assert records["colors.mp4"]["captions"] == ["A red-green video!", "a colorful clip"]
    assert records["wide.avi"]["captions"] == ["a wide, shifted video"]
    assert records["gray.mkv"]["captions"] == ["a gray video"]
    caps = info["captions"]
    assert caps["source"] == "file" and caps["conditional"]
    assert caps["values"] == sorted(["A red-green video!", "a colorful clip",
                                     "a wide, shifted video", "a gray video",
                                     "an odd sized video"])
    # Vocabulary = the tokenizer's words (lowercased, punctuation split).
    assert {"red", "green", "video", "colorful", "wide", "shifted", "gray"} <= set(
        info["vocabulary"])
    assert "red-green" not in info["vocabulary"]


def test_skip_counts_and_reasons(prepared):
    _, info = prepared
    skipped = info["skipped"]
    reasons = {(s["path"], s["reason"]) for s in skipped["files"]}
    assert ("short.mp4", "too_short") in reasons
    assert ("corrupt.mp4", "corrupt") in reasons
    assert ("zero.avi", "no_frames") in reasons
    assert ("truncated.mp4", "truncated") in reasons
    assert ("copy_of_colors.mp4", "duplicate_content") in reasons
    assert ("missing.mp4", "missing_file") in reasons
    assert ("colors.mp4", "duplicate") in reasons
    assert ("wide.avi", "empty_caption") in reasons
    assert ("gray.mkv", "bad_caption_encoding") in reasons
    assert ("gray.mkv", "empty_caption") in reasons  # "???" has no word
    assert skipped["by_reason"] == {"too_short": 1, "corrupt": 1, "no_frames": 1,
                                    "truncated": 1, "duplicate_content": 1, "missing_file": 1,
                                    "duplicate": 1, "empty_caption": 2,
                                    "bad_caption_encoding": 1}
    assert skipped["total"] == 10
    assert info["num_videos"] == {"found": 9, "used": 4, "skipped": 10}
    assert not any(s["path"].endswith("notes.txt") for s in skipped["files"])
    stats = info["source"]
    assert stats["fps"]["min"] == stats["fps"]["max"] == pytest.approx(10.0)
    assert stats["decoded_frames"]["max"] == 12
    assert info["clip"]["frames_per_clip"]["min"] == 8
    assert info["clip"]["total_frames"] == 32
    assert info["clip"]["height"] == info["clip"]["width"] == 32
    assert len(info["clip"]["pixel_mean"]) == 3


def test_interrupted_run_resumes_without_duplicating_shards(tmp_path):
    root = str(tmp_path / "videos")
    os.makedirs(root)
    for i in range(6):
        write_video(os.path.join(root, f"clip{i}.mp4"), color_clip(8, shift=i))
    out = str(tmp_path / "out")
    cfg = base_config(root, out, videos_per_shard=2)

    class Interrupt(Exception):
        pass

    def stop_after_first(index, state):
        raise Interrupt(f"simulated kill after shard {index}")

    with pytest.raises(Interrupt):
        prepare.prepare(cfg, on_shard_done=stop_after_first)
    first = sorted(os.listdir(out))
    assert first == [".prepare", "train-00000-of-00003.tfrecord"]
    kept = os.stat(os.path.join(out, first[1]))
    # A crash in the middle of a shard leaves a temp file: it must not survive.
    with open(os.path.join(out, "train-00001-of-00003.tfrecord.tmp"), "wb") as f:
        f.write(b"partial")

    done = []
    info = prepare.prepare(cfg, on_shard_done=lambda i, s: done.append(i))
    assert done == [1, 2]  # only the missing shards were prepared
    names = sorted(n for n in os.listdir(out) if not n.startswith("."))
    assert names == ["dataset_info.json"] + [f"train-0000{i}-of-00003.tfrecord"
                                             for i in range(3)]
    assert os.stat(os.path.join(out, first[1])).st_mtime_ns == kept.st_mtime_ns
    records = read_records(os.path.join(out, "*.tfrecord"))
    assert sorted(r["source"] for r in records) == [f"clip{i}.mp4" for i in range(6)]
    assert info["num_examples"] == 6
    assert info["shard_examples"] == {f"train-0000{i}-of-00003.tfrecord": 2 for i in range(3)}
    # A finished run reruns as a no-op; other options refuse to mix into it.
    again = []
    prepare.prepare(cfg, on_shard_done=lambda i, s: again.append(i))
    assert again == []
    with pytest.raises(prepare.PrepareError, match="clip_frames"):
        prepare.prepare(base_config(root, out, videos_per_shard=2, clip_frames=4))


def test_class_folders_loop_whole_video_and_fps(tmp_path):
    root = str(tmp_path / "ucf")
    for folder, n in (("ApplyEyeMakeup", 12), ("playing_daf", 3)):
        os.makedirs(os.path.join(root, folder))
        write_video(os.path.join(root, folder, "v1.mp4"), color_clip(n))
    write_video(os.path.join(root, "loose.mp4"), color_clip(12, shift=1))
    info = prepare.prepare(base_config(root, str(tmp_path / "a"), class_folders=True,
                                       short_videos="loop"))
    recs = {r["source"]: r for r in read_records(str(tmp_path / "a" / "*.tfrecord"))}
    assert recs[os.path.join("ApplyEyeMakeup", "v1.mp4")]["captions"] == ["apply eye makeup"]
    looped = recs[os.path.join("playing_daf", "v1.mp4")]
    assert looped["captions"] == ["playing daf"]
    assert looped["frames"].shape[0] == 8
    # 3 frames looped to 8: frame k shows color k % 3.
    want = color_clip(8)[np.arange(8) % 3]
    assert np.abs(looped["frames"].astype(int) - want.astype(int)).max() <= TOLERANCE
    assert info["captions"]["source"] == "folder"
    assert [(s["path"], s["reason"]) for s in info["skipped"]["files"]] == [
        ("loose.mp4", "no_caption")]

    # Whole videos, resampled from 10 to 5 fps, unconditional, PNG frames.
    info = prepare.prepare(base_config(root, str(tmp_path / "b"), clip_frames=0, fps=5.0,
                                       image_format="png", size=16))
    recs = {r["source"]: r for r in read_records(str(tmp_path / "b" / "*.tfrecord"))}
    full = recs["loose.mp4"]
    assert full["num_frames"] == 6 and full["frames"].shape == (6, 16, 16, 3)
    assert full["fps"] == pytest.approx(5.0)
    assert full["captions"] == []
    assert not info["captions"]["conditional"]
    # 5 fps keeps every other frame (timestamp resampling).
    assert np.abs(full["frames"].astype(int)
                  - color_clip(12, 16, 16, shift=1)[::2].astype(int)).max() <= TOLERANCE


def test_class_caption_names():
    assert prepare.class_caption("ApplyEyeMakeup") == "apply eye makeup"
    assert prepare.class_caption("YoYo") == "yo yo"
    assert prepare.class_caption("playing_daf") == "playing daf"
    assert prepare.class_caption("HTMLParser-2") == "html parser 2"


def test_jsonl_manifest_and_all_bad_fails_with_summary(tmp_path):
    root = str(tmp_path / "v")
    os.makedirs(root)
    write_video(os.path.join(root, "a.mp4"), color_clip(10))
    with open(os.path.join(root, "b.mp4"), "wb") as f:
        f.write(b"\x00" * 100)
    manifest = os.path.join(root, "m.jsonl")
    with open(manifest, "wb") as f:
        f.write(b'{"path": "a.mp4", "captions": ["first one", "second one"]}\n'
                b"{not json}\n"
                b'{"path": "b.mp4", "caption": "bad file"}\n'
                b'{"path": "a.mp4", "caption": "\xff\xfe"}\n')
    info = prepare.prepare(base_config(root, str(tmp_path / "o"), captions=manifest))
    assert info["captions"]["values"] == ["first one", "second one"]
    assert info["skipped"]["by_reason"] == {"bad_manifest_row": 1, "bad_caption_encoding": 1,
                                            "corrupt": 1}

    bad = str(tmp_path / "bad")
    os.makedirs(bad)
    with open(os.path.join(bad, "x.mp4"), "wb") as f:
        f.write(b"garbage" * 50)
    write_video(os.path.join(bad, "tiny.avi"), color_clip(2))
    with pytest.raises(prepare.NoUsableDataError, match="corrupt: 1.*\n.*too_short: 1|"
                                                        "too_short: 1.*\n.*corrupt: 1"):
        prepare.prepare(base_config(bad, str(tmp_path / "bad_out")))
    # The report is still written for inspection.
    with open(tmp_path / "bad_out" / "dataset_info.json") as f:
        assert json.load(f)["skipped"]["total"] == 2


def test_bad_options_are_rejected(tmp_path):
    for kw, match in ((dict(clip_frames=-1), "clip_frames"), (dict(image_format="gif"),
                                                               "image_format"),
                      (dict(captions="x.csv", class_folders=True), "either"),
                      (dict(workers=0), "workers"), (dict(short_videos="pad"), "short_videos")):
        with pytest.raises(prepare.PrepareError, match=match):
            prepare.prepare(base_config(str(tmp_path), str(tmp_path / "o"), **kw))


def test_gfile_output_to_ram_filesystem(corpus):
    root, _ = corpus
    out = "ram://tfvideogen_prepare_test/out"
    info = prepare.prepare(base_config(root, out, captions=os.path.join(root, "captions.csv"),
                                       videos_per_shard=2))
    assert info["num_examples"] == 4
    files = tf.io.gfile.glob(out + "/*.tfrecord")
    assert len(files) == len(info["shards"]) >= 2
    assert sorted(r["source"] for r in read_records(out + "/*.tfrecord")) == [
        "colors.mp4", "gray.mkv", "odd.mkv", "wide.avi"]
    assert tf.io.gfile.exists(out + "/dataset_info.json")
    # ... and the reader takes the same gfile URI.
    from tfvideogen import data

    reader = data.get(f"tfrecord:{out}/*.tfrecord")
    assert "odd" in reader.vocabulary()
    batch = next(iter(data.batched(data.load(f"tfrecord:{out}/*.tfrecord", frames=4, height=8,
                                             width=8, shuffle_buffer=4), 2)))
    assert batch["video"].shape == (2, 4, 8, 8, 3)


@pytest.mark.slow  # two processes importing TensorFlow
def test_command_line(corpus, tmp_path):
    root, _ = corpus
    out = str(tmp_path / "cli")
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "prepare_data.py"), f"--input={root}",
         f"--output_dir={out}", f"--captions={os.path.join(root, 'captions.csv')}",
         "--clip_frames=8", "--size=32", "--workers=2", "--noprogress"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done: 4 clips from 4 videos" in proc.stdout
    assert "skipped 10" in proc.stdout
    proc = subprocess.run([sys.executable, os.path.join(REPO, "prepare_data.py"),
                           f"--input={root}", f"--output_dir={out}", "--clip_frames=4"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "other options" in proc.stderr
