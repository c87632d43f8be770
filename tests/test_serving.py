"""Serving (#5): dev PredictionService, gRPC and REST clients, errors, hot reload, warmup.

Servers bind 127.0.0.1 on a free port (port 0), calls have bounded timeouts
and every server is stopped in teardown.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfvideogen import export, models, training
from tfvideogen.serving import client as client_lib
from tfvideogen.serving import rest, tensors, warmup
from tfvideogen.serving.dev_server import DevServer, DevServerConfig
from tfvideogen.serving.errors import ServingError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTIONS = ["a red square is moving up and down", "a blue circle is moving left and right"]
TIMEOUT = 30.0
MAX_BATCH = 4


@pytest.fixture(scope="module")
def task(tiny_run_dir):
    return training.load_task(tiny_run_dir)[0]


@pytest.fixture(scope="module")
def base(task, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("serving") / "tfvideogen")
    export.export_saved_model(task, base, verify=False)  # exactness is checked end to end here
    return base


@pytest.fixture(scope="module")
def server(base):
    srv = DevServer(DevServerConfig(base, port=0, rest_api_port=0, max_batch_size=MAX_BATCH,
                                    poll_seconds=0.2)).start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture(scope="module")
def client(server):
    with client_lib.GrpcClient(server.target, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def _request(inputs: dict, signature: str = "", model: str = "tfvideogen",
             version: int | None = None, label: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        proto = value if isinstance(value, tensor_pb2.TensorProto) else \
            tensors.to_tensor_proto(value)
        request.inputs[name].CopyFrom(proto)
    return request


def _text(*captions: str) -> np.ndarray:
    return np.array([c.encode() for c in captions], dtype=object)


def _good_request() -> predict_pb2.PredictRequest:
    return _request({"text": _text(*CAPTIONS), "seed": np.array([3, 4], np.int64)})


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --------------------------------------------------------------------------- #
# Round trips.

def test_server_binds_loopback_and_replays_warmup(server, base):
    assert server.cfg.host == "127.0.0.1" and server.target.startswith("127.0.0.1:")
    assert DevServerConfig().host == "127.0.0.1"
    current = server.manager.current
    assert current.version == 1
    records = warmup.read_warmup(warmup.warmup_path(os.path.join(base, "1")))
    assert current.warmup_records == len(records) == 7


def test_grpc_round_trip_equals_in_process_video(client, task):
    seeds = [3, 4]
    served = client.generate(CAPTIONS, seed=seeds)
    assert served.dtype == np.uint8 and served.shape == (2, 4, 16, 16, 3)
    np.testing.assert_array_equal(served, task.generate(CAPTIONS, seed=seeds))
    spec = client.last_model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == (
        "tfvideogen", 1, "serving_default")
    # int seed: caption i uses seed + i, as TextToVideo.generate does.
    np.testing.assert_array_equal(client.generate(CAPTIONS, seed=3), served)


def test_grpc_other_signatures_equal_in_process(client, task):
    z = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_array_equal(client.generate_from_z(z, CAPTIONS),
                                  task.generate(CAPTIONS, z=z))
    emb = client.embed_text(CAPTIONS)
    np.testing.assert_array_equal(emb, task.text_encoder(tf.constant(CAPTIONS)).numpy())
    video = models.to_uint8(task.sampler(tf.constant(z), tf.constant(emb), training=False))
    np.testing.assert_array_equal(client.generate_from_embedding(z, emb), video.numpy())


def test_metadata_lists_the_signatures(client, stub):
    defs = client.signature_defs(refresh=True)
    assert set(export.SIGNATURES) <= set(defs)
    sig = defs["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert sig.inputs["text"].dtype == types_pb2.DT_STRING
    assert sig.inputs["seed"].dtype == types_pb2.DT_INT64
    assert sig.outputs["video"].dtype == types_pb2.DT_UINT8
    assert [d.size for d in sig.outputs["video"].tensor_shape.dim] == [-1, 4, 16, 16, 3]
    for fields, code, words in (([], grpc.StatusCode.INVALID_ARGUMENT, "at least one"),
                                (["foo"], grpc.StatusCode.INVALID_ARGUMENT, "foo")):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
        request.model_spec.name = "tfvideogen"
        with pytest.raises(grpc.RpcError) as err:
            stub.GetModelMetadata(request, timeout=TIMEOUT)
        assert err.value.code() == code and words in err.value.details()
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelMetadata(request, timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_status(client, server):
    assert client.status() == [{"version": 1, "state": "AVAILABLE", "error_code": 0,
                                "error_message": ""}]
    with grpc.insecure_channel(server.target) as channel:
        models_stub = model_service_pb2_grpc.ModelServiceStub(channel)
        for name, version, words in (("nope", None, "Could not find any versions of model nope"),
                                     ("tfvideogen", 99, "Could not find version 99")):
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            if version is not None:
                request.model_spec.version.value = version
            with pytest.raises(grpc.RpcError) as err:
                models_stub.GetModelStatus(request, timeout=TIMEOUT)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert words in err.value.details()


# --------------------------------------------------------------------------- #
# Errors, as TF Serving gives them; the server keeps answering.

def _bad_tensor_content() -> tensor_pb2.TensorProto:
    proto = tensors.to_tensor_proto(np.array([1, 2], np.int64))
    proto.tensor_content = proto.tensor_content[:-3]
    return proto


def _seeds(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


ERROR_CASES = {
    "unknown model": (lambda: _request({"text": _text("a"), "seed": _seeds(1)}, model="nope"),
                      grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    "unknown version": (lambda: _request({"text": _text("a"), "seed": _seeds(1)}, version=99),
                        grpc.StatusCode.NOT_FOUND, "Specific(tfvideogen, 99)"),
    "unknown label": (lambda: _request({"text": _text("a"), "seed": _seeds(1)}, label="stable"),
                      grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label"),
    # TF Serving (predict_util.cc) answers FAILED_PRECONDITION here, not NOT_FOUND.
    "unknown signature": (lambda: _request({"text": _text("a")}, signature="nope"),
                          grpc.StatusCode.FAILED_PRECONDITION,
                          'Serving signature key "nope" not found'),
    "wrong dtype": (lambda: _request({"text": _text("a"), "seed": np.array([1.0], np.float32)}),
                    grpc.StatusCode.INVALID_ARGUMENT, "input 'seed'"),
    "wrong shape": (lambda: _request({"text": np.array([[b"a"]], dtype=object),
                                      "seed": _seeds(1)}),
                    grpc.StatusCode.INVALID_ARGUMENT, "input 'text'"),
    "wrong z width": (lambda: _request({"text": _text("a"), "z": np.zeros((1, 5), np.float32)},
                                       signature="generate"),
                      grpc.StatusCode.INVALID_ARGUMENT, "input 'z'"),
    "missing input": (lambda: _request({"text": _text("a")}),
                      grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {seed}"),
    "extra input": (lambda: _request({"text": _text("a"), "seed": _seeds(1),
                                      "foo": _seeds(1)}),
                    grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {foo}"),
    "batch over max": (lambda: _request({"text": _text(*["a"] * (MAX_BATCH + 1)),
                                         "seed": _seeds(MAX_BATCH + 1)}),
                       grpc.StatusCode.INVALID_ARGUMENT,
                       f"larger than the maximum batch size {MAX_BATCH}"),
    "empty batch": (lambda: _request({"text": _text(), "seed": _seeds(0)}),
                    grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
    "batch mismatch": (lambda: _request({"text": _text("a", "b"), "seed": _seeds(1)}),
                       grpc.StatusCode.INVALID_ARGUMENT, "seed=1, text=2"),
    "blank caption": (lambda: _request({"text": _text("a red square", "   "), "seed": _seeds(2)}),
                      grpc.StatusCode.INVALID_ARGUMENT, "empty caption"),
    "punctuation caption": (lambda: _request({"text": _text("?!"), "seed": _seeds(1)}),
                            grpc.StatusCode.INVALID_ARGUMENT, "empty caption"),
    "corrupt tensor": (lambda: _request({"text": _text("a", "b"), "seed": _bad_tensor_content()}),
                       grpc.StatusCode.INVALID_ARGUMENT, "input 'seed'"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_have_tf_serving_codes_and_name_the_problem(case, stub, client, task):
    make, code, words = ERROR_CASES[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(make(), timeout=TIMEOUT)
    assert err.value.code() == code, err.value.details()
    assert words in err.value.details()
    # Still serving, and still right.
    np.testing.assert_array_equal(client.generate(CAPTIONS[:1], seed=9),
                                  task.generate(CAPTIONS[:1], seed=9))


def test_output_filter(stub):
    request = _good_request()
    request.output_filter.append("video")
    assert set(stub.Predict(request, timeout=TIMEOUT).outputs) == {"video"}
    request.output_filter[:] = ["nope"]
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: nope" in err.value.details()


def test_client_side_validation_and_error_type(client):
    with pytest.raises(ValueError, match="caption 1 is empty"):
        client.generate(["a red square", "  "])
    with pytest.raises(ValueError, match="2 seeds for 1 captions"):
        client.generate(["a red square"], seed=[1, 2])
    with pytest.raises(ServingError) as err:
        client.predict({"text": _text("a")}, "nope")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


# --------------------------------------------------------------------------- #
# Receive limit.

def _video_signature(frames: int, size: int) -> meta_graph_pb2.SignatureDef:
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    info = sig.outputs["video"]
    info.dtype = types_pb2.DT_UINT8
    info.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[
        tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (-1, frames, size, size, 3)]))
    return sig


def test_receive_limit_is_sized_to_the_request():
    sig = _video_signature(16, 64)
    per_video = 16 * 64 * 64 * 3
    # Small requests keep gRPC's default; big ones get at least their worst case
    # (TF Serving's int_val encoding: up to 2 bytes per uint8), not much more.
    assert client_lib.receive_limit(sig, 1) == 4 << 20
    limit = client_lib.receive_limit(sig, 32)
    assert 2 * 32 * per_video <= limit <= 2 * 32 * per_video + (32 << 10)
    assert client_lib.receive_limit(sig, 32, output_filter=["other"]) == 4 << 20


def test_client_grows_its_receive_limit_for_bigger_batches(server, task):
    with client_lib.GrpcClient(server.target, min_receive_bytes=1024, timeout=TIMEOUT) as c:
        one = c.generate(CAPTIONS[:1], seed=0)
        small_limit = c.receive_limit
        four = c.generate(CAPTIONS * 2, seed=0)
        assert c.receive_limit > small_limit >= 2 * one.nbytes
        np.testing.assert_array_equal(four, task.generate(CAPTIONS * 2, seed=0))
    # Without sizing, the same response does not fit an 8 KiB limit.
    with grpc.insecure_channel(server.target,
                               options=[("grpc.max_receive_message_length", 8192)]) as channel:
        small = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            small.Predict(_request({"text": _text(*CAPTIONS * 2), "seed": _seeds(4)}),
                          timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --------------------------------------------------------------------------- #
# Versions, warmup, concurrency.

@pytest.mark.slow
def test_new_version_is_picked_up_without_restart(base, task, tiny_run_dir, tmp_path):
    own = str(tmp_path / "tfvideogen")
    shutil.copytree(os.path.join(base, "1"), os.path.join(own, "1"))
    cfg = DevServerConfig(own, port=0, poll_seconds=0.2, max_batch_size=MAX_BATCH)
    with DevServer(cfg) as srv, client_lib.GrpcClient(srv.target, timeout=TIMEOUT) as c:
        first = c.generate(CAPTIONS, seed=0)
        # Version 2: other weights (shifted RGB bias), exported while serving.
        task2 = training.load_task(tiny_run_dir)[0]
        bias = task2.sampler.rgb_layer.bias
        bias.assign(bias + 0.5)
        export.export_saved_model(task2, own, verify=False)
        _wait_for(lambda: srv.manager.current.version == 2, what="version 2")
        second = c.generate(CAPTIONS, seed=0)
        assert c.last_model_spec.version.value == 2
        np.testing.assert_array_equal(second, task2.generate(CAPTIONS, seed=0))
        assert not np.array_equal(second, first)
        states = {s["version"]: s["state"] for s in c.status()}
        assert states == {1: "END", 2: "AVAILABLE"}
        assert srv.manager.current.warmup_records == 7
        with pytest.raises(ServingError) as err, client_lib.GrpcClient(
                srv.target, version=1, timeout=TIMEOUT) as pinned:
            pinned.generate(["a"])
        assert err.value.code == grpc.StatusCode.NOT_FOUND

        # Version 3 with a corrupt warmup file: its load fails, version 2 keeps serving.
        staging = os.path.join(own, ".staging")
        shutil.copytree(os.path.join(own, "2"), staging)
        with open(warmup.warmup_path(staging), "wb") as f:
            f.write(b"not a tfrecord file at all")
        os.rename(staging, os.path.join(own, "3"))
        _wait_for(lambda: {s["version"]: s["state"] for s in c.status()}.get(3) == "END",
                  what="version 3 to fail")
        status = {s["version"]: s for s in c.status()}
        assert status[3]["state"] == "END" and status[3]["error_code"] != 0
        assert "not a TFRecord file of PredictionLog" in status[3]["error_message"]
        np.testing.assert_array_equal(c.generate(CAPTIONS, seed=0), second)
        assert c.last_model_spec.version.value == 2


def test_bounded_concurrency(base):
    cfg = DevServerConfig(base, port=0, max_concurrent_requests=1, max_queued_requests=1,
                          warmup=False)
    with DevServer(cfg) as srv:
        servable = srv.manager.current
        real = servable.functions["serving_default"]
        running, peak, lock = [0], [0], threading.Lock()

        def slow(**kwargs):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(1.0)
            try:
                return real(**kwargs)
            finally:
                with lock:
                    running[0] -= 1

        servable.functions["serving_default"] = slow
        codes = []
        channels = [grpc.insecure_channel(srv.target) for _ in range(6)]
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        start = threading.Barrier(len(channels))

        def call(channel):
            one = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            start.wait(timeout=TIMEOUT)
            try:
                one.Predict(_good_request(), timeout=TIMEOUT)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())

        threads = [threading.Thread(target=call, args=(c,)) for c in channels]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT)
        for channel in channels:
            channel.close()
        assert len(codes) == 6
        assert peak[0] == 1  # one model run at a time
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        with grpc.insecure_channel(srv.target) as channel:  # and it recovers
            after = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert "video" in after.Predict(_good_request(), timeout=TIMEOUT).outputs


def test_config_files_configure_the_dev_server(base):
    cfg = DevServerConfig("elsewhere", model_name="other")
    cfg.apply_model_config(os.path.join(base, "models.config"))
    cfg.apply_batching_config(os.path.join(base, "batching.config"))
    assert (cfg.model_name, cfg.model_base_path, cfg.max_batch_size) == (
        "tfvideogen", os.path.abspath(base), 8)
    with pytest.raises(ValueError, match="poll_seconds"):
        DevServerConfig(base, poll_seconds=0.0).validate()
    with pytest.raises(ValueError, match="max_batch_size"):
        DevServerConfig(base, max_batch_size=0).validate()


# --------------------------------------------------------------------------- #
# REST: TF Serving's documented JSON format.

def test_rest_request_encoding_matches_the_documented_format():
    inputs = {"text": ["a red square"], "seed": np.array([3], np.int64)}
    assert rest.encode_predict_request(inputs, "serving_default") == {
        "signature_name": "serving_default",
        "inputs": {"text": ["a red square"], "seed": [3]}}
    assert rest.encode_predict_request(inputs, row_format=True) == {
        "instances": [{"text": "a red square", "seed": 3}]}
    # One named input: instances are the bare values (doc: ["foo", "bar", "baz"]).
    assert rest.encode_predict_request({"text": ["foo", "bar", "baz"]}, row_format=True) == {
        "instances": ["foo", "bar", "baz"]}
    # Binary strings are {"b64": ...}, as are all values of *_bytes tensors.
    body = rest.encode_predict_request({"image_bytes": [b"image bytes"], "raw": [b"\xff\x00"]})
    assert body["inputs"]["image_bytes"] == [{"b64": "aW1hZ2UgYnl0ZXM="}]
    assert body["inputs"]["raw"] == [{"b64": "/wA="}]
    with pytest.raises(ValueError, match="same 0th dimension"):
        rest.encode_predict_request({"a": [1, 2], "b": [1]}, row_format=True)


def test_rest_decoding_of_documented_requests_and_responses():
    # The doc's row example (three named inputs) and its columnar twin decode alike.
    rows = json.loads('{"instances": [{"tag": "foo", "signal": [1, 2, 3, 4, 5], '
                      '"sensor": [[1, 2], [3, 4]]}, {"tag": "bar", "signal": [3, 4, 1, 2, 5], '
                      '"sensor": [[4, 5], [6, 8]]}]}')
    cols = json.loads('{"inputs": {"tag": ["foo", "bar"], "signal": [[1, 2, 3, 4, 5], '
                      '[3, 4, 1, 2, 5]], "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]}}')
    dtypes = {"tag": types_pb2.DT_STRING, "signal": types_pb2.DT_INT64,
              "sensor": types_pb2.DT_FLOAT}
    by_row, row_format = rest.decode_predict_request(rows, dtypes)
    by_col, col_format = rest.decode_predict_request(cols, dtypes)
    assert row_format and not col_format
    for name in dtypes:
        np.testing.assert_array_equal(by_row[name], by_col[name])
    assert list(by_row["tag"]) == [b"foo", b"bar"] and by_row["signal"].dtype == np.int64
    assert by_row["sensor"].shape == (2, 2, 2) and by_row["sensor"].dtype == np.float32
    with pytest.raises(ValueError, match="input 'signal'.*non-integer"):
        rest.decode_predict_request({"inputs": {"tag": ["x"], "signal": [1.5],
                                                "sensor": [[[1.0]]]}}, dtypes)
    with pytest.raises(ValueError, match="exactly one of"):
        rest.decode_predict_request({"inputs": {}, "instances": []}, dtypes)

    # Responses: the doc's single-output row reply, named outputs, NaN tokens, errors.
    out = rest.decode_predict_response(json.loads('{"predictions": [3.5, 4.0, 5.5]}'), ["y"],
                                       {"y": np.float32})
    np.testing.assert_array_equal(out["y"], np.array([3.5, 4.0, 5.5], np.float32))
    named = rest.decode_predict_response(
        json.loads('{"outputs": {"a": [1, 2], "b": [[NaN], [Infinity]]}}'))
    assert named["a"].tolist() == [1, 2] and np.isnan(named["b"][0, 0])
    rows_out = rest.decode_predict_response({"predictions": [{"a": 1, "b": "x"},
                                                             {"a": 2, "b": "y"}]})
    assert rows_out["a"].tolist() == [1, 2] and rows_out["b"].tolist() == [b"x", b"y"]
    with pytest.raises(ValueError, match="Servable not found"):
        rest.decode_predict_response({"error": "Servable not found for request: Latest(x)"})
    video = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3)
    assert rest.encode_predict_response({"video": video}, row_format=False) == {
        "outputs": [[0, 1, 2], [3, 4, 5]]}
    assert rest.encode_predict_response({"a": video, "b": video}, row_format=True) == {
        "predictions": [{"a": [0, 1, 2], "b": [0, 1, 2]}, {"a": [3, 4, 5], "b": [3, 4, 5]}]}


def test_rest_round_trip_through_the_dev_server(server, task):
    url = f"http://127.0.0.1:{server.rest_port}"
    for row_format in (False, True):
        c = client_lib.RestClient(url, row_format=row_format, timeout=TIMEOUT)
        np.testing.assert_array_equal(c.generate(CAPTIONS, seed=[5, 6]),
                                      task.generate(CAPTIONS, seed=[5, 6]))
        np.testing.assert_array_equal(c.embed_text(CAPTIONS),
                                      task.text_encoder(tf.constant(CAPTIONS)).numpy())
    status = client_lib.RestClient(url).status()
    assert status == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                          "error_message": ""}}]}
    meta = client_lib.RestClient(url).metadata()
    assert meta["model_spec"]["version"] == "1"
    assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]


def test_rest_errors_use_tf_serving_http_statuses(server):
    url = f"http://127.0.0.1:{server.rest_port}/v1/models"
    cases = [(f"{url}/nope:predict", b'{"instances": [1.0]}', 404, "Latest(nope)"),
             (f"{url}/tfvideogen:predict", b"{not json", 400, "JSON"),
             (f"{url}/tfvideogen:predict", b'{"inputs": {"text": ["a"], "seed": [1.5]}}', 400,
              "input 'seed'"),
             (f"{url}/tfvideogen:predict",
              b'{"signature_name": "nope", "inputs": {"text": ["a"]}}', 400, "nope")]
    for target, body, status, words in cases:
        request = urllib.request.Request(target, data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=TIMEOUT)
        assert err.value.code == status
        assert words in json.loads(err.value.read())["error"]
    with pytest.raises(ServingError) as err:
        client_lib.RestClient(f"http://127.0.0.1:{server.rest_port}", model="nope").status()
    assert err.value.code == grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------- #
# TensorProto conversion.

def test_tensor_proto_round_trips_and_tf_serving_encodings():
    for value in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.float32([[1.5, -2.0]]),
                  np.int64([0, -5, 2**40]), _text("héllo", "b")):
        proto = tensors.to_tensor_proto(value)
        back = tensors.to_numpy(proto)
        assert back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back, value)
    # TF Serving itself answers with typed fields (uint8 in int_val).
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, int_val=[0, 200, 255])
    proto.tensor_shape.dim.add(size=3)
    decoded = tensors.to_numpy(proto)
    assert decoded.dtype == np.uint8 and decoded.tolist() == [0, 200, 255]
    np.testing.assert_array_equal(tensors.to_numpy(tf.make_tensor_proto([[1.0, 2.0]])),
                                  [[1.0, 2.0]])
    with pytest.raises(ValueError, match="needs 16 bytes"):
        tensors.to_numpy(_bad_tensor_content())


# --------------------------------------------------------------------------- #
# The command-line tools.

def _lines(stream, sink: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line)


@pytest.mark.slow
def test_cli_dev_server_client_and_sigterm(base, task, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "serve", "dev_server.py"),
         f"--model_config_file={os.path.join(base, 'models.config')}",
         f"--batching_parameters_file={os.path.join(base, 'batching.config')}", "--port=0",
         "--poll_seconds=0.5"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=ROOT, env=env)
    try:
        out: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True)
        reader.start()
        line = out.get(timeout=120)
        assert line.startswith("serving 'tfvideogen' version 1 on 127.0.0.1:"), line
        target = line.split(" on ")[1].split(",")[0].strip()
        video = tmp_path / "clip.gif"
        done = subprocess.run(
            [sys.executable, os.path.join(ROOT, "serve", "client.py"), f"--target={target}",
             "--model=tfvideogen", f"--text={CAPTIONS[0]}", "--seed=2", f"--out={video}"],
            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        frames = iio.imread(video, index=None)
        assert frames.shape[:3] == (4, 16, 16)
        expected = task.generate(CAPTIONS[:1], seed=2)[0]
        # GIF palettes are lossy; the clip must still be this caption/seed's video.
        assert np.abs(frames[..., :3].astype(int) - expected.astype(int)).mean() < 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # graceful: exit status 0
        reader.join(timeout=10)
        assert "stopped" in "".join(out.queue)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
