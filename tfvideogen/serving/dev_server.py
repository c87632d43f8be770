"""A local PredictionService in Python, for development and tests only.

`tensorflow_model_server` cannot be installed everywhere (not on this
project's dev machines), so this server speaks the same gRPC API
(tensorflow-serving-api protos) over `tf.saved_model.load`:

- `PredictionService.Predict` and `GetModelMetadata` (`signature_def`),
  `ModelService.GetModelStatus`; optionally TF Serving's REST API
  (`/v1/models/<name>[/versions/<v>][:predict|/metadata]`);
- serves the highest integer version under the model base path (like TF
  Serving's default `latest {num_versions: 1}` policy), polls for new versions
  every `poll_seconds` and switches without restart, replaying the version's
  `assets.extra/tf_serving_warmup_requests` before it takes traffic;
- binds 127.0.0.1 unless told otherwise; bounded concurrency (model runs at
  once + a bounded queue; beyond it gRPC answers RESOURCE_EXHAUSTED) and a
  max batch size;
- TF Serving's status codes: NOT_FOUND for an unknown model or version,
  FAILED_PRECONDITION for an unknown signature (TF Serving's
  `predict_util.cc`: `Serving signature key "x" not found.`), INVALID_ARGUMENT
  for missing/extra inputs, a wrong dtype or shape, a batch over the max, an
  empty caption (the graph's own assertion) and other op errors.

It is not a production server: use TF Serving (serve/README.md) for that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from tfvideogen.serving import configs, rest, tensors
from tfvideogen.serving import warmup as warmup_lib
from tfvideogen.serving.errors import ServingError, clean_op_error, code_from_value

_VERSION = re.compile(r"^\d+$")
_STATE = get_model_status_pb2.ModelVersionStatus.State
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 0.05, 60.0
MAX_MESSAGE_BYTES = 64 << 20


@dataclasses.dataclass
class DevServerConfig:
    """Dev server settings. `port=0` / `rest_api_port=0` pick a free port;
    `rest_api_port=None` disables REST. `max_batch_size` bounds every request's
    0th dimension; `max_concurrent_requests` model runs proceed at once and up
    to `max_queued_requests` more wait (further RPCs get RESOURCE_EXHAUSTED)."""

    model_base_path: str = "models/tfvideogen"
    model_name: str = "tfvideogen"
    host: str = "127.0.0.1"
    port: int = 8500
    rest_api_port: int | None = None
    max_batch_size: int = 8
    max_concurrent_requests: int = 2
    max_queued_requests: int = 16
    poll_seconds: float = 1.0
    warmup: bool = True
    grace_seconds: float = 5.0

    def validate(self) -> DevServerConfig:
        if not self.model_base_path:
            raise ValueError("model_base_path is required")
        if not self.model_name:
            raise ValueError("model_name is required")
        for key in ("max_batch_size", "max_concurrent_requests"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.max_queued_requests < 0:
            raise ValueError(f"max_queued_requests must be >= 0, got {self.max_queued_requests}")
        if not MIN_POLL_SECONDS <= self.poll_seconds <= MAX_POLL_SECONDS:
            raise ValueError(f"poll_seconds must be in [{MIN_POLL_SECONDS}, {MAX_POLL_SECONDS}], "
                             f"got {self.poll_seconds}")
        for key in ("port", "rest_api_port"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 65535:
                raise ValueError(f"{key} must be in [0, 65535], got {value}")
        return self

    def apply_model_config(self, path: str) -> DevServerConfig:
        """Takes name and base path from a `--model_config_file` (one model only)."""
        config = configs.parse_models_config(configs.read_text(path))
        models = list(config.model_config_list.config)
        if len(models) != 1:
            raise ValueError(f"{path}: the dev server serves exactly one model, found "
                             f"{len(models)}")
        self.model_name, self.model_base_path = models[0].name, models[0].base_path
        return self

    def apply_batching_config(self, path: str) -> DevServerConfig:
        """Takes `max_batch_size` from a `--batching_parameters_file`."""
        params = configs.parse_batching_config(configs.read_text(path))
        if params.HasField("max_batch_size"):
            self.max_batch_size = int(params.max_batch_size.value)
        return self


# --------------------------------------------------------------------------- #
# A loaded version.

def _read_signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        model = saved_model_pb2.SavedModel.FromString(f.read())
    for meta_graph in model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path}: no MetaGraph tagged 'serve'")


class Servable:
    """One loaded SavedModel version: its signature defs and callable signatures."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.signature_defs = _read_signature_defs(path)
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self.functions = dict(self._loaded.signatures)
        self.warmup_records = 0

    def signature(self, name: str) -> tuple[meta_graph_pb2.SignatureDef, Callable]:
        key = name or "serving_default"
        if key not in self.functions or key not in self.signature_defs:
            available = ", ".join(sorted(self.functions))
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{key}" not found. '
                               f"Available: {available}")
        return self.signature_defs[key], self.functions[key]


