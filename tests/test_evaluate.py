"""evaluate.py and `tfvideogen.metrics.evaluate`: logs, plots, sources, end to end."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfvideogen.metrics import classifier as classifier_lib
from tfvideogen.metrics import evaluate as evaluate_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A judge that trains in seconds (its accuracy is not what these tests check).
QUICK_JUDGE = classifier_lib.ClassifierConfig(steps=30, batch_size=16, eval_examples=32,
                                              feature_dim=16)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


# --------------------------------------------------------------------------- #
# TensorBoard scalars and the curves plot.


def _write_logs(logdir: str) -> None:
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for step in (10, 20, 30):
            tf.summary.scalar("d_loss", 2.0 / step, step=step)
            tf.summary.scalar("g_loss", float(step), step=step)
        tf.summary.text("notes", "not a scalar", step=10)
        tf.summary.write("samples", tf.constant(["2", "2", "gifbytes"]), step=10)
    writer.close()
    # A resumed run logs step 30 again: the later value wins.
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        time.sleep(0.01)
        tf.summary.scalar("g_loss", -1.0, step=30)
    writer.close()
    sub = tf.summary.create_file_writer(os.path.join(logdir, "eval"))
    with sub.as_default():
        tf.summary.scalar("train/caption_accuracy", 0.5, step=30)
    sub.close()


def test_read_scalars(tmp_path):
    logdir = str(tmp_path / "logs")
    _write_logs(logdir)
    series = evaluate_lib.read_scalars(logdir)
    assert list(series) == ["d_loss", "g_loss", "eval/train/caption_accuracy"]
    assert series["d_loss"] == [(10, pytest.approx(0.2)), (20, pytest.approx(0.1)),
                                (30, pytest.approx(2 / 30))]
    assert series["g_loss"] == [(10, 10.0), (20, 20.0), (30, -1.0)]
    assert series["eval/train/caption_accuracy"] == [(30, 0.5)]
    assert evaluate_lib.read_scalars(str(tmp_path / "missing")) == {}


def test_plot_curves_draws_every_series(tmp_path):
    path = str(tmp_path / "curves.png")
    series = {"d_loss": [(0, 1.0), (10, 0.5), (20, 0.25)], "g_loss": [(5, 3.0)],
              "bad": [(1, float("nan")), (2, float("nan"))], "c": [(1, 1.0), (2, 2.0)]}
    evaluate_lib.plot_curves(series, path, columns=2, panel=(200, 120))
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (240, 400, 3)  # 4 panels in 2 x 2
    line = np.all(img == (31, 119, 180), axis=-1)
    # Every panel with finite values has line pixels; the all-NaN one has none.
    panels = {(0, 0): True, (0, 1): True, (1, 0): False, (1, 1): True}
    for (r, c), has_line in panels.items():
        assert line[r * 120:(r + 1) * 120, c * 200:(c + 1) * 200].any() == has_line, (r, c)
    # The decreasing d_loss line falls from left to right.
    ys, xs = np.nonzero(line[:120, :200])
    assert np.mean(ys[xs < np.median(xs)]) < np.mean(ys[xs > np.median(xs)])
    assert not os.path.exists(path + ".tmp")
    with pytest.raises(ValueError, match="no scalar"):
        evaluate_lib.plot_curves({}, path)


# --------------------------------------------------------------------------- #
# Config validation.


def test_eval_config_validation():
    with pytest.raises(ValueError, match="exactly one"):
        evaluate_lib.EvalConfig().validate()
    with pytest.raises(ValueError, match="exactly one"):
        evaluate_lib.EvalConfig(model_dir="a", saved_model="b").validate()
    with pytest.raises(ValueError, match="out_dir is required"):
        evaluate_lib.EvalConfig(saved_model="b", dataset="moving_shapes").validate()
    with pytest.raises(ValueError, match="dataset is required"):
        evaluate_lib.EvalConfig(saved_model="b", out_dir="o").validate()
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_lib.EvalConfig(model_dir="a", num_samples=0).validate()
    with pytest.raises(ValueError, match="fvd_splits"):
        evaluate_lib.EvalConfig(model_dir="a", fvd=True, splits=("heldout",)).validate()
    with pytest.raises(ValueError, match="use_ema=False needs model_dir"):
        evaluate_lib.EvalConfig(saved_model="b", out_dir="o", dataset="moving_shapes",
                                use_ema=False).validate()
    with pytest.raises(ValueError, match="truncation needs model_dir"):
        evaluate_lib.EvalConfig(saved_model="b", out_dir="o", dataset="moving_shapes",
                                truncation=0.5).validate()
    with pytest.raises(ValueError, match="truncation must be in"):
        evaluate_lib.EvalConfig(model_dir="a", truncation=1.5).validate()
    evaluate_lib.EvalConfig(model_dir="a").validate()
    evaluate_lib.EvalConfig(model_dir="a", truncation=0.5).validate()


# --------------------------------------------------------------------------- #
# End to end on the session's tiny run, as a run and as a SavedModel.


def _export_serving_default(task, path: str) -> str:
    """A SavedModel with the exporter's serving contract: text [B], seed [B] -> video uint8."""
    import keras

    from tfvideogen.models import latents_from_seeds, to_uint8

    archive = keras.export.ExportArchive()
    archive.track(task)

    def serve(text, seed):
        z = latents_from_seeds(seed, task.z_dim)
        video = task.sampler(z, task.text_encoder(text, training=False), training=False)
        return {"video": to_uint8(video)}

    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([None], tf.string, name="text"),
        tf.TensorSpec([None], tf.int64, name="seed")])
    archive.write_out(path)
    return path


