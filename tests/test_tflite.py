"""TFLite conversion (#6): variants, builtin ops, parity, report, text sidecar, runtime.

Error bounds (uint8 levels vs the SavedModel's `generate_from_embedding`), measured on
the 2-step tiny run (4x16x16 video) over 32 random (z, caption) pairs:

| variant      | measured max / PSNR  | asserted              |
|--------------|----------------------|-----------------------|
| float32      | 1 / 93 dB (0.003 %)  | max <= 1, < 0.1 % off |
| float16      | 1 / 65 dB            | max <= 3, >= 50 dB    |
| dynamic_int8 | 4 / 53 dB            | max <= 12, >= 40 dB   |
| full_int8    | 71-123 / 16.8-16.9 dB| >= 15 dB (partial)    |
| mixed_int8   | 20-23 / 35-40 dB     | max <= 48, >= 28 dB   |

For scale: the same model with the latents of other seeds is at 13.7 dB, with
other captions' embeddings at 46 dB (a 2-step model barely uses the text).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf

from tfvideogen import data, export, models
from tfvideogen.export import text_sidecar, tflite
from tfvideogen.export.text_sidecar import TextSidecar, Tokenizer
from tfvideogen.export.tflite_runtime import TFLiteTextToVideo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTIONS = ["a red square is moving up and down", "a blue circle is moving left and right",
            "a green triangle is moving left and right"]
# name -> (max levels, min PSNR dB); see the module docstring.
BOUNDS = {"float32": (1, None), "float16": (3, 50.0), "dynamic_int8": (12, 40.0),
          "full_int8": (255, 15.0), "mixed_int8": (48, 28.0)}
# Tokeniser edge cases: case, punctuation, whitespace kinds, apostrophes, digits,
# non-ASCII (incl. the Kelvin sign Python would lowercase to k), OOV, too many words,
# bytes that are not valid UTF-8.
TRICKY = ["a red square", "A RED Square!!", "  red\tblue\ncircle  ", "it's a 7-sided thing",
          "it\u2019s red", "\u00dcn\u00efcode red \u212a k", "\u0130 red \u0131",
          "red,blue;green.yellow", "zebra quantum", "red " * 10, "'' red ''",
          "na\u00efve caf\u00e9", "RED-BLUE", "\u00a0red\u2003blue", "\uff32\uff25\uff24 red",
          "red\x00blue", b"\xff\xfe red", b"a\xffb red", b"\xc3( red", b"\xe9t\xe9 red",
          b"caf\xc3\xa9\xff red", b"\xed\xa0\x80 red", b"\xf0\x9f\x98\x80red\xf0\x9f"]


@pytest.fixture(scope="module")
def saved_model(tiny_run_dir, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("tfl_export") / "tfvideogen")
    return export.export_run(tiny_run_dir, base, warmup=False, verify=False)


@pytest.fixture(scope="module")
def loaded(saved_model):
    return tf.saved_model.load(saved_model)


@pytest.fixture(scope="module")
def converted(saved_model, tmp_path_factory):
    """Every variant, converted in the worker process (the default path)."""
    out = str(tmp_path_factory.mktemp("tflite"))
    report = tflite.convert(saved_model, out, num_eval=3, num_representative=16, latency_runs=5)
    return out, report


def _read(*parts: str) -> str:
    with open(os.path.join(*parts)) as f:
        return f.read()


def _runner(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=path).get_signature_runner(tflite.SIGNATURE)


def _reference(loaded, z, emb):
    return loaded.signatures[tflite.SIGNATURE](z=tf.constant(z),
                                               text_embedding=tf.constant(emb))["video"].numpy()


def _embed(loaded, captions):
    return loaded.signatures["embed_text"](text=tf.constant(captions))["text_embedding"].numpy()


# --------------------------------------------------------------------------- #
# Fast: tokenizer, helpers, configuration.

def test_python_tokenizer_gives_the_encoders_ids():
    vocab = data.get("moving_shapes").vocabulary() + ["it's", "7"]
    encoder = models.TextEncoder(vocab, max_tokens=6, name="te")
    tokenizer = Tokenizer(tuple(vocab), 6)
    expected = encoder.tokenize(tf.constant(TRICKY)).numpy()
    got = tokenizer.ids(TRICKY)
    assert got.dtype == np.int32 and got.shape == (len(TRICKY), 6)
    for caption, want, have in zip(TRICKY, expected, got):
        np.testing.assert_array_equal(have, want, err_msg=repr(caption))
    assert got[0].tolist() == [2 + vocab.index("a"), 2 + vocab.index("red"),
                               2 + vocab.index("square"), 0, 0, 0]
    assert got[8].tolist()[:2] == [text_sidecar.OOV_ID] * 2  # zebra quantum
    for empty in ["", " ,. ", "\u212a"]:  # no word left after normalisation
        with pytest.raises(ValueError, match="empty after normalisation"):
            tokenizer.ids([empty])
        with pytest.raises(tf.errors.InvalidArgumentError, match="empty caption"):
            encoder.tokenize(tf.constant([empty]))


def test_tokenizer_validates_and_round_trips_through_files(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        Tokenizer(("a", "a"), 4)
    with pytest.raises(ValueError, match="max_tokens"):
        Tokenizer(("a",), 0)
    tokenizer = Tokenizer(("a", "red", "square"), 5)
    text_sidecar.write_vocabulary(str(tmp_path), tokenizer)
    assert (tmp_path / "vocabulary.txt").read_text().split("\n")[:3] == ["a", "red", "square"]
    again = Tokenizer.load(str(tmp_path))
    assert again == tokenizer
    np.testing.assert_array_equal(again.ids(["A red, red square"]), [[2, 3, 3, 4, 0]])


def test_summarize_error_drops_mlir_noise():
    raw = ("ConverterError: Variable constant folding is failed.<unknown>:0: error: "
           "loc(callsite(fused[\"TensorListReserve:\", \"x@f\"] at fused[\"a\", \"b\"])): "
           "'tf.TensorListReserve' op requires element_shape to be static\n"
           "<unknown>:0: note: loc(fused[\"a\"]): called from\n")
    assert tflite.summarize_error(raw) == (
        "'tf.TensorListReserve' op requires element_shape to be static")
    strict = ("RuntimeError: Quantization not yet supported for op: 'SQUARE'.\n"
              "Quantization not yet supported for op: 'CONV_3D'.\n"
              "Quantization not yet supported for op: 'SQUARE'.\n")
    assert tflite.summarize_error(strict) == (
        "quantization not yet supported for op(s) SQUARE, CONV_3D")


def test_config_validation_and_cli_variants():
    with pytest.raises(ValueError, match="saved_model is required"):
        tflite.TFLiteConfig(out_dir="x").validate()
    with pytest.raises(ValueError, match="unknown variant.*int4.*valid: float32"):
        tflite.TFLiteConfig(saved_model="m", out_dir="x", variants=("int4",)).validate()
    with pytest.raises(ValueError, match="repeat"):
        tflite.check_variants(["float32", "float32"])
    with pytest.raises(ValueError, match="latency_runs must be >= 1"):
        tflite.TFLiteConfig(saved_model="m", out_dir="x", latency_runs=0).validate()
    # The entry point repeats the variant list (importing the library loads TF).
    tree = ast.parse(_read(ROOT, "export", "tflite.py"))
    values = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              and getattr(node.targets[0], "id", "") == "VARIANTS"]
    assert values == [tflite.VARIANTS]


def test_psnr_and_spread():
    a = np.zeros((2, 3), np.uint8)
    assert tflite.psnr(a, a) == float("inf")
    b = a.copy()
    b[0, 0] = 255  # MSE = 255^2 / 6
    assert tflite.psnr(a, b) == pytest.approx(10 * np.log10(6))
    assert tflite.spread(["a", "b", "c", "d", "e", "f"], 3) == ["a", "c", "e"]
    assert tflite.spread(["a", "b"], 3) == ["a", "b", "a"]


# --------------------------------------------------------------------------- #
# The conversion of the tiny run (one worker-process conversion for the module).

@pytest.mark.slow
def test_every_variant_converts_to_builtin_ops_only(converted):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    out, report = converted
    builtin_names = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")}
    assert list(report["variants"]) == list(tflite.VARIANTS)
    for name, entry in report["variants"].items():
        expected = ("ok", "partial") if name == "full_int8" else ("ok",)
        assert entry["status"] in expected, (name, entry["reason"])
        path = os.path.join(out, tflite.model_file(name))
        assert entry["file"] == os.path.basename(path)
        assert os.path.getsize(path) == entry["size_bytes"] > 0
        with open(path, "rb") as f:
            ops = tflite.model_ops(f.read(), tflite.SIGNATURE)
        assert ops["non_builtin_ops"] == [] and entry["non_builtin_ops"] == []
        assert not [op for op in ops["ops"] if op.startswith("Flex") or op not in builtin_names]
        interpreter = Interpreter(model_path=path)  # also from the interpreter's own view
        assert {d["op_name"] for d in interpreter._get_ops_details()} <= builtin_names
        assert interpreter.get_signature_list()[tflite.SIGNATURE] == {
            "inputs": ["text_embedding", "z"], "outputs": ["video"]}  # sorted by name!
    sizes = {k: v["size_bytes"] for k, v in report["variants"].items()}
    assert sizes["float16"] < sizes["float32"] and sizes["dynamic_int8"] < sizes["float32"]
    assert report["variants"]["float32"]["compute"]["int8"] == 0
    assert report["variants"]["dynamic_int8"]["compute"]["hybrid"] >= 1  # int8 weights used


@pytest.mark.slow
def test_mixed_int8_keeps_only_the_uint8_tail_and_3d_convs_in_float(converted):
    out, report = converted
    with open(os.path.join(out, "generator_float32.tflite"), "rb") as f:
        tail = tflite.uint8_tail(f.read())
    assert 3 <= len(tail) <= 8  # add 1, scale, clip, round, cast
    full, mixed = report["variants"]["full_int8"], report["variants"]["mixed_int8"]
    assert mixed["status"] == "ok" and mixed["full_integer"] is False
    assert mixed["compute"]["int8"] > 0
    assert {"ADD", "MUL"} <= set(mixed["float_ops"])  # (x + 1) * 127.5 in float32 ...
    assert not {"ADD", "MUL"} & set(full["float_ops"])  # ... which full_int8 quantizes
    assert mixed["psnr_db"] > full["psnr_db"] + 10  # and that is most of full_int8's error


@pytest.mark.slow
def test_full_int8_reports_why_it_is_not_full_integer(converted):
    _, report = converted
    entry = report["variants"]["full_int8"]
    assert entry["converter"]["supported_ops"] == ["TFLITE_BUILTINS_INT8"]
    assert entry["converter"]["representative_samples"] == 16
    assert entry["compute"]["int8"] > 0  # a real share of the graph is integer
    if entry["status"] == "partial":  # TF 2.17: no int8 kernels for the 3D convolutions
        assert entry["full_integer"] is False and entry["float_ops"]
        assert {"CONV_3D", "CONV_3D_TRANSPOSE"} & set(entry["float_ops"])
        assert "not full-integer" in entry["reason"]
        assert "Quantization not yet supported for op" in entry["strict_quantizer_error"]
    else:
        assert entry["full_integer"] is True and not entry["float_ops"]


@pytest.mark.slow
def test_variants_match_the_saved_model_within_their_bounds(converted, loaded):
    out, _ = converted
    captions = data.get("moving_shapes").captions("heldout")[:5]
    emb = _embed(loaded, captions)
    z = np.random.default_rng(7).standard_normal((5, 8)).astype(np.float32)
    reference = _reference(loaded, z, emb)
    for name, (max_levels, min_psnr) in BOUNDS.items():
        runner = _runner(os.path.join(out, tflite.model_file(name)))
        video = runner(z=z, text_embedding=emb)["video"]  # by name, a batch of 5
        assert video.dtype == np.uint8 and video.shape == reference.shape, name
        rows = np.concatenate([runner(z=z[i:i + 1], text_embedding=emb[i:i + 1])["video"]
                               for i in range(5)])
        np.testing.assert_array_equal(rows, video, err_msg=name)  # batch-independent rows
        diff = np.abs(video.astype(int) - reference.astype(int))
        assert diff.max() <= max_levels, (name, diff.max())
        if min_psnr is not None:
            assert tflite.psnr(video, reference) >= min_psnr, (name, tflite.psnr(video, reference))
        if name == "float32":
            assert np.mean(diff > 0) < 1e-3
    # The bounds mean something: the float32 model with another caption's embedding fails.
    wrong = _runner(os.path.join(out, "generator_float32.tflite"))(
        z=z, text_embedding=emb[::-1].copy())["video"]
    assert np.abs(wrong.astype(int) - reference.astype(int)).max() > BOUNDS["float32"][0]


@pytest.mark.slow
def test_report_json_and_markdown(converted, saved_model, loaded):
    out, report = converted
    with open(os.path.join(out, tflite.REPORT_JSON)) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    assert report["saved_model"] == os.path.abspath(saved_model)
    assert report["video_shape"] == [4, 16, 16, 3] and report["z_dim"] == 8
    assert report["dataset"] == "moving_shapes"  # found through the export's source run
    assert report["truncation"] == 1.0  # the export's, for the runtime's seed -> z
    ev = report["evaluation"]
    assert ev["seeds"] == [0, 1, 2] and len(ev["captions"]) == 3 and ev["batch"] == 1
    assert report["reference"]["latency_ms_p50"] > 0
    for name, entry in report["variants"].items():
        assert entry["latency_ms_p90"] >= entry["latency_ms_p50"] > 0, name
        assert 0 <= entry["max_abs_error"] <= BOUNDS[name][0], name
        assert entry["psnr_db"] is None or entry["psnr_db"] >= (BOUNDS[name][1] or 40.0), name
        assert entry["convert_seconds"] > 0
    # The report's float32 numbers are what the interpreter gives on those pairs.
    z = models.latents_from_seeds(np.array(ev["seeds"]), 8).numpy()
    emb = _embed(loaded, ev["captions"])
    video = _runner(os.path.join(out, "generator_float32.tflite"))(z=z, text_embedding=emb)
    diff = np.abs(video["video"].astype(int) - _reference(loaded, z, emb).astype(int))
    assert diff.max() == report["variants"]["float32"]["max_abs_error"]

    md = _read(out, tflite.REPORT_MD)
    assert md == tflite.markdown(report)
    assert "| variant | status | size | max abs err | mean abs err | PSNR (dB) | p50 ms |" in md
    for name, entry in report["variants"].items():
        assert f"| {name} | {entry['status']} | " in md
    assert "SavedModel (reference)" in md and report["sidecar"]["kind"] in md
    assert not [n for n in os.listdir(out) if n.startswith(".tflite-work")]  # temp dir gone


@pytest.mark.slow
def test_text_sidecar_embeds_like_embed_text(converted, loaded):
    out, report = converted
    sidecar = TextSidecar(os.path.join(out, tflite.TEXT_DIR))
    assert report["sidecar"]["kind"] == sidecar.kind == "tflite_encoder"
    assert "batch 1" in sidecar.manifest["reason"]  # the GRU loop converts at batch 1 only
    attempts = {a["name"]: a for a in sidecar.manifest["attempts"]}
    assert not attempts["text_encoder_dynamic_batch"]["converted"]
    assert "TensorListReserve" in attempts["text_encoder_dynamic_batch"]["error"]
    with open(os.path.join(out, tflite.TEXT_DIR, text_sidecar.ENCODER_FILE), "rb") as f:
        assert tflite.model_ops(f.read())["non_builtin_ops"] == []
    vocab = _read(out, tflite.TEXT_DIR, "vocabulary.txt").split()
    assert vocab == data.get("moving_shapes").vocabulary()
    # Every str edge case with a word left (the encoder refuses empty captions).
    captions = CAPTIONS + [c for c in TRICKY if isinstance(c, str) and sidecar.tokenizer.words(c)]
    got = sidecar.embed(captions)
    want = _embed(loaded, captions)
    assert got.shape == want.shape == (len(captions), 16)
    np.testing.assert_allclose(got, want, atol=text_sidecar.TOLERANCE, rtol=0)
    assert np.abs(want[0] - want[1]).max() > 1e-3  # different captions, different vectors


@pytest.mark.slow
def test_runtime_caption_to_video_file(converted, loaded, tmp_path):
    out, _ = converted
    model = TFLiteTextToVideo.load(out, "float32")
    assert model.video_shape == (4, 16, 16, 3) and model.z_dim == 8 and model.text_dim == 16
    seeds = np.array([3, 4, 123456789], np.int64)
    videos = model.generate(CAPTIONS, seed=seeds)
    served = loaded.signatures["serving_default"](text=tf.constant(CAPTIONS),
                                                  seed=tf.constant(seeds))["video"].numpy()
    assert videos.dtype == np.uint8
    assert np.abs(videos.astype(int) - served.astype(int)).max() <= 1
    np.testing.assert_array_equal(model.generate(CAPTIONS[1], seed=4), videos[1:2])
    path = model.write_video(CAPTIONS[0], str(tmp_path / "clip.gif"), seed=3, scale=2)
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (4, 32, 32)
    with pytest.raises(ValueError, match="z must be"):
        model.generate(CAPTIONS, z=np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="variant 'nope' was not converted"):
        TFLiteTextToVideo.load(out, "nope")
    # Seeds map to z with the export's truncation, read from the report.
    assert model.truncation == 1.0
    z = models.latents_from_seeds(seeds, 8).numpy()
    half = TFLiteTextToVideo(model.model_path, os.path.join(out, tflite.TEXT_DIR),
                             truncation=0.5)
    np.testing.assert_array_equal(half.generate(CAPTIONS, seed=seeds),
                                  model.generate(CAPTIONS, z=0.5 * z))
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    with open(os.path.join(copy, tflite.REPORT_JSON)) as f:
        report = json.load(f)
    with open(os.path.join(copy, tflite.REPORT_JSON), "w") as f:
        json.dump({**report, "truncation": 0.5}, f)
    assert TFLiteTextToVideo.load(copy, "float32").truncation == 0.5
    with pytest.raises(ValueError, match="truncation must be in"):
        TFLiteTextToVideo(model.model_path, os.path.join(out, tflite.TEXT_DIR), truncation=0)


# --------------------------------------------------------------------------- #
# Failures are reported, never dropped.

@pytest.mark.slow
def test_a_failed_variant_is_reported_with_the_converters_message(saved_model, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "generator_float16.tflite").write_bytes(b"an older conversion")
    real = tflite._make_converter

    def broken(job):
        if job["mode"] == "float16":
            raise RuntimeError("simulated: 'tfl.conv_3d' op is not supported in float16")
        return real(job)

    monkeypatch.setattr(tflite, "_make_converter", broken)
    report = tflite.convert(saved_model, str(out), ["float32", "float16"], num_eval=2,
                            latency_runs=2, isolate=False, captions=CAPTIONS)
    failed = report["variants"]["float16"]
    assert failed["status"] == "failed" and failed["file"] is None
    assert "RuntimeError: simulated: 'tfl.conv_3d' op is not supported" in failed["error"]
    assert "conversion failed" in failed["reason"]
    assert not (out / "generator_float16.tflite").exists()  # the stale file is gone
    assert report["variants"]["float32"]["status"] == "ok"
    md = (out / "report.md").read_text()
    assert "| float16 | failed | - |" in md and "not supported in float16" in md


@pytest.mark.slow
def test_bad_sources_and_captions_are_named(saved_model, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        tflite.convert(str(tmp_path), out)
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x + 1.0},
                           input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"f": module.f})
    with pytest.raises(ValueError, match="lacks signature.*embed_text.*generate_from_embedding"):
        tflite.convert(str(tmp_path / "other"), out)
    with pytest.raises(ValueError, match="embed_text refused the captions.*empty caption"):
        tflite.convert(saved_model, out, captions=["a red square", " ,. "])
    with pytest.raises(ValueError, match="no captions"):
        tflite.convert(saved_model, out, captions=[])
    assert not os.path.exists(out)  # nothing written before the inputs are valid


def test_model_ops_finds_flex_ops(tmp_path):
    # A string op only converts as a Flex (select TF) op: exactly what must be caught.
    module = tf.Module()
    module.f = tf.function(lambda text: {"out": tf.strings.length(tf.strings.lower(text))},
                           input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"f": module.f})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "m"), ["f"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    ops = tflite.model_ops(converter.convert(), "f")
    assert ops["non_builtin_ops"] and all(op.startswith("Flex") for op in ops["non_builtin_ops"])
    assert "FlexStringLower" in ops["ops"]


@pytest.mark.slow
def test_a_converter_crash_fails_one_job_and_the_rest_still_run(tmp_path):
    import keras

    # Keras 3 layers saved with plain tf.saved_model.save abort the TF 2.17 converter
    # (LLVM "missing attribute 'value'"); the same layer via ExportArchive converts.
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    module = tf.Module()
    module.dense = dense
    module.f = tf.function(lambda x: {"y": dense(x)},
                           input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "crashes"), signatures={"f": module.f})
    archive = keras.export.ExportArchive()
    archive.track(dense)
    archive.add_endpoint("f", lambda x: {"y": dense(x)},
                         [tf.TensorSpec([None, 3], tf.float32, name="x")])
    archive.write_out(str(tmp_path / "converts"), verbose=False)
    jobs = [{"name": name, "mode": "float32", "saved_model": str(tmp_path / name),
             "signature": "f", "output": str(tmp_path / f"{name}.tflite"),
             "representative": None} for name in ("crashes", "converts")]
    results = tflite.run_jobs(jobs, isolate=True, timeout_s=600)
    assert results["crashes"].model is None
    assert "converter process died (exit status" in results["crashes"].error
    assert "missing attribute 'value'" in results["crashes"].error
    assert results["converts"].error is None and results["converts"].model[4:8] == b"TFL3"


@pytest.mark.slow
def test_precomputed_sidecar_for_an_encoder_that_is_not_builtin(tmp_path):
    from tests import hub_fixtures
    from tests.conftest import tiny_config

    handle = hub_fixtures.save_text_embedding(str(tmp_path / "hub"), dim=16)
    cfg = tiny_config(f"model.text_encoder.kind={handle}")
    task = models.build_task(cfg.model, data.get("moving_shapes").vocabulary(), 4, 16)
    path = export.export_saved_model(task, str(tmp_path / "m"), warmup=False, verify=False)
    out = str(tmp_path / "out")
    report = tflite.convert(path, out, ["float32"], captions=CAPTIONS, num_eval=2,
                            latency_runs=2, isolate=False)
    assert report["variants"]["float32"]["status"] == "ok"
    assert report["sidecar"]["kind"] == "precomputed"
    assert "no built-in text encoder" in report["sidecar"]["reason"]
    sidecar = TextSidecar(os.path.join(out, tflite.TEXT_DIR))
    assert sidecar.captions == CAPTIONS and sidecar.tokenizer is None
    want = tf.saved_model.load(path).signatures["embed_text"](
        text=tf.constant(CAPTIONS))["text_embedding"].numpy()
    np.testing.assert_array_equal(sidecar.embed(CAPTIONS), want)  # JSON round-trips float32
    with pytest.raises(KeyError, match="no precomputed embedding"):
        sidecar.embed(["a caption it never saw"])
    video = TFLiteTextToVideo.load(out).generate(CAPTIONS[:1], seed=0)
    served = task.generate(CAPTIONS[:1], seed=0)
    assert np.abs(video.astype(int) - served.astype(int)).max() <= 1


@pytest.mark.parametrize("overrides", [
    "model.text_encoder.pooling=mean",
    # The routed encoder and the layered generator it feeds (einsum resampling).
    "model.text_encoder.pooling=routed model.generator.kind=layered",
    # Fixed routes (the sidecar rebuilds them from the exported table).
    "model.text_encoder.pooling=routed model.generator.kind=layered "
    "model.text_encoder.route_words=motion"])
def test_loop_free_encoders_convert_at_any_batch(tmp_path, overrides):
    from tests.conftest import tiny_config
    from tfvideogen.training import trainer

    cfg = tiny_config(*overrides.split())
    ds = data.get("moving_shapes")
    task = models.build_task(cfg.model, ds.vocabulary(), 4, 16,
                             route_words=trainer.route_words(cfg, ds))
    path = export.export_saved_model(task, str(tmp_path / "m"), warmup=False, verify=False)
    out = str(tmp_path / "out")
    report = tflite.convert(path, out, ["float32"], captions=CAPTIONS, num_eval=2,
                            latency_runs=2, isolate=False)
    assert report["variants"]["float32"]["status"] == "ok", report["variants"]["float32"]
    sidecar = TextSidecar(os.path.join(out, tflite.TEXT_DIR))
    assert report["sidecar"]["kind"] == sidecar.kind == "tflite_encoder"
    # No GRU loop: unlike the GRU encoder, the dynamic-batch model converts.
    attempts = {a["name"]: a for a in sidecar.manifest["attempts"]}
    assert attempts["text_encoder_dynamic_batch"]["converted"]
    want = tf.saved_model.load(path).signatures["embed_text"](
        text=tf.constant(CAPTIONS))["text_embedding"].numpy()
    np.testing.assert_allclose(sidecar.embed(CAPTIONS), want, atol=text_sidecar.TOLERANCE,
                               rtol=0)


@pytest.mark.slow
def test_cli(saved_model, tmp_path):
    script = os.path.join(ROOT, "export", "tflite.py")
    out = str(tmp_path / "out")
    done = subprocess.run([sys.executable, script, f"--saved_model={saved_model}",
                           f"--out_dir={out}", "--variants=float32", "--latency_runs=2",
                           "--num_eval=2", "--noisolate"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| float32 | ok |" in done.stdout and "wrote" in done.stdout
    assert sorted(os.listdir(out)) == ["generator_float32.tflite", "report.json", "report.md",
                                       "text"]
    bad = subprocess.run([sys.executable, script, f"--saved_model={tmp_path}",
                          f"--out_dir={out}", "--variants=float32,int4"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and "unknown variant(s) int4" in bad.stderr
    missing = subprocess.run([sys.executable, script, f"--saved_model={tmp_path}",
                              f"--out_dir={out}", "--variants=float32"],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert missing.returncode == 1 and "no saved_model.pb" in missing.stderr