def validate_inputs(signature_name: str, signature: meta_graph_pb2.SignatureDef,
                    inputs: Mapping[str, np.ndarray], dtypes: Mapping[str, int],
                    max_batch_size: int) -> None:
    """TF Serving's checks (input names), plus dtype, shape and batch, by name."""
    expected, given = set(signature.inputs), set(inputs)
    if expected != given:
        extra, missing = sorted(given - expected), sorted(expected - given)
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(given)}!={len(expected)} "
            f"len({{{','.join(sorted(given))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
    batch = {}
    for name in sorted(expected):
        info, array = signature.inputs[name], inputs[name]
        if dtypes[name] != info.dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{name}' of signature '{signature_name}' must be "
                f"{tensors.dtype_name(info.dtype)}, got {tensors.dtype_name(dtypes[name])}")
        if not info.tensor_shape.unknown_rank:
            want = [d.size for d in info.tensor_shape.dim]
            if len(want) != array.ndim or any(w not in (-1, g) for w, g in zip(want, array.shape)):
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input '{name}' of signature '{signature_name}' must have shape "
                    f"{want} (-1 = any), got {list(array.shape)}")
        if array.ndim:
            batch[name] = array.shape[0]
    if len(set(batch.values())) > 1:
        sizes = ", ".join(f"{k}={v}" for k, v in batch.items())
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"inputs must have equal 0th-dimension (batch) size: {sizes}")
    size = next(iter(batch.values()), 1)
    if size < 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "empty batch: every input has 0 rows")
    if size > max_batch_size:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"batch size {size} is larger than the maximum batch size "
                           f"{max_batch_size} (split the request)")


# --------------------------------------------------------------------------- #
# Versions: polling, loading, warmup, status.

