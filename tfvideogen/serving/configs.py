"""TF Serving config files: `models.config` (model_config_list) and `batching.config`.

`ModelServerConfig` comes from tensorflow-serving-api. `BatchingParameters`
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto) is not in
that package, so it is declared here with the same field names, numbers and
types: text written from it is what `--batching_parameters_file` parses.
"""

from __future__ import annotations

import dataclasses
import os

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"


@dataclasses.dataclass
class ServingConfig:
    """How TF Serving should serve an export (written next to the versions).

    `base_path`: the model base path *as the server sees it* (e.g.
    `/models/tfvideogen` inside the container); empty = the export directory's
    absolute local path. `max_batch_size` also bounds the dev server's batch.
    """

    model_name: str = "tfvideogen"
    base_path: str = ""
    max_batch_size: int = 8
    batch_timeout_micros: int = 5000
    max_enqueued_batches: int = 64
    num_batch_threads: int = 2

    def validate(self) -> ServingConfig:
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise ValueError(f"model_name must be a non-empty name without '/' or ':', "
                             f"got {self.model_name!r}")
        for key in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        return self


def _batching_parameters_class():
    file = descriptor_pb2.FileDescriptorProto(
        name="tfvideogen/serving/batching_parameters.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    msg = file.message_type.add(name="BatchingParameters")
    f = descriptor_pb2.FieldDescriptorProto
    for name, number, wrapper in (("max_batch_size", 1, "Int64Value"),
                                  ("batch_timeout_micros", 2, "Int64Value"),
                                  ("max_enqueued_batches", 3, "Int64Value"),
                                  ("num_batch_threads", 4, "Int64Value"),
                                  ("thread_pool_name", 5, "StringValue")):
        msg.field.add(name=name, number=number, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL,
                      type_name=f".google.protobuf.{wrapper}")
    msg.field.add(name="allowed_batch_sizes", number=6, type=f.TYPE_INT64,
                  label=f.LABEL_REPEATED)
    msg.field.add(name="pad_variable_length_inputs", number=7, type=f.TYPE_BOOL,
                  label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParameters = _batching_parameters_class()


def allowed_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to the max, ending with it (TF Serving requires the last = max)."""
    sizes = [1 << i for i in range(max_batch_size.bit_length()) if (1 << i) < max_batch_size]
    return sizes + [max_batch_size]


def models_config_text(cfg: ServingConfig, base_path: str) -> str:
    """The `--model_config_file` text: one model, latest version served."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=cfg.model_name, base_path=base_path, model_platform="tensorflow")
    model.model_version_policy.latest.num_versions = 1
    return text_format.MessageToString(config)


def batching_config_text(cfg: ServingConfig) -> str:
    """The `--batching_parameters_file` text (allowed sizes: powers of two, then the max)."""
    params = BatchingParameters()
    params.max_batch_size.value = cfg.max_batch_size
    params.batch_timeout_micros.value = cfg.batch_timeout_micros
    params.max_enqueued_batches.value = cfg.max_enqueued_batches
    params.num_batch_threads.value = cfg.num_batch_threads
    params.allowed_batch_sizes.extend(allowed_batch_sizes(cfg.max_batch_size))
    return text_format.MessageToString(params)


def parse_models_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses `models.config` text; raises ValueError naming the problem."""
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as e:
        raise ValueError(f"not a ModelServerConfig text proto: {e}") from None


def parse_batching_config(text: str):
    """Parses `batching.config` text into BatchingParameters; ValueError on bad text."""
    try:
        return text_format.Parse(text, BatchingParameters())
    except text_format.ParseError as e:
        raise ValueError(f"not a BatchingParameters text proto: {e}") from None


def read_text(path: str) -> str:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def write_text_atomic(path: str, text: str) -> None:
    """Writes `path` via a temp file and a rename, so readers never see half a file."""
    import tensorflow as tf

    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
