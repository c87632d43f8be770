"""TF Serving warmup files: `assets.extra/tf_serving_warmup_requests`.

A TFRecord file of serialised `PredictionLog` protos; TF Serving replays each
record's request on the new version before it serves traffic (so the first
real request does not pay graph initialisation). TF Serving reads at most
1000 records and fails the load on a record it cannot run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import tensorflow as tf
from google.protobuf import message
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from tfvideogen.serving import tensors
from tfvideogen.serving.errors import clean_op_error

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def warmup_path(version_dir: str) -> str:
    return os.path.join(version_dir, WARMUP_DIR, WARMUP_FILE)


def predict_log(model_name: str, signature_name: str,
                inputs: Mapping[str, object]) -> prediction_log_pb2.PredictionLog:
    """A PredictionLog holding one PredictRequest (`inputs`: name -> numpy-like)."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensors.to_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup(path: str, records: Iterable[prediction_log_pb2.PredictionLog]) -> int:
    """Writes the records as a TFRecord file; returns how many were written."""
    records = list(records)
    if not records:
        raise ValueError("no warmup records to write")
    if len(records) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(records)} warmup records; TF Serving reads at most "
                         f"{MAX_WARMUP_RECORDS}")
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return len(records)


def read_warmup(path: str) -> list[prediction_log_pb2.PredictionLog]:
    """Parses a warmup file; raises ValueError on a bad or unsupported record."""
    records = []
    try:
        for i, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            if i >= MAX_WARMUP_RECORDS:
                raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warmup records")
            record = prediction_log_pb2.PredictionLog.FromString(raw)
            if record.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"{path}: record {i} is a {record.WhichOneof('log_type')}; "
                                 f"only predict_log records are supported")
            records.append(record)
    except tf.errors.OpError as e:
        raise ValueError(f"{path}: not a TFRecord file of PredictionLog records "
                         f"({clean_op_error(e.message)})") from None
    except message.DecodeError as e:
        raise ValueError(f"{path}: a record is not a PredictionLog ({e})") from None
    return records