class ModelManager:
    """Keeps the highest version of one model loaded; polls for new ones.

    A version that fails to load (or whose warmup fails) is marked END with
    its error and skipped until one of its files changes (e.g. a copy that
    was still in progress completes); the previous version keeps serving.
    """

    def __init__(self, name: str, base_path: str, run: Callable, warmup: bool = True):
        self.name, self.base_path = name, base_path
        self._run = run  # (servable, signature, inputs, dtypes, output_filter, max_batch)
        self._warmup = warmup
        self._lock = threading.Lock()
        self._current: Servable | None = None
        # version -> (state, error code, message)
        self._states: dict[int, tuple[int, grpc.StatusCode, str]] = {}
        self._failed: dict[int, tuple] = {}  # version -> its files' mtimes at failure

    @property
    def current(self) -> Servable | None:
        return self._current

    def versions_on_disk(self) -> list[int]:
        if not tf.io.gfile.isdir(self.base_path):
            return []
        found = []
        for entry in tf.io.gfile.listdir(self.base_path):
            entry = entry.rstrip("/")
            if _VERSION.match(entry) and tf.io.gfile.exists(
                    os.path.join(self.base_path, entry, "saved_model.pb")):
                found.append(int(entry))
        return sorted(found)

    def _mtime(self, version: int) -> tuple:
        root = os.path.join(self.base_path, str(version))
        stamps = []
        for name in ("saved_model.pb", os.path.join("variables", "variables.index"),
                     os.path.join(warmup_lib.WARMUP_DIR, warmup_lib.WARMUP_FILE)):
            try:
                stamps.append(tf.io.gfile.stat(os.path.join(root, name)).mtime_nsec)
            except tf.errors.OpError:
                stamps.append(-1)
        return tuple(stamps)

    def poll(self) -> bool:
        """Loads the highest version if it is not the one served; True if it switched."""
        candidates = [v for v in self.versions_on_disk()
                      if self._failed.get(v) != self._mtime(v)]
        if not candidates:
            return False
        target = candidates[-1]
        current = self._current
        if current is not None and current.version == target:
            return False
        self._set_state(target, _STATE.LOADING)
        try:
            servable = Servable(self.name, target, os.path.join(self.base_path, str(target)))
            if self._warmup:
                servable.warmup_records = self._replay_warmup(servable)
        except Exception as e:  # any load failure: keep serving the old version
            message = e.message if isinstance(e, ServingError) else f"{type(e).__name__}: {e}"
            logging.error("model %s version %d failed to load: %s", self.name, target, message)
            self._failed[target] = self._mtime(target)
            code = e.code if isinstance(e, ServingError) else grpc.StatusCode.UNKNOWN
            self._set_state(target, _STATE.END, code, message)
            return False
        with self._lock:
            old, self._current = self._current, servable
        self._set_state(target, _STATE.AVAILABLE)
        if old is not None:
            self._set_state(old.version, _STATE.END)  # unloaded (like latest{1})
        logging.info("model %s: serving version %d (%d warmup records replayed)", self.name,
                     target, servable.warmup_records)
        return True

    def _replay_warmup(self, servable: Servable) -> int:
        path = warmup_lib.warmup_path(servable.path)
        if not tf.io.gfile.exists(path):
            return 0
        records = warmup_lib.read_warmup(path)
        for i, record in enumerate(records):
            request = record.predict_log.request
            inputs = {k: tensors.to_numpy(v) for k, v in request.inputs.items()}
            dtypes = {k: v.dtype for k, v in request.inputs.items()}
            try:
                self._run(servable, request.model_spec.signature_name, inputs, dtypes,
                          list(request.output_filter), None)
            except ServingError as e:
                raise ServingError(e.code, f"warmup record {i} failed: {e.message}") from None
        return len(records)

    def _set_state(self, version: int, state: int, code: grpc.StatusCode = grpc.StatusCode.OK,
                   message: str = "") -> None:
        with self._lock:
            self._states[version] = (state, code, message)

    def resolve(self, spec) -> Servable:
        """A request's ModelSpec -> the servable; NOT_FOUND/INVALID_ARGUMENT like TF Serving."""
        if spec.version_label:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {spec.version_label}")
        current = self._current
        wanted = spec.version.value if spec.HasField("version") else None
        request = (f"Specific({spec.name}, {wanted})" if wanted is not None
                   else f"Latest({spec.name})")
        if spec.name != self.name or current is None or (
                wanted is not None and wanted != current.version):
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {request}")
        return current

    def status(self, spec) -> get_model_status_pb2.GetModelStatusResponse:
        if spec.version_label:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {spec.version_label}")
        with self._lock:
            states = dict(self._states)
        if spec.name != self.name or not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {spec.name}")
        if spec.HasField("version"):
            if spec.version.value not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version "
                                   f"{spec.version.value} of model {spec.name}")
            states = {spec.version.value: states[spec.version.value]}
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states):
            state, code, message = states[version]
            response.model_version_status.add(
                version=version, state=state,
                status=status_pb2.StatusProto(error_code=code.value[0], error_message=message))
        return response


# --------------------------------------------------------------------------- #
# The server.

