"""Clients for a served tfvideogen model: gRPC (`GrpcClient`) and REST (`RestClient`).

    with GrpcClient("127.0.0.1:8500", model="tfvideogen") as client:
        videos = client.generate(["a red circle moving left"], seed=0)  # uint8 [1,T,H,W,3]

Both talk to TF Serving (or `tfvideogen.serving.dev_server`) and return what
`TextToVideo.generate` returns: the same (caption, seed) gives the same video.

gRPC caps received messages at 4 MiB by default, which a batch of float32
videos overflows; the served video is uint8, and the client sizes its receive
limit to each request from the signature (batch x T x H x W x 3, at TF
Serving's worst-case 2 bytes per uint8 in `int_val`), reopening the channel
when a bigger request needs more.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfvideogen.serving import rest, tensors
from tfvideogen.serving.errors import ServingError
from tfvideogen.utils.seeds import per_caption_seeds

DEFAULT_RECEIVE_BYTES = 4 << 20  # gRPC's default
MAX_METADATA_BYTES = 64 << 20
_MIB = 1 << 20


# --------------------------------------------------------------------------- #
# Input helpers shared by both clients.

def captions_array(texts: Sequence[str] | str) -> np.ndarray:
    """Captions -> object array of UTF-8 bytes [B]; ValueError on an empty/blank one."""
    texts = [texts] if isinstance(texts, str | bytes) else list(texts)
    if not texts:
        raise ValueError("no captions given")
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str | bytes):
            raise ValueError(f"caption {i} is {type(t).__name__}, not a string")
        raw = t.encode("utf-8") if isinstance(t, str) else bytes(t)
        if not raw.strip():
            raise ValueError(f"caption {i} is empty")
        out.append(raw)
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array


class _VideoAPI(abc.ABC):
    """The four tfvideogen signatures on top of a transport's `predict()`."""

    @abc.abstractmethod
    def predict(self, inputs: Mapping[str, object], signature_name: str = "serving_default",
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Raw PredictRequest: input name -> array; returns output name -> array."""

    def generate(self, texts: Sequence[str] | str, seed: int | Sequence[int] = 0) -> np.ndarray:
        """`serving_default`: captions + seeds -> uint8 video [B, T, H, W, 3]."""
        text = captions_array(texts)
        out = self.predict({"text": text, "seed": per_caption_seeds(seed, len(text))},
                           "serving_default")
        return _checked(out["video"], np.uint8, "video")

    def generate_from_z(self, z: np.ndarray, texts: Sequence[str] | str) -> np.ndarray:
        """`generate`: explicit latents float32 [B, Z] + captions -> uint8 video."""
        text = captions_array(texts)
        out = self.predict({"z": np.asarray(z, np.float32), "text": text}, "generate")
        return _checked(out["video"], np.uint8, "video")

    def generate_from_embedding(self, z: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        """`generate_from_embedding`: float32 [B, Z] and [B, D] -> uint8 video."""
        out = self.predict({"z": np.asarray(z, np.float32),
                            "text_embedding": np.asarray(text_embedding, np.float32)},
                           "generate_from_embedding")
        return _checked(out["video"], np.uint8, "video")

    def embed_text(self, texts: Sequence[str] | str) -> np.ndarray:
        """`embed_text`: captions -> float32 [B, D]."""
        out = self.predict({"text": captions_array(texts)}, "embed_text")
        return _checked(out["text_embedding"], np.float32, "text_embedding")


def _checked(array: np.ndarray, dtype, name: str) -> np.ndarray:
    if array.dtype != dtype:
        raise ServingError(grpc.StatusCode.INTERNAL,
                           f"server returned {name} as {array.dtype}, expected {np.dtype(dtype)}")
    return array


# --------------------------------------------------------------------------- #
# gRPC.

def receive_limit(signature: meta_graph_pb2.SignatureDef, batch: int,
                  output_filter: Sequence[str] = (), floor: int = DEFAULT_RECEIVE_BYTES) -> int:
    """Bytes a Predict response of `batch` rows can take, at least `floor`.

    Worst case over TF Serving's encodings plus 16 KiB for framing and the
    model spec, rounded up to 4 KiB. An output with an open non-batch
    dimension gives 256 MiB.
    """
    total = 16 << 10
    for name, info in signature.outputs.items():
        if output_filter and name not in output_filter:
            continue
        dims = [d.size for d in info.tensor_shape.dim]
        shape = [batch if i == 0 and d < 0 else d for i, d in enumerate(dims)]
        size = None if info.tensor_shape.unknown_rank else tensors.max_wire_bytes(info.dtype,
                                                                                  shape)
        if size is None:
            return max(floor, 256 * _MIB)
        total += size
    return max(floor, -(-total // 4096) * 4096)


class GrpcClient(_VideoAPI):
    """PredictionService/ModelService client (TF Serving's gRPC API, port 8500).

    `version`: pin a version (None = the latest the server serves).
    `timeout`: seconds per call. `min_receive_bytes`: the receive limit's floor
    (gRPC's 4 MiB default); each Predict raises the limit to what its response
    can take. Errors raise `ServingError` (gRPC code + message).
    """

    def __init__(self, target: str = "127.0.0.1:8500", model: str = "tfvideogen",
                 version: int | None = None, *, timeout: float = 30.0,
                 min_receive_bytes: int = DEFAULT_RECEIVE_BYTES):
        if not target or ":" not in target:
            raise ValueError(f"target must be host:port, got {target!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if min_receive_bytes < 1024:
            raise ValueError(f"min_receive_bytes must be >= 1024, got {min_receive_bytes}")
        self.target, self.model, self.version, self.timeout = target, model, version, timeout
        self.min_receive_bytes = int(min_receive_bytes)
        self.receive_limit = 0
        self.last_model_spec = None
        self._signatures: dict[str, meta_graph_pb2.SignatureDef] | None = None
        self._signatures_version: int | None = None
        self._channel = None
        self._open(self.min_receive_bytes)

    def _open(self, limit: int) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = grpc.insecure_channel(
            self.target, options=[("grpc.max_receive_message_length", int(limit)),
                                  ("grpc.max_send_message_length", -1)])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.receive_limit = int(limit)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spec(self, spec, signature_name: str = "") -> None:
        spec.name = self.model
        if signature_name:
            spec.signature_name = signature_name
        if self.version is not None:
            spec.version.value = int(self.version)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingError.from_rpc_error(e) from None

    def signature_defs(self, refresh: bool = False) -> dict[str, meta_graph_pb2.SignatureDef]:
        """GetModelMetadata -> {signature name: SignatureDef} (cached per served version)."""
        if self._signatures is None or refresh:
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            self._spec(request.model_spec)
            while True:
                try:
                    response = self._call(self._predict.GetModelMetadata, request)
                    break
                except ServingError as e:
                    # A tiny floor can be below the metadata's own size: grow and retry.
                    if e.code != grpc.StatusCode.RESOURCE_EXHAUSTED or \
                            self.receive_limit >= MAX_METADATA_BYTES:
                        raise
                    self._open(min(self.receive_limit * 4, MAX_METADATA_BYTES))
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            self._signatures = dict(signature_map.signature_def)
            self._signatures_version = response.model_spec.version.value
        return self._signatures

    def status(self) -> list[dict]:
        """GetModelStatus -> [{"version", "state", "error_code", "error_message"}]."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request)
        state = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": state.Name(s.state),
                 "error_code": s.status.error_code, "error_message": s.status.error_message}
                for s in response.model_version_status]

    def predict(self, inputs: Mapping[str, object], signature_name: str = "serving_default",
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Raw Predict: {input name: numpy-like} -> {output name: numpy}.

        Numeric outputs are read-only views of the response bytes (no copy);
        `np.array(out)` before modifying them in place.
        """
        if not inputs:
            raise ValueError("no inputs given")
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature_name)
        batch = 1
        for name, value in inputs.items():
            array = tensors.as_array(value)
            batch = max(batch, array.shape[0] if array.ndim else 1)
            tensors.fill_tensor_proto(request.inputs[name], array)
        request.output_filter.extend(output_filter)
        for attempt in range(2):
            try:
                signature = self.signature_defs(refresh=attempt > 0).get(signature_name)
            except ServingError as e:
                if e.code != grpc.StatusCode.UNIMPLEMENTED:  # a proxy without metadata
                    raise
                signature = None
            if signature is not None:
                needed = receive_limit(signature, batch, output_filter, self.min_receive_bytes)
                if needed > self.receive_limit:
                    self._open(needed)
            try:
                response = self._call(self._predict.Predict, request)
                break
            except ServingError as e:
                # The served version changed shape under us: refresh metadata, retry once.
                if attempt or e.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
        self.last_model_spec = response.model_spec
        if response.model_spec.version.value != self._signatures_version:
            self._signatures = None  # a new version: re-read its signatures next time
        try:
            return {name: tensors.to_numpy(proto) for name, proto in response.outputs.items()}
        except ValueError as e:
            raise ServingError(grpc.StatusCode.INTERNAL, f"bad response tensor: {e}") from None


# --------------------------------------------------------------------------- #
# REST.

class RestClient(_VideoAPI):
    """TF Serving's REST API client (`/v1/models/<name>[...]:predict`, port 8501).

    Sends the columnar (`inputs`) format unless `row_format`; output names and
    dtypes come from the model's `/metadata` (cached). JSON is ~10x larger and
    slower than gRPC for videos: prefer `GrpcClient` for volume.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8501", model: str = "tfvideogen",
                 version: int | None = None, *, timeout: float = 60.0, row_format: bool = False):
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be http(s)://host:port, got {base_url!r}")
        self.base_url, self.model, self.version = base_url.rstrip("/"), model, version
        self.timeout, self.row_format = timeout, row_format
        self._outputs: dict[str, dict[str, np.dtype]] | None = None

    def url(self, suffix: str = "") -> str:
        path = f"{self.base_url}/v1/models/{urllib.parse.quote(self.model, safe='')}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        return path + suffix

    def _request(self, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("error", raw.decode("utf-8", "replace"))
            except (json.JSONDecodeError, AttributeError):
                message = raw.decode("utf-8", "replace") or e.reason
            raise ServingError.from_http(e.code, str(message)) from None
        except urllib.error.URLError as e:
            raise ServingError(grpc.StatusCode.UNAVAILABLE, f"{url}: {e.reason}") from None

    def status(self) -> dict:
        return self._request(self.url())

    def metadata(self) -> dict:
        return self._request(self.url("/metadata"))

    def output_dtypes(self, signature_name: str) -> dict[str, np.dtype]:
        """{output name: numpy dtype} of a signature, from `/metadata` (cached)."""
        if self._outputs is None:
            defs = self.metadata()["metadata"]["signature_def"]["signature_def"]
            self._outputs = {
                name: {out: rest.numpy_dtype(_datatype(info["dtype"]))
                       for out, info in sig.get("outputs", {}).items()}
                for name, sig in defs.items()
                if not name.startswith("__")}  # e.g. __saved_model_init_op
        if signature_name not in self._outputs:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature_name}" not found.')
        return self._outputs[signature_name]

    def predict(self, inputs: Mapping[str, object], signature_name: str = "serving_default",
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        dtypes = self.output_dtypes(signature_name)
        body = rest.encode_predict_request(inputs, signature_name, row_format=self.row_format)
        reply = self._request(self.url(":predict"), body)
        try:
            out = rest.decode_predict_response(reply, list(dtypes), dtypes)
        except ValueError as e:
            raise ServingError(grpc.StatusCode.INTERNAL, f"bad REST response: {e}") from None
        return {k: v for k, v in out.items() if not output_filter or k in output_filter}


def _datatype(name: str) -> int:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Value(name)


# --------------------------------------------------------------------------- #
# The CLI's job: captions -> video files.

@dataclasses.dataclass
class GenerateJob:
    """`serve/client.py`: which server, which captions/seeds, where to write videos.

    `rest_url` set -> REST (TF Serving's 8501 API), else gRPC at `target`.
    One caption writes `out`; several write `<stem>_<i><ext>`.
    """

    texts: list[str] = dataclasses.field(default_factory=list)
    seed: int = 0
    out: str = "out.mp4"
    target: str = "127.0.0.1:8500"
    rest_url: str = ""
    model: str = "tfvideogen"
    version: int | None = None
    fps: int = 8
    timeout: float = 30.0

    def validate(self) -> GenerateJob:
        captions_array(self.texts)
        if os.path.splitext(self.out)[1].lower() not in (".mp4", ".gif"):
            raise ValueError(f"--out must end in .mp4 or .gif, got {self.out!r}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        return self


def make_client(job: GenerateJob) -> GrpcClient | RestClient:
    if job.rest_url:
        return RestClient(job.rest_url, job.model, job.version, timeout=job.timeout)
    return GrpcClient(job.target, job.model, job.version, timeout=job.timeout)


def output_paths(out: str, count: int) -> list[str]:
    if count == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}_{i}{ext}" for i in range(count)]


def generate_to_files(job: GenerateJob) -> tuple[list[str], float]:
    """Requests the videos and writes them; returns (paths, request seconds)."""
    from tfvideogen.utils import video as video_lib

    job.validate()
    client = make_client(job)
    try:
        start = time.perf_counter()
        videos = client.generate(job.texts, seed=job.seed)
        elapsed = time.perf_counter() - start
    finally:
        if isinstance(client, GrpcClient):
            client.close()
    paths = output_paths(job.out, len(videos))
    for path, clip in zip(paths, videos):
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        video_lib.write_video(path, clip, job.fps)
    return paths, elapsed