@pytest.fixture(scope="module")
def judge_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("judge_cache"))


@pytest.fixture(scope="module")
def run_metrics(tiny_run_dir, judge_cache, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("eval_run"))
    cfg = evaluate_lib.EvalConfig(model_dir=tiny_run_dir, out_dir=out, num_samples=24,
                                  batch_size=16, diversity_captions=2, diversity_seeds=3,
                                  classifier_dir=judge_cache, classifier=QUICK_JUDGE,
                                  grid_captions=4, write_summaries=False)
    return evaluate_lib.evaluate(cfg, log=lambda *_: None)


@pytest.mark.slow
def test_evaluate_run_writes_consistent_reports(run_metrics):
    m = run_metrics
    out = m["out_dir"]
    assert set(os.listdir(out)) == {"metrics.json", "report.md", "samples.gif", "curves.png"}
    with open(os.path.join(out, "metrics.json")) as f:
        stored = json.load(f)
    assert stored["splits"].keys() == {"train", "heldout"}
    assert stored["source"]["kind"] == "run" and stored["source"]["step"] == 2
    for split, r in stored["splits"].items():
        acc = r["caption_accuracy"]
        assert set(acc) == {"color", "shape", "motion", "all_correct"}
        assert all(0.0 <= v <= 1.0 for v in acc.values())
        assert acc["all_correct"] <= min(acc["color"], acc["shape"], acc["motion"])
        assert r["frechet_classifier_distance"] >= 0.0
        assert r["frechet_classifier_distance_real_floor"] >= 0.0
        assert r["samples"] == 24 and "fvd" not in r
        assert r["real_split"] == ("validation" if split == "train" else "heldout")
        assert len(r["diversity"]["per_caption"]) == 2
        conf = r["confusion"]
        assert [len(conf[h]) for h in ("color", "shape", "motion")] == [7, 3, 2]
        assert all(sum(map(sum, m)) == 24 for m in conf.values())
        assert sum(conf["shape"][i][i] for i in range(3)) == round(24 * acc["shape"])
        assert "word_head" not in r  # the tiny run's D has no word head
        objects = r["objects"]
        assert len(objects["area_ratio"]) == len(objects["real_area"]) == 4
        assert objects["real_components_mean"] == pytest.approx(1.0, abs=0.1)
    # The sample grid: 4 captions x 2 seeds of 4 frames, upscaled 6x (16 px -> 96 px).
    gif = iio.imread(os.path.join(out, "samples.gif"))
    assert gif.shape[0] == 4 and gif.shape[1:] == ((2 * 17 - 1) * 6, (4 * 17 - 1) * 6, 3)
    assert stored["samples"]["columns"][:2] != stored["samples"]["columns"][2:]
    curves = Image.open(os.path.join(out, "curves.png"))
    assert curves.format == "PNG" and curves.size[0] > 0
    assert {"d_loss", "g_loss"} <= set(stored["curves"]["tags"])
    with open(os.path.join(out, "report.md")) as f:
        report = f.read()
    for text in ("## Caption accuracy", "## Fréchet classifier distance", "**Not FVD**",
                 "## Diversity", "## FVD", "![samples](samples.gif)",
                 "![curves](curves.png)", "| color |", "## Objects per frame"):
        assert text in report, text
    acc = stored["splits"]["heldout"]["caption_accuracy"]["color"]
    assert f"{100 * acc:.1f}%" in report
    # The 30-step judge is weak, and the report says so when it is.
    weakest = min(r["real_caption_accuracy"]["all_correct"] for r in stored["splits"].values())
    assert ("**Warning**: the judge" in report) == (weakest < evaluate_lib.JUDGE_MIN_ACCURACY)