class DevServer:
    """gRPC (and optionally REST) PredictionService over the versions in a base path.

        with DevServer(DevServerConfig("models/tfvideogen", port=0)) as server:
            client = GrpcClient(server.target)
    """

    def __init__(self, cfg: DevServerConfig):
        self.cfg = cfg.validate()
        self.manager = ModelManager(cfg.model_name, cfg.model_base_path, self._execute,
                                    warmup=cfg.warmup)
        self._slots = threading.BoundedSemaphore(cfg.max_concurrent_requests)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._grpc: grpc.Server | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.port = self.rest_port = None

    @property
    def target(self) -> str:
        return f"{self.cfg.host}:{self.port}"

    # ---- lifecycle ----
    def start(self) -> DevServer:
        """Loads the highest version (if any), binds, starts polling. Returns self."""
        cfg = self.cfg
        self.manager.poll()
        if self.manager.current is None:
            logging.warning("no loadable version under %s yet; polling every %.2fs",
                            cfg.model_base_path, cfg.poll_seconds)
        workers = cfg.max_concurrent_requests + cfg.max_queued_requests
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict"),
            maximum_concurrent_rpcs=workers,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionServicer(self), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(self),
                                                                  self._grpc)
        address = f"{cfg.host}:{cfg.port}"
        try:
            self.port = self._grpc.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot bind gRPC to {address}: {e}") from None
        if not self.port:
            raise OSError(f"cannot bind gRPC to {address}")
        self._grpc.start()
        if cfg.rest_api_port is not None:
            self._http = _RestServer((cfg.host, cfg.rest_api_port), self)
            self.rest_port = self._http.server_address[1]
            self._spawn(self._http.serve_forever, "rest")
        self._spawn(self._poll_loop, "poll")
        logging.info("dev PredictionService for %r on %s (REST: %s)", cfg.model_name,
                     self.target, self.rest_port or "off")
        return self

    def _spawn(self, fn: Callable, name: str) -> None:
        thread = threading.Thread(target=fn, name=f"dev-server-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.cfg.poll_seconds):
            try:
                self.manager.poll()
            except Exception:  # keep polling whatever a bad directory does
                logging.exception("version poll failed")

    def stop(self, grace: float | None = None) -> None:
        """Stops accepting RPCs, lets in-flight ones finish (up to `grace` s), stops polling."""
        if self._stop.is_set():
            self._stopped.wait()
            return
        self._stop.set()
        grace = self.cfg.grace_seconds if grace is None else grace
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 1.0)
        for thread in self._threads:
            thread.join(timeout=max(grace, 1.0))
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until `stop()` finished (in slices, so signal handlers run)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.wait(0.2):
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- requests ----
    def _execute(self, servable: Servable, signature_name: str,
                 inputs: Mapping[str, np.ndarray], dtypes: Mapping[str, int],
                 output_filter: list[str], max_batch: int | None,
                 is_active: Callable[[], bool] = lambda: True) -> dict[str, np.ndarray]:
        signature, fn = servable.signature(signature_name)
        validate_inputs(signature_name or "serving_default", signature, inputs, dtypes,
                        max_batch if max_batch is not None else 1 << 62)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"output tensor alias not found in signature: {alias} Outputs "
                                   f"expected to be in the set {{{','.join(signature.outputs)}}}.")
        if len(set(output_filter)) != len(output_filter):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias")
        feed = {k: tf.constant(v) for k, v in inputs.items()}
        with self._slots:
            if not is_active():  # the client gave up while queued
                raise ServingError(grpc.StatusCode.CANCELLED, "request cancelled while queued")
            try:
                outputs = fn(**feed)
            except tf.errors.OpError as e:
                raise ServingError(code_from_value(e.error_code), clean_op_error(e.message)) \
                    from None
        wanted = output_filter or list(signature.outputs)
        return {k: outputs[k].numpy() for k in wanted}

    def predict(self, request: predict_pb2.PredictRequest,
                is_active: Callable[[], bool] = lambda: True) -> predict_pb2.PredictResponse:
        servable = self.manager.resolve(request.model_spec)
        inputs, dtypes = {}, {}
        for name, proto in request.inputs.items():
            try:
                inputs[name] = tensors.to_numpy(proto)
            except ValueError as e:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}': {e}") \
                    from None
            dtypes[name] = proto.dtype
        outputs = self._execute(servable, request.model_spec.signature_name, inputs, dtypes,
                                list(request.output_filter), self.cfg.max_batch_size, is_active)
        response = predict_pb2.PredictResponse()
        spec = response.model_spec
        spec.name, spec.signature_name = servable.name, (request.model_spec.signature_name
                                                         or "serving_default")
        spec.version.value = servable.version
        for name, array in outputs.items():
            tensors.fill_tensor_proto(response.outputs[name], array)
        return response

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Metadata field {field} is not supported")
        servable = self.manager.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(
            get_model_metadata_pb2.SignatureDefMap(signature_def=servable.signature_defs))
        return response


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: DevServer):
        self._server = server

    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        try:
            return self._server.predict(request, context.is_active)
        except ServingError as e:
            context.abort(e.code, e.message)
        except Exception as e:  # a bug here must not kill the worker thread silently
            logging.exception("Predict failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            return self._server.metadata(request)
        except ServingError as e:
            context.abort(e.code, e.message)


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: DevServer):
        self._server = server

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            return self._server.manager.status(request.model_spec)
        except ServingError as e:
            context.abort(e.code, e.message)


