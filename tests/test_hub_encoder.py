"""TF-Hub text encoders (#4): loading, offline errors, caching, training, saving, export.

Every module is a tiny TF-Hub-format SavedModel built by tests/hub_fixtures.py;
nothing is downloaded (the network is closed, which the offline tests rely on
only as far as "the handle is not cached").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import hub_fixtures
from tfvideogen import config as config_lib
from tfvideogen import models, training
from tfvideogen.models import embedding_cache, hub_encoder
from tfvideogen.models.hub_encoder import HubLoadError, HubTextEncoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NNLM = "https://tfhub.dev/google/nnlm-en-dim50/2"
CAPTIONS = ["a red square is moving up and down", "a blue circle is moving left and right",
            "a red square is moving up and down"]


@pytest.fixture(scope="session")
def modules(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_modules")
    pre, enc = hub_fixtures.save_bert_pair(str(root / "bert_preprocess"), str(root / "bert"))
    return {"embedding": hub_fixtures.save_text_embedding(str(root / "embedding")),
            "preprocessor": pre, "bert": enc,
            "signature": hub_fixtures.save_signature_only(str(root / "signature"))}


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "tfhub_cache"
    cache.mkdir()
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    return cache


def _values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def _bounded(fn, seconds: float):
    """Runs fn() in a daemon thread; fails the test (instead of hanging) past `seconds`."""
    result = {}

    def run():
        start = time.perf_counter()
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            result["error"] = e
        result["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return result


# --------------------------------------------------------------------------- #
# The layer.

def test_embedding_module_maps_strings_to_vectors(modules):
    enc = HubTextEncoder(modules["embedding"])
    out = enc(tf.constant(CAPTIONS))
    assert out.dtype == tf.float32 and out.shape == (3, 8)
    assert enc.output_dim == 8
    np.testing.assert_allclose(out[0], out[2])  # same caption, same vector
    assert not np.allclose(out[0], out[1])
    # Frozen by default: weights visible to Keras, none trainable (also via a parent).
    assert len(enc.weights) == 2 and enc.trainable_weights == []
    parent = models.TextToVideo(enc, keras.layers.Dense(1))
    assert not {id(v) for v in parent.trainable_variables} & {id(v) for v in enc.weights}
    graph_out = tf.function(lambda t: enc(t, training=True))(tf.constant(CAPTIONS))
    np.testing.assert_allclose(graph_out, out, rtol=1e-6)
    with pytest.raises(ValueError, match=r"vector \[B\]"):
        enc(tf.constant([CAPTIONS]))


def test_bert_pair_pooled_output_and_training_flag(modules):
    frozen = HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"])
    text = tf.constant(CAPTIONS)
    assert frozen(text).shape == (3, 8)
    # Frozen modules run in inference mode even inside a training step.
    np.testing.assert_allclose(frozen(text, training=True), frozen(text, training=False))
    tuned = HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"], trainable=True)
    assert len(tuned.trainable_variables) == 6 and len(tuned.non_trainable_variables) == 1
    # Checkpoints reach every weight of a fine-tuned encoder, and none of a frozen one.
    reachable = {id(o) for o in tf.train.TrackableView(tuned).descendants()}
    assert all(id(w) in reachable for w in tuned.weights)
    reachable = {id(o) for o in tf.train.TrackableView(frozen).descendants()}
    assert not any(id(w) in reachable for w in frozen.weights)
    assert not np.allclose(tuned(text, training=True), tuned(text, training=False))
    with pytest.raises(ValueError, match=r"expected \[2, D\]"):
        HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"],
                       output_key="sequence_output")
    with pytest.raises(ValueError, match="default.*pooled_output.*sequence_output"):
        HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"], output_key="cls")


def test_signature_only_module_is_frozen_only(modules):
    enc = HubTextEncoder(modules["signature"], output_key="default")
    assert enc(tf.constant(CAPTIONS)).shape == (3, 6)
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        HubTextEncoder(modules["signature"], output_key="default", trainable=True)


def test_config_keras_file_and_safe_mode(modules, tmp_path):
    enc = HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"], name="te")
    config = enc.get_config()
    assert {k: config[k] for k in ("handle", "preprocessor", "output_key", "output_dim",
                                   "trainable")} == {
        "handle": modules["bert"], "preprocessor": modules["preprocessor"],
        "output_key": "pooled_output", "output_dim": 8, "trainable": False}
    path = str(tmp_path / "encoder.keras")
    enc.save(path)
    # Loading runs the module's graph: Keras' safe mode must be turned off explicitly.
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(path)
    clone = keras.models.load_model(path, safe_mode=False)
    assert isinstance(clone, HubTextEncoder) and clone.get_config() == config
    np.testing.assert_allclose(clone(tf.constant(CAPTIONS)), enc(tf.constant(CAPTIONS)))
    # A handle that now resolves to another module is caught by the recorded size.
    with pytest.raises(ValueError, match="now gives 8-d embeddings"):
        HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"], output_dim=50)


# --------------------------------------------------------------------------- #
# Handles: offline, cache directory, local paths.

def test_unreachable_handle_fails_fast_with_instructions(empty_hub_cache):
    result = _bounded(lambda: HubTextEncoder(NNLM), seconds=30)
    error = result.get("error")
    assert isinstance(error, HubLoadError), result
    assert result["seconds"] < 10
    message = str(error)
    digest = hashlib.sha1(NNLM.encode()).hexdigest()
    assert "TFHUB_CACHE_DIR" in message and digest in message
    assert os.path.join(str(empty_hub_cache), digest) in message
    assert "local" in message and NNLM in message
    assert os.listdir(empty_hub_cache) == []  # no half-written download or lock left behind


def test_hanging_dns_or_connect_is_bounded_by_the_probe_timeout(empty_hub_cache, monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):  # a resolver/connect that never answers
        release.wait(60)
        raise OSError("released")

    monkeypatch.setattr(hub_encoder.socket, "create_connection", hang)
    try:
        result = _bounded(lambda: hub_encoder.load_module("https://tfhub.dev/google/x/1",
                                                          probe_timeout=1.0), seconds=20)
    finally:
        release.set()
    assert isinstance(result.get("error"), HubLoadError), result
    assert result["seconds"] < 5
    assert "did not answer within 1 s" in str(result["error"])


@pytest.mark.network
def test_stalled_download_is_bounded(empty_hub_cache, monkeypatch):
    # A server that accepts the connection and never answers: the probe passes,
    # the download itself must time out instead of hanging.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    monkeypatch.setattr(hub_encoder, "DOWNLOAD_SOCKET_TIMEOUT_S", 1.0)
    handle = f"http://127.0.0.1:{port}/module.tar.gz"
    try:
        result = _bounded(lambda: hub_encoder.load_module(handle), seconds=30)
    finally:
        server.close()
    assert isinstance(result.get("error"), HubLoadError), result
    assert result["seconds"] < 10
    assert "timed out" in str(result["error"]) and "TFHUB_CACHE_DIR" in str(result["error"])
    assert socket.getdefaulttimeout() is None  # restored


def test_handle_found_in_tfhub_cache_dir(modules, empty_hub_cache):
    digest = hashlib.sha1(NNLM.encode("utf8")).hexdigest()
    shutil.copytree(modules["embedding"], empty_hub_cache / digest)
    assert hub_encoder.cached_module_dir(NNLM) == str(empty_hub_cache / digest)
    cached = HubTextEncoder(NNLM)
    local = HubTextEncoder(modules["embedding"])
    np.testing.assert_allclose(cached(tf.constant(CAPTIONS)), local(tf.constant(CAPTIONS)))
    assert cached.get_config()["handle"] == NNLM


def test_bad_local_handles(tmp_path):
    with pytest.raises(HubLoadError, match="not 'builtin'.*existing directory"):
        HubTextEncoder(str(tmp_path / "nope"))
    with pytest.raises(HubLoadError, match="not a loadable TF-Hub SavedModel"):
        HubTextEncoder(str(tmp_path))  # a directory without saved_model.pb


def test_build_text_encoder_dispatch(modules):
    cfg = config_lib.get_experiment("tiny").model
    cfg.text_encoder.kind = modules["embedding"]
    enc = models.build_text_encoder(cfg, ["a"])
    assert isinstance(enc, HubTextEncoder) and enc.output_dim == 8  # not the config's 16
    cfg.text_encoder.kind = "builtin"
    cfg.text_encoder.preprocessor = modules["preprocessor"]
    with pytest.raises(ValueError, match="preprocessor only applies to TF-Hub"):
        models.build_text_encoder(cfg, ["a"])


# --------------------------------------------------------------------------- #
# Export: the served model embeds the hub encoder and still takes strings.

def test_export_archive_embeds_module_and_vocabulary(modules, tmp_path):
    # Private copies, deleted before reloading: the export must not point at them.
    pre = shutil.copytree(modules["preprocessor"], tmp_path / "pre")
    bert = shutil.copytree(modules["bert"], tmp_path / "bert")
    enc = HubTextEncoder(str(bert), preprocessor=str(pre))
    expected = enc(tf.constant(CAPTIONS)).numpy()
    archive = keras.export.ExportArchive()
    archive.track(enc)
    archive.add_endpoint("embed", lambda text: {"embedding": enc(text, training=False)},
                         input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.write_out(str(tmp_path / "export"), verbose=False)
    shutil.rmtree(pre)
    shutil.rmtree(bert)
    assert os.listdir(tmp_path / "export" / "assets") == ["vocab.txt"]
    served = tf.saved_model.load(str(tmp_path / "export"))
    out = served.signatures["serving_default"](text=tf.constant(CAPTIONS))["embedding"]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


# --------------------------------------------------------------------------- #
# The frozen-encoder cache.

def test_cache_embeds_each_caption_once(modules):
    enc = HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"])
    cache = embedding_cache.EmbeddingCache(enc)
    assert cache.prefill(CAPTIONS) == 2
    assert int(cache.embedded.numpy()) == 2 and cache.size == 2

    @tf.function
    def step(text):
        return cache(text, training=True)

    out = step(tf.constant(CAPTIONS))
    np.testing.assert_allclose(out, enc(tf.constant(CAPTIONS)), rtol=1e-6)
    assert int(cache.embedded.numpy()) == 2  # all hits: no encoder run
    # Misses (one new caption, twice) are embedded once, inside the graph.
    mixed = tf.constant(["a green triangle", CAPTIONS[1], "a green triangle"])
    np.testing.assert_allclose(step(mixed), enc(mixed), rtol=1e-6)
    assert int(cache.embedded.numpy()) == 3 and cache.size == 3
    step(mixed)
    assert int(cache.embedded.numpy()) == 3
    assert cache.trainable_variables == []


def test_cache_only_wraps_frozen_encoders(modules):
    tuned = HubTextEncoder(modules["embedding"], trainable=True)
    with pytest.raises(ValueError, match="frozen encoder"):
        embedding_cache.EmbeddingCache(tuned)
    assert embedding_cache.for_training(tuned, CAPTIONS) is tuned
    frozen = HubTextEncoder(modules["embedding"])
    cache = embedding_cache.for_training(frozen, CAPTIONS)
    assert isinstance(cache, embedding_cache.EmbeddingCache) and cache.size == 2
    data = training.trainer.dataset_for(config_lib.get_experiment("tiny"))
    known = embedding_cache.known_captions(data)
    assert set(known) == {c for s in data.splits for c in data.captions(s)}


# --------------------------------------------------------------------------- #
# Training with each module, then reloading.

def result_cfg(model_dir: str) -> config_lib.ExperimentConfig:
    return training.load_run_config(model_dir)


def _train(tmp_path, overrides, monkeypatch):
    """Trains 2 tiny steps.

    Returns (result, model_dir, caches): one (cache, embedded after pre-fill,
    list with an entry per trace of cache.call) per cache the trainer built.
    """
    caches = []
    real = embedding_cache.for_training

    def spy(*args, **kwargs):
        cache = real(*args, **kwargs)
        traces, call = [], cache.call

        def traced_call(*a, **k):
            traces.append(tf.inside_function())
            return call(*a, **k)

        cache.call = traced_call
        caches.append((cache, int(cache.embedded.numpy()), traces))
        return cache

    monkeypatch.setattr(embedding_cache, "for_training", spy)
    cfg = config_lib.resolve("tiny", "", ["train.steps=2", "train.checkpoint_every=2",
                                          "train.sample_every=2", *overrides])
    model_dir = str(tmp_path / "run")
    return training.train(cfg, model_dir), model_dir, caches


@pytest.mark.slow
def test_train_frozen_embedding_module(modules, tmp_path, monkeypatch):
    original = _values(HubTextEncoder(modules["embedding"]).weights)
    result, model_dir, caches = _train(
        tmp_path, [f"model.text_encoder.kind={modules['embedding']}"], monkeypatch)
    task = result.task
    assert result.step == 2 and np.isfinite(result.losses["d_loss"])
    # Sized from the module (8), not from the tiny config's output_dim (16).
    assert task.text_encoder.output_dim == 8 and task.generator.text_dim == 8
    for before, after in zip(original, _values(task.text_encoder.weights), strict=True):
        np.testing.assert_array_equal(before, after)
    # The step graph looks captions up in the pre-filled cache, and running it
    # embedded no caption after the pre-fill: no encoder forward per step.
    (cache, prefilled, traces), = caches
    assert any(traces)
    known = embedding_cache.known_captions(training.trainer.dataset_for(result_cfg(model_dir)))
    assert prefilled == cache.size == len(set(known)) > 0
    assert int(cache.embedded.numpy()) == prefilled

    videos = task.generate(CAPTIONS[:2], seed=0)
    assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8
    # A frozen module is its handle: no copy of its weights in the checkpoints.
    checkpoint = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    stored = tf.train.list_variables(checkpoint)
    assert len(stored) > 20  # G, D, EMA, optimizers...
    assert not any("text_encoder" in name for name, _ in stored)
    assert [64, 8] not in [shape for _, shape in stored]  # the module's hash-embedding table
    reloaded, cfg, step = training.load_task(model_dir)
    assert step == 2 and cfg.model.text_encoder.kind == modules["embedding"]
    np.testing.assert_allclose(reloaded.text_encoder(tf.constant(CAPTIONS)),
                               task.text_encoder(tf.constant(CAPTIONS)))
    assert reloaded.generate(CAPTIONS[:1]).shape == (1, 4, 16, 16, 3)
    keras_file = os.path.join(model_dir, "text_to_video.keras")
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(keras_file)
    loaded = keras.models.load_model(keras_file, safe_mode=False)
    assert isinstance(loaded.text_encoder, HubTextEncoder)
    assert loaded.text_encoder.handle == modules["embedding"]
    np.testing.assert_array_equal(loaded.generate(CAPTIONS[:2], seed=0), videos)


@pytest.mark.slow
def test_train_trainable_bert_pair(modules, tmp_path, monkeypatch):
    fresh = HubTextEncoder(modules["bert"], preprocessor=modules["preprocessor"], trainable=True)
    original = dict(zip([v.name for v in fresh.weights], _values(fresh.weights), strict=True))
    result, model_dir, caches = _train(
        tmp_path, [f"model.text_encoder.kind={modules['bert']}",
                   f"model.text_encoder.preprocessor={modules['preprocessor']}",
                   "model.text_encoder.trainable=true"], monkeypatch)
    enc = result.task.text_encoder
    assert caches == []  # a trainable encoder runs in every step
    assert enc.output_dim == 8 and result.task.generator.text_dim == 8
    tuned = {v.name: np.array(v.numpy()) for v in enc.weights}
    for v in enc.trainable_variables:
        assert not np.allclose(tuned[v.name], original[v.name]), v.name
    (buffer,) = enc.non_trainable_variables
    np.testing.assert_array_equal(tuned[buffer.name], original[buffer.name])

    # The checkpoint holds the fine-tuned module; load_task restores it.
    reloaded, _, step = training.load_task(model_dir)
    assert step == 2
    for v in reloaded.text_encoder.weights:
        np.testing.assert_array_equal(v.numpy(), tuned[v.name])
    # So does the .keras file.
    loaded = keras.models.load_model(os.path.join(model_dir, "text_to_video.keras"),
                                     safe_mode=False)
    for v in loaded.text_encoder.weights:
        np.testing.assert_array_equal(v.numpy(), tuned[v.name])
    np.testing.assert_array_equal(loaded.generate(CAPTIONS[:2], seed=3),
                                  result.task.generate(CAPTIONS[:2], seed=3))


# --------------------------------------------------------------------------- #
# The command line.

def test_train_flags_map_to_config_fields():
    import train

    for flag in ("text_encoder", "text_preprocessor", "text_encoder_trainable"):
        assert flag in train.FLAGS
    cfg = config_lib.apply_overrides(
        config_lib.get_experiment("tiny"),
        [f"{train._FLAG_FIELDS['text_encoder']}=/m",
         f"{train._FLAG_FIELDS['text_preprocessor']}=/p",
         f"{train._FLAG_FIELDS['text_encoder_trainable']}=True"])
    t = cfg.model.text_encoder
    assert (t.kind, t.preprocessor, t.trainable) == ("/m", "/p", True)


@pytest.mark.slow
def test_train_py_offline_handle_exits_with_instructions(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "TFHUB_CACHE_DIR": str(cache), "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--experiment=tiny",
         f"--model_dir={tmp_path / 'run'}", f"--text_encoder={NNLM}",
         "--text_encoder_trainable"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "TFHUB_CACHE_DIR" in proc.stderr
    assert hashlib.sha1(NNLM.encode()).hexdigest() in proc.stderr
    assert "Traceback" not in proc.stderr