@pytest.mark.slow
def test_saved_model_gives_the_same_numbers_as_the_run(run_metrics, tiny_run_dir, judge_cache,
                                                       tmp_path):
    source = evaluate_lib.RunSource(tiny_run_dir)
    export_dir = _export_serving_default(source.task, str(tmp_path / "export" / "1"))
    saved = evaluate_lib.SavedModelSource(str(tmp_path / "export"))  # highest version
    assert saved.path == export_dir and saved.video_shape == (4, 16, 16, 3)
    captions = ["a red square is moving up and down", "a blue circle is moving left and right"]
    seeds = np.array([3, 11])
    np.testing.assert_array_equal(saved.generate(captions, seeds),
                                  source.generate(captions, seeds))
    cfg = evaluate_lib.EvalConfig(saved_model=str(tmp_path / "export"),
                                  dataset="moving_shapes", out_dir=str(tmp_path / "eval"),
                                  num_samples=24, batch_size=16, diversity_captions=2,
                                  diversity_seeds=3, classifier_dir=judge_cache,
                                  classifier=QUICK_JUDGE, grid_captions=4)
    m = evaluate_lib.evaluate(cfg, log=lambda *_: None)
    assert m["source"]["kind"] == "saved_model" and m["curves"] is None
    assert m["source"]["truncation"] == 1.0  # no tfvideogen.json: served untruncated
    assert not os.path.exists(str(tmp_path / "eval" / "curves.png"))
    for split in ("train", "heldout"):
        a, b = m["splits"][split], run_metrics["splits"][split]
        assert a["caption_accuracy"] == b["caption_accuracy"]
        assert a["frechet_classifier_distance"] == pytest.approx(
            b["frechet_classifier_distance"], rel=1e-5)
        assert a["diversity"]["mean_ratio"] == pytest.approx(b["diversity"]["mean_ratio"])


def test_run_source_judges_the_raw_generator_on_request(tiny_run_dir):
    ema = evaluate_lib.RunSource(tiny_run_dir)
    raw = evaluate_lib.RunSource(tiny_run_dir, use_ema=False)
    assert (ema.describe()["generator"], raw.describe()["generator"]) == ("ema", "generator")
    captions, seeds = ["a red square is moving up and down"] * 2, np.array([3, 4])
    np.testing.assert_array_equal(raw.generate(captions, seeds),
                                  raw.task.generate(captions, seeds, use_ema=False))
    assert not np.array_equal(raw.generate(captions, seeds), ema.generate(captions, seeds))