# --------------------------------------------------------------------------- #
# REST (TF Serving's /v1 API, JSON).

_REST_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                        r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                        r"(?P<verb>:predict|/metadata)?$")
MAX_REST_BODY = 64 << 20


def _message_to_dict(message) -> dict:
    """Proto -> JSON dict as TF Serving prints it (proto field names, defaults included)."""
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)
    except TypeError:  # protobuf >= 5 renamed the option
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)


class _RestServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, dev: DevServer):
        self.dev = dev
        super().__init__(address, _RestHandler)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    server: _RestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # route access logs to absl at debug level
        logging.debug("REST " + fmt, *args)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        if status != 200:  # a request body may be left unread: do not reuse the connection
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str):
        match = _REST_PATH.match(self.path.split("?", 1)[0])
        if not match:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Malformed request: {method} {self.path}")
        spec = predict_pb2.PredictRequest().model_spec
        spec.name = match["name"]
        if match["version"]:
            spec.version.value = int(match["version"])
        if match["label"]:
            spec.version_label = match["label"]
        verb = match["verb"] or ""
        if (method == "POST") != (verb == ":predict"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Malformed request: {method} {self.path}")
        return spec, verb

    def do_GET(self):  # noqa: N802
        dev = self.server.dev
        try:
            spec, verb = self._route("GET")
            if verb == "/metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    metadata_field=["signature_def"])
                request.model_spec.CopyFrom(spec)
                response = dev.metadata(request)
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                body = {"model_spec": json_format.MessageToDict(
                            response.model_spec, preserving_proto_field_name=True),
                        "metadata": {"signature_def": json_format.MessageToDict(
                            signature_map, preserving_proto_field_name=True)}}
            else:
                body = _message_to_dict(dev.manager.status(spec))
            self._reply(200, body)
        except ServingError as e:
            self._reply(e.http_status, {"error": e.message})

    def do_POST(self):  # noqa: N802
        dev = self.server.dev
        try:
            spec, _ = self._route("POST")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REST_BODY:
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"request body of {length} bytes exceeds {MAX_REST_BODY}")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as e:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"JSON Parse error: {e}") from None
            if not isinstance(body, dict):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "the request body must be a JSON object")
            signature_name = body.get("signature_name", "")
            if not isinstance(signature_name, str):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "'signature_name' must be a string")
            servable = dev.manager.resolve(spec)
            signature, _ = servable.signature(signature_name)
            input_dtypes = {k: v.dtype for k, v in signature.inputs.items()}
            try:
                inputs, row_format = rest.decode_predict_request(body, input_dtypes)
            except ValueError as e:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            dtypes = {k: input_dtypes.get(k, tensors.datatype_of(v)) for k, v in inputs.items()}
            outputs = dev._execute(servable, signature_name, inputs, dtypes, [],
                                   dev.cfg.max_batch_size)
            self._reply(200, rest.encode_predict_response(outputs, row_format))
        except ServingError as e:
            self._reply(e.http_status, {"error": e.message})


# --------------------------------------------------------------------------- #
# CLI helper.

def serve_forever(cfg: DevServerConfig, *, handle_signals: bool = True,
                  ready: Callable[[DevServer], None] | None = None) -> None:
    """Runs the dev server until SIGTERM/SIGINT (graceful: in-flight RPCs finish)."""
    import signal

    server = DevServer(cfg).start()
    if ready is not None:
        ready(server)

    def shutdown(signum, frame):
        logging.info("signal %d: stopping (grace %.1fs)", signum, cfg.grace_seconds)
        threading.Thread(target=server.stop, name="dev-server-stop", daemon=True).start()

    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(sig, shutdown)
    server.wait()
