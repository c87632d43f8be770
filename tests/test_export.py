"""SavedModel export for TF Serving (#5): layout, signatures, exactness, warmup, configs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.python.tools import saved_model_utils

from tests.conftest import tiny_config
from tfvideogen import data, export, models, training
from tfvideogen.export import saved_model as sm
from tfvideogen.serving import configs, tensors, warmup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTIONS = ["a red square is moving up and down", "a blue circle is moving left and right",
            "a green triangle is moving left and right"]
# name -> ({input: (dtype, shape)}, {output: (dtype, shape)}) for the tiny model
# (4 frames of 16x16, z_dim 8, text_dim 16).
EXPECTED = {
    "serving_default": ({"text": (types_pb2.DT_STRING, [-1]), "seed": (types_pb2.DT_INT64, [-1])},
                        {"video": (types_pb2.DT_UINT8, [-1, 4, 16, 16, 3])}),
    "generate": ({"z": (types_pb2.DT_FLOAT, [-1, 8]), "text": (types_pb2.DT_STRING, [-1])},
                 {"video": (types_pb2.DT_UINT8, [-1, 4, 16, 16, 3])}),
    "generate_from_embedding": ({"z": (types_pb2.DT_FLOAT, [-1, 8]),
                                 "text_embedding": (types_pb2.DT_FLOAT, [-1, 16])},
                                {"video": (types_pb2.DT_UINT8, [-1, 4, 16, 16, 3])}),
    "embed_text": ({"text": (types_pb2.DT_STRING, [-1])},
                   {"text_embedding": (types_pb2.DT_FLOAT, [-1, 16])}),
}


@pytest.fixture(scope="module")
def run_task(tiny_run_dir):
    task, cfg, step = training.load_task(tiny_run_dir)
    return task


@pytest.fixture(scope="module")
def exported(run_task, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export") / "tfvideogen")
    path = export.export_saved_model(run_task, base)
    return base, path, tf.saved_model.load(path)


def _read(*parts: str) -> str:
    with open(os.path.join(*parts)) as f:
        return f.read()


def _signature_defs(path: str):
    # What `saved_model_cli show` reads.
    return saved_model_utils.get_meta_graph_def(path, "serve").signature_def


def test_layout_configs_and_metadata(exported):
    base, path, _ = exported
    assert path == os.path.join(base, "1")
    assert sorted(os.listdir(base)) == ["1", "batching.config", "models.config"]  # no temp dirs
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(path))
    assert os.path.isfile(warmup.warmup_path(path))

    model_config = configs.parse_models_config(_read(base, "models.config"))
    (entry,) = model_config.model_config_list.config
    assert entry.name == "tfvideogen" and entry.model_platform == "tensorflow"
    assert entry.base_path == os.path.abspath(base)
    assert entry.model_version_policy.latest.num_versions == 1

    batching = configs.parse_batching_config(_read(base, "batching.config"))
    assert batching.max_batch_size.value == 8
    assert list(batching.allowed_batch_sizes) == [1, 2, 4, 8]
    assert batching.num_batch_threads.value >= 1

    meta = json.loads(_read(path, "assets.extra", "tfvideogen.json"))
    assert meta["video_shape"] == [4, 16, 16, 3] and meta["z_dim"] == 8
    assert meta["text_dim"] == 16 and meta["ema"] is True
    assert meta["generator"] == "ema_generator"


def test_signatures_names_dtypes_shapes(exported):
    _, path, loaded = exported
    defs = _signature_defs(path)
    assert set(EXPECTED) <= set(defs)
    assert set(loaded.signatures) == set(EXPECTED)
    for name, (inputs, outputs) in EXPECTED.items():
        sig = defs[name]
        assert sig.method_name == "tensorflow/serving/predict", name
        for got, want in ((sig.inputs, inputs), (sig.outputs, outputs)):
            assert set(got) == set(want), name  # explicit names, never args_0
            for key, (dtype, shape) in want.items():
                assert got[key].dtype == dtype, (name, key)
                assert [d.size for d in got[key].tensor_shape.dim] == shape, (name, key)


@pytest.mark.slow
def test_saved_model_cli_shows_the_signatures(exported):
    _, path, _ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", path, "--tag_set", "serve", "--signature_def",
                          "serving_default"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for word in ("inputs['text']", "inputs['seed']", "outputs['video']", "DT_STRING", "DT_INT64",
                 "DT_UINT8", "(-1, 4, 16, 16, 3)", "tensorflow/serving/predict"):
        assert word in text, (word, text)


def test_export_matches_in_memory_model_exactly(exported, run_task):
    _, _, loaded = exported
    sig = loaded.signatures
    seeds = np.array([0, 5, 123456789012], np.int64)
    served = sig["serving_default"](text=tf.constant(CAPTIONS), seed=tf.constant(seeds))["video"]
    assert served.dtype == tf.uint8
    np.testing.assert_array_equal(served.numpy(), run_task.generate(CAPTIONS, seed=seeds))

    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    by_z = sig["generate"](z=tf.constant(z), text=tf.constant(CAPTIONS))["video"].numpy()
    np.testing.assert_array_equal(by_z, run_task.generate(CAPTIONS, z=z))

    emb = sig["embed_text"](text=tf.constant(CAPTIONS))["text_embedding"].numpy()
    np.testing.assert_array_equal(emb, run_task.text_encoder(tf.constant(CAPTIONS)).numpy())
    by_emb = sig["generate_from_embedding"](z=tf.constant(z), text_embedding=tf.constant(emb))
    np.testing.assert_array_equal(by_emb["video"].numpy(), by_z)


def test_same_text_and_seed_same_video_alone_or_batched(exported):
    _, _, loaded = exported
    fn = loaded.signatures["serving_default"]
    batch = fn(text=tf.constant(CAPTIONS), seed=tf.constant([7, 8, 9], tf.int64))["video"]
    alone = fn(text=tf.constant(CAPTIONS[1:2]), seed=tf.constant([8], tf.int64))["video"]
    np.testing.assert_array_equal(batch.numpy()[1:2], alone.numpy())
    other = fn(text=tf.constant(CAPTIONS[1:2]), seed=tf.constant([9], tf.int64))["video"]
    assert not np.array_equal(other.numpy(), alone.numpy())


def test_export_uses_the_ema_generator(exported, run_task):
    _, _, loaded = exported
    served = loaded.signatures["serving_default"](
        text=tf.constant(CAPTIONS), seed=tf.constant([1, 2, 3], tf.int64))["video"].numpy()
    raw = run_task.generate(CAPTIONS, seed=[1, 2, 3], use_ema=False)
    assert not np.array_equal(served, raw)


def test_bad_inputs_fail_inside_the_graph_with_named_problems(exported):
    fn = exported[2].signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty caption"):
        fn(text=tf.constant(["a red square", " ,. "]), seed=tf.constant([1, 2], tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="text and seed must have the same"):
        fn(text=tf.constant(["a red square", "a"]), seed=tf.constant([1], tf.int64))
    emb_fn = exported[2].signatures["generate_from_embedding"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="z and text_embedding"):
        emb_fn(z=tf.zeros([2, 8]), text_embedding=tf.zeros([1, 16]))


def test_warmup_file_holds_real_predict_requests_that_replay(exported):
    _, path, loaded = exported
    records = warmup.read_warmup(warmup.warmup_path(path))
    assert [r.predict_log.request.model_spec.signature_name for r in records] == (
        ["serving_default"] * 4 + ["generate", "generate_from_embedding", "embed_text"])
    defs = _signature_defs(path)
    batches = []
    for record in records:
        request = record.predict_log.request
        assert request.model_spec.name == "tfvideogen"
        sig = defs[request.model_spec.signature_name]
        assert set(request.inputs) == set(sig.inputs)
        for key, proto in request.inputs.items():
            assert proto.dtype == sig.inputs[key].dtype
        inputs = {k: tensors.to_numpy(v) for k, v in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](
            **{k: tf.constant(v) for k, v in inputs.items()})
        rows = next(iter(inputs.values())).shape[0]
        assert all(v.shape[0] == rows for v in out.values())
        if request.model_spec.signature_name == "serving_default":
            batches.append(rows)
    assert batches == [1, 2, 4, 8]  # every allowed batch size of batching.config


def test_versions_count_up_and_never_overwrite(run_task, tmp_path):
    base = str(tmp_path / "m")
    fast = {"warmup": False, "verify": False}
    assert export.export_saved_model(run_task, base, **fast).endswith(os.sep + "1")
    assert export.export_saved_model(run_task, base, version=10, **fast).endswith(os.sep + "10")
    assert export.list_versions(base) == [1, 10] and export.next_version(base) == 11
    before = sorted(os.listdir(os.path.join(base, "10")))
    with pytest.raises(export.VersionExistsError, match="version 10 already exists.*write 11"):
        export.export_saved_model(run_task, base, version=10, **fast)
    assert sorted(os.listdir(os.path.join(base, "10"))) == before
    with pytest.raises(ValueError, match="non-negative"):
        export.export_saved_model(run_task, base, version=-1, **fast)
    assert not [n for n in os.listdir(base) if n.startswith(".tmp")]


def test_truncation_is_served_and_recorded(run_task, tmp_path):
    path = export.export_saved_model(run_task, str(tmp_path / "m"), warmup=False,
                                     truncation=0.5)  # verify=True: uint8-equal to generate()
    meta = json.loads(_read(path, "assets.extra", "tfvideogen.json"))
    assert meta["truncation"] == 0.5
    captions = ["a red square", "a blue circle"]
    seeds = np.array([3, 8], np.int64)
    served = tf.saved_model.load(path).signatures["serving_default"](
        text=tf.constant(captions), seed=tf.constant(seeds))["video"].numpy()
    np.testing.assert_array_equal(served, run_task.generate(captions, seed=seeds,
                                                            truncation=0.5))
    assert not np.array_equal(served, run_task.generate(captions, seed=seeds))
    with pytest.raises(ValueError, match="truncation must be in"):
        export.export_saved_model(run_task, str(tmp_path / "bad"), truncation=0.0)
    assert not os.path.exists(tmp_path / "bad")


def test_failed_export_publishes_nothing(run_task, tmp_path, monkeypatch):
    base = str(tmp_path / "m")

    def broken(*args, **kwargs):
        raise RuntimeError("verification failed on purpose")

    monkeypatch.setattr(sm, "verify_export", broken)
    with pytest.raises(RuntimeError, match="on purpose"):
        export.export_saved_model(run_task, base, warmup=False)
    assert os.listdir(base) == []  # no version, no temp dir, no configs
    assert export.next_version(base) == 1


def test_verification_catches_a_model_that_differs(run_task, tmp_path, monkeypatch):
    # The served graph must equal task.generate; fake a drift in the reference.
    real = run_task.generate

    def drifted(*args, **kwargs):
        return real(*args, **kwargs) ^ np.uint8(1)

    monkeypatch.setattr(run_task, "generate", drifted)
    with pytest.raises(RuntimeError, match="does not reproduce the in-memory model"):
        export.export_saved_model(run_task, str(tmp_path / "m"), warmup=False)
    assert export.list_versions(str(tmp_path / "m")) == []


def test_mixed_precision_task_is_refused(tmp_path):
    cfg = tiny_config()
    vocab = data.get("moving_shapes").vocabulary()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        task = models.build_task(cfg.model, vocab, 4, 16)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    with pytest.raises(ValueError, match="mixed_bfloat16.*float32.*export_run"):
        export.export_saved_model(task, str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m")


def test_float32_policy_is_restored_even_on_error(tmp_path):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with pytest.raises(FileNotFoundError, match="config.json"):
            export.export_run(str(tmp_path / "not_a_run"), str(tmp_path / "m"))
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_export_run_refuses_a_checkpoint_that_misses_weights(tiny_run_dir, tmp_path,
                                                             monkeypatch):
    def untracked(model, trainable_only=False):
        return [] if trainable_only else ["up0/kernel"]

    monkeypatch.setattr(sm, "untracked_weights", untracked)
    with pytest.raises(export.IncompleteCheckpointError, match="up0/kernel.*Nothing was written"):
        export.export_run(tiny_run_dir, str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m")


def test_untracked_weights_finds_layers_held_only_in_lists():
    class Listed(keras.Model):
        def __init__(self, attribute: bool, **kwargs):
            super().__init__(**kwargs)
            self.blocks = [keras.layers.Dense(2, name="d0"), keras.layers.Dense(2, name="d1")]
            if attribute:  # what makes tf.train.Checkpoint see them
                self.d0, self.d1 = self.blocks

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    for attribute, expected in ((False, 4), (True, 0)):
        model = Listed(attribute)
        model(tf.zeros([1, 2]))
        assert len(export.untracked_weights(model)) == expected


@pytest.mark.slow
def test_export_run_matches_the_trained_model_and_is_float32(tiny_run_dir, tmp_path):
    # The run's final `.keras` file holds the trained weights; the export of its last
    # checkpoint must generate the same videos.
    reference = keras.saving.load_model(os.path.join(tiny_run_dir, "text_to_video.keras"))
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run_dir, run)
    cfg_path = os.path.join(run, "config.json")
    cfg = json.loads(_read(cfg_path))
    cfg["train"]["mixed_precision"] = "mixed_bfloat16"  # same variables, other compute dtype
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        path = export.export_run(run, str(tmp_path / "m"))
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy(previous)
    graph = str(saved_model_utils.get_meta_graph_def(path, "serve").graph_def)
    assert "DT_FLOAT" in graph and "DT_HALF" not in graph and "DT_BFLOAT16" not in graph
    served = tf.saved_model.load(path).signatures["serving_default"](
        text=tf.constant(CAPTIONS), seed=tf.constant([4, 5, 6], tf.int64))["video"].numpy()
    np.testing.assert_array_equal(served, reference.generate(CAPTIONS, seed=[4, 5, 6]))
    meta = json.loads(_read(path, "assets.extra", "tfvideogen.json"))
    assert meta["source"]["step"] == 2 and meta["source"]["train_precision"] == "mixed_bfloat16"


def test_export_with_a_tf_hub_text_encoder(tmp_path):
    from tests import hub_fixtures

    handle = hub_fixtures.save_text_embedding(str(tmp_path / "hub"), dim=16)
    cfg = tiny_config(f"model.text_encoder.kind={handle}")
    task = models.build_task(cfg.model, data.get("moving_shapes").vocabulary(), 4, 16)
    path = export.export_saved_model(task, str(tmp_path / "m"), warmup=False)
    fn = tf.saved_model.load(path).signatures["serving_default"]
    served = fn(text=tf.constant(CAPTIONS), seed=tf.constant([0, 1, 2], tf.int64))["video"]
    np.testing.assert_array_equal(served.numpy(), task.generate(CAPTIONS, seed=[0, 1, 2]))


@pytest.mark.slow
def test_export_cli(tiny_run_dir, tmp_path):
    script = os.path.join(ROOT, "export", "saved_model.py")
    out_dir = str(tmp_path / "models" / "tfvideogen")
    cmd = [sys.executable, script, f"--model_dir={tiny_run_dir}", f"--export_dir={out_dir}",
           "--serving_base_path=/models/tfvideogen", "--max_batch_size=4", "--noverify"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"exported {os.path.join(out_dir, '1')}" in done.stdout
    text = _read(out_dir, "models.config")
    assert 'base_path: "/models/tfvideogen"' in text
    batching = configs.parse_batching_config(_read(out_dir, "batching.config"))
    assert list(batching.allowed_batch_sizes) == [1, 2, 4]


@pytest.mark.slow
def test_export_cli_errors(tmp_path):
    script = os.path.join(ROOT, "export", "saved_model.py")
    missing = subprocess.run([sys.executable, script], capture_output=True, text=True,
                             timeout=120, cwd=ROOT)
    assert missing.returncode != 0 and "model_dir" in missing.stderr
    not_a_run = subprocess.run([sys.executable, script, f"--model_dir={tmp_path}",
                                f"--export_dir={tmp_path / 'm'}"], capture_output=True,
                               text=True, timeout=120, cwd=ROOT)
    assert not_a_run.returncode == 1 and "not a tfvideogen run directory" in not_a_run.stderr