def test_saved_model_source_rejects_other_contracts(tmp_path):
    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, prompt):
            return {"video": tf.zeros([tf.shape(prompt)[0], 2, 4, 4, 3], tf.uint8)}

    module = Wrong()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    with pytest.raises(ValueError, match="text and seed"):
        evaluate_lib.SavedModelSource(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="numeric version"):
        evaluate_lib.SavedModelSource(str(tmp_path / "variables"))


@pytest.mark.slow
def test_evaluate_cli_end_to_end(tiny_run_dir, judge_cache, tmp_path):
    out = str(tmp_path / "cli")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--model_dir={tiny_run_dir}",
         f"--out_dir={out}", "--num_samples=16", "--diversity_captions=2",
         "--diversity_seeds=2", "--grid_captions=2", f"--classifier_dir={judge_cache}",
         "--classifier_steps=20", "--nowrite_summaries"],
        capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train/caption_accuracy:" in proc.stdout and "report:" in proc.stdout
    assert {"metrics.json", "report.md", "samples.gif", "curves.png"} <= set(os.listdir(out))
    # A judge with other settings was trained into the shared cache, next to the first.
    assert len([d for d in os.listdir(judge_cache) if d.startswith("classifier-")]) >= 1


def test_evaluate_cli_fails_fast_on_missing_fvd_module(tiny_run_dir, tmp_path):
    env = {**_env(), "TFHUB_CACHE_DIR": str(tmp_path / "empty")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--model_dir={tiny_run_dir}",
         f"--out_dir={tmp_path / 'out'}", "--fvd"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "not available offline" in proc.stderr and "TFHUB_CACHE_DIR" in proc.stderr
    assert not os.path.exists(tmp_path / "out")  # failed before any work
    assert time.perf_counter() - t0 < 120


def test_value_words_and_verdicts_by_hand():
    from tfvideogen.metrics import word_head

    vocab = ["a", "and", "blue", "down", "left", "red", "right", "up"]
    words = word_head.value_words({"color": ("red", "blue"),
                                   "motion": ("left and right", "up and down")}, vocab)
    # "and" is in both motions, so it says nothing about either.
    assert words == {"color": [[5], [2]], "motion": [[4, 6], [3, 7]]}
    logits = np.zeros([3, 8], np.float32)
    logits[0, [2, 4, 6]] = 1.0                 # blue; left and right
    logits[1, [5, 3]], logits[1, 7] = 2.0, -3  # red; down +2, up -3: mean -0.5 < 0
    logits[2, [1, 5]] = 9.0, -1.0              # "and" alone decides nothing; blue
    got = word_head.verdicts(logits, words)
    np.testing.assert_array_equal(got["color"], [1, 0, 1])
    np.testing.assert_array_equal(got["motion"], [0, 0, 0])
    with pytest.raises(ValueError, match=r"color='green': its own words \['green'\] are not"):
        word_head.value_words({"color": ("red", "green")}, vocab)
    with pytest.raises(ValueError, match=r"must be \[B, V\]"):
        word_head.verdicts(logits[None], words)


def test_word_head_is_read_only_where_its_words_say_something():
    from tfvideogen import data

    class Stub:  # a run whose D has one word head over `vocab`
        word_heads = ["video"]

        def __init__(self, vocab):
            self.vocab, self.calls = vocab, 0

        def vocabulary(self):
            return self.vocab

        def word_logits(self, videos):
            self.calls += 1
            return np.eye(3, dtype=np.float32)[None, :len(videos)]

    shapes = data.get("moving_shapes")
    clips, labels, logs = np.zeros([2, 1]), {"shape": np.array([0, 2])}, []
    heads = {"shape": ("square", "circle", "triangle")}
    stub = Stub(["square", "circle", "triangle"])
    got = evaluate_lib._word_head_accuracy(stub, shapes, heads, labels, clips, clips, logs.append)
    assert got == {"video": {k: {"shape": 0.5, "all_correct": 0.5}
                             for k in ("real", "generated")}}
    # With a memo (a truncation curve), the real clips are read once per key.
    memo, stub.calls = {}, 0
    for _ in range(3):
        again = evaluate_lib._word_head_accuracy(stub, shapes, heads, labels, clips, clips,
                                                 logs.append, memo, ("train",))
        assert again == got
    assert stub.calls == 1 + 3 and list(memo) == [("train",)]
    # Two objects per caption: "red" may be either object's, so nothing is read.
    two = {**heads, "shape_2": heads["shape"]}
    assert evaluate_lib._word_head_accuracy(stub, shapes, two, labels, clips, clips) == {}
    # A value without a word of its own in the head's vocabulary: skipped, and said.
    short = Stub(["square", "circle"])
    assert evaluate_lib._word_head_accuracy(short, shapes, heads, labels, clips, clips,
                                            logs.append) == {}
    assert short.calls == 0 and "triangle" in logs[-1]


@pytest.mark.slow
def test_evaluate_reads_a_runs_word_head_as_a_judge(judge_cache, tmp_path):
    from tests.conftest import tiny_config
    from tfvideogen import training

    run = str(tmp_path / "run")
    training.train(tiny_config("model.discriminator.word_head=true",
                               "model.discriminator.frame_frames=2", "train.steps=1"), run)
    source = evaluate_lib.RunSource(run)
    assert source.word_heads == ["video", "frame"]
    cfg = evaluate_lib.EvalConfig(model_dir=run, out_dir=str(tmp_path / "eval"), num_samples=8,
                                  diversity_captions=0, classifier_dir=judge_cache,
                                  classifier=QUICK_JUDGE, grid_captions=2, write_summaries=False)
    m = evaluate_lib.evaluate(cfg, source=source, log=lambda *_: None)
    for r in m["splits"].values():
        assert set(r["word_head"]) == {"video", "frame"}
        for head in r["word_head"].values():
            for acc in (head["real"], head["generated"]):
                assert set(acc) == {"color", "shape", "motion", "all_correct"}
                assert 0.0 <= acc["all_correct"] <= min(acc["color"], acc["shape"],
                                                        acc["motion"]) <= 1.0
    # The word logits of uint8 clips are D's on [-1, 1] clips, whatever the text.
    clips = np.random.default_rng(0).integers(0, 256, [2, *source.video_shape], np.uint8)
    disc = source.task.discriminator
    text = source.task.text_encoder(tf.constant(["a red square is moving up and down"] * 2))
    _, features = disc(tf.constant(clips / 127.5 - 1, tf.float32), text, return_features=True)
    np.testing.assert_allclose(source.word_logits(clips), disc.word_logits(features),
                               rtol=1e-5, atol=1e-5)
    with open(os.path.join(m["out_dir"], "report.md")) as f:
        report = f.read()
    assert "## The run's discriminator word head, read as a judge" in report
    assert "| frame | shape |" in report


def test_run_source_truncates_on_request(tiny_run_dir):
    full = evaluate_lib.RunSource(tiny_run_dir)
    half = evaluate_lib.RunSource(tiny_run_dir, truncation=0.5)
    assert (full.describe()["truncation"], half.describe()["truncation"]) == (1.0, 0.5)
    captions, seeds = ["a red square is moving up and down"] * 2, np.array([3, 4])
    np.testing.assert_array_equal(half.generate(captions, seeds),
                                  half.task.generate(captions, seeds, truncation=0.5))
    assert not np.array_equal(half.generate(captions, seeds), full.generate(captions, seeds))


@pytest.mark.slow
def test_truncation_curve_evaluates_each_psi_from_one_load(run_metrics, tiny_run_dir,
                                                           judge_cache, tmp_path, monkeypatch):
    calls = collections.Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for module, name in ((evaluate_lib.classifier_lib, "load_or_train"),
                         (evaluate_lib.classifier_lib, "real_clips"),
                         (evaluate_lib.diversity_lib, "real_clips_by_caption")):
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    source = evaluate_lib.RunSource(tiny_run_dir)
    cfg = evaluate_lib.EvalConfig(model_dir=tiny_run_dir, out_dir=str(tmp_path / "curve"),
                                  num_samples=24, batch_size=16, diversity_captions=2,
                                  diversity_seeds=3, classifier_dir=judge_cache,
                                  classifier=QUICK_JUDGE, grid_captions=4,
                                  write_summaries=False)
    curve = evaluate_lib.evaluate_truncations(cfg, [1.0, 0.5], source=source,
                                              log=lambda *_: None)
    out = curve["out_dir"]
    assert {"psi_1", "psi_0.5", "truncation.json", "truncation.md"} <= set(os.listdir(out))
    assert source.truncation == 1.0  # restored
    assert [r["truncation"] for r in curve["rows"]] == [1.0, 0.5]
    # What does not depend on psi is built once: the judge, and per split (2) the
    # real clips, their floor sample and the diversity reference.
    assert calls == {"load_or_train": 1, "real_clips": 4, "real_clips_by_caption": 2}
    full, half = curve["rows"]
    # psi = 1 is the plain evaluation; each row repeats its own report's numbers.
    for split in ("train", "heldout"):
        assert full["splits"][split]["caption_accuracy"] == \
            run_metrics["splits"][split]["caption_accuracy"]
    with open(os.path.join(out, "psi_0.5", "metrics.json")) as f:
        stored = json.load(f)
    assert stored["source"]["truncation"] == 0.5
    for split, r in half["splits"].items():
        assert r["caption_accuracy"] == stored["splits"][split]["caption_accuracy"]
        assert r["diversity_ratio"] == pytest.approx(
            stored["splits"][split]["diversity"]["mean_ratio"])
    # Truncated latents give other videos, so other features.
    assert half["splits"]["train"]["frechet_classifier_distance"] != \
        full["splits"]["train"]["frechet_classifier_distance"]
    with open(os.path.join(out, "truncation.md")) as f:
        report = f.read()
    acc = half["splits"]["heldout"]["caption_accuracy"]["all_correct"]
    assert f"| [0.5](psi_0.5/report.md) | heldout | {100 * acc:.1f}% |" in report
    assert "| psi | split | all correct | color | shape | motion |" in report


def test_truncation_curve_rejects_bad_values_before_loading(tmp_path):
    cfg = evaluate_lib.EvalConfig(model_dir=str(tmp_path / "no_run"))
    for values, match in (([0.5], "at least two"), ([1.0, 0.5, 1.0], "repeat"),
                          ([1.0, 1.5], "truncation must be in")):
        with pytest.raises(ValueError, match=match):
            evaluate_lib.evaluate_truncations(cfg, values)
    saved = evaluate_lib.EvalConfig(saved_model=str(tmp_path), out_dir=str(tmp_path / "o"),
                                    dataset="moving_shapes")
    with pytest.raises(ValueError, match="truncation needs model_dir"):
        evaluate_lib.evaluate_truncations(saved, [1.0, 0.5])


@pytest.mark.parametrize("value, message", [("1,half", "--truncation takes numbers"),
                                            ("1,0.5,1", "truncation values repeat")])
def test_evaluate_cli_rejects_a_bad_truncation(tmp_path, value, message):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--model_dir={tmp_path}",
         f"--truncation={value}"], capture_output=True, text=True, env=_env(), timeout=300)
    # A usage error (absl: exit 1, the flags' help, the message), before any load.
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
    assert "--truncation:" in proc.stderr
