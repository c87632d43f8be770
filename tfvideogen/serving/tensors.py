"""numpy <-> `TensorProto` conversion for the Predict API, without extra copies.

Numeric tensors travel as raw `tensor_content` bytes (one copy each way);
strings as `string_val`. Decoding also accepts the typed `*_val` fields that
TF Serving itself fills (it serialises outputs with `AsProtoField`, e.g. a
uint8 video as `int_val`), so clients work against both servers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# Bytes per element of a serialised TensorProto, worst case over its encodings:
# `tensor_content` is packed, but TF Serving's `AsProtoField` stores a uint8 as
# a varint in `int_val` (up to 2 bytes for 128..255) and int64 up to 10 bytes.
_MAX_WIRE_BYTES = {
    types_pb2.DT_UINT8: 2, types_pb2.DT_INT8: 10, types_pb2.DT_INT16: 10,
    types_pb2.DT_UINT16: 3, types_pb2.DT_INT32: 10, types_pb2.DT_INT64: 10,
    types_pb2.DT_FLOAT: 4, types_pb2.DT_DOUBLE: 8, types_pb2.DT_BOOL: 1,
    types_pb2.DT_HALF: 3, types_pb2.DT_BFLOAT16: 3,
}


def dtype_name(dtype: int) -> str:
    """A DataType enum -> its proto name, e.g. 9 -> "DT_INT64"."""
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def datatype_of(array: np.ndarray) -> int:
    """The `DataType` enum of a numpy array (bytes/str/object arrays are DT_STRING)."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    return tf.dtypes.as_dtype(array.dtype).as_datatype_enum


def as_array(value) -> np.ndarray:
    """numpy-like -> array; (nested) lists of str/bytes become object arrays.

    numpy's fixed-width "S"/"U" dtypes drop trailing NUL characters, which
    corrupts binary strings, so strings never go through them here.
    """
    if isinstance(value, np.ndarray):
        return value
    leaf = value
    while isinstance(leaf, list | tuple) and leaf:
        leaf = leaf[0]
    if isinstance(leaf, str | bytes):
        return np.array(value, dtype=object)
    return np.asarray(value)


def to_tensor_proto(value) -> tensor_pb2.TensorProto:
    """numpy-like -> TensorProto (numbers as `tensor_content`, strings as `string_val`).

    str items are UTF-8 encoded; a Python list of str becomes a DT_STRING tensor.
    """
    return fill_tensor_proto(tensor_pb2.TensorProto(), value)


def fill_tensor_proto(proto: tensor_pb2.TensorProto, value) -> tensor_pb2.TensorProto:
    """Fills an (empty) TensorProto in place, e.g. a response's map entry (no CopyFrom)."""
    array = as_array(value)
    for d in array.shape:
        proto.tensor_shape.dim.add(size=int(d))
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1))
        return proto
    proto.dtype = datatype_of(array)
    proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


def shape_proto(shape: Sequence[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape])


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """TensorProto -> numpy array; DT_STRING gives an object array of bytes.

    The fast path (`tensor_content`) is a read-only view of the proto's buffer.
    Raises ValueError when the content does not match the declared shape.
    """
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor shape {list(shape)} has a negative (unknown) dimension")
    count = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        if len(values) == 1 and count > 1:  # TF's convention: one value fills the shape
            values = values * count
        if len(values) != count:
            raise ValueError(f"DT_STRING tensor of shape {list(shape)} holds {len(values)} "
                             f"values, expected {count}")
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    try:
        np_dtype = np.dtype(tf.dtypes.as_dtype(proto.dtype).as_numpy_dtype)
    except TypeError:
        raise ValueError(f"unsupported tensor dtype {dtype_name(proto.dtype)}") from None
    if proto.tensor_content:
        if len(proto.tensor_content) != count * np_dtype.itemsize:
            raise ValueError(f"{dtype_name(proto.dtype)} tensor of shape {list(shape)} needs "
                             f"{count * np_dtype.itemsize} bytes of tensor_content, got "
                             f"{len(proto.tensor_content)}")
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    try:
        return tf.make_ndarray(proto)  # typed *_val fields (TF Serving's AsProtoField)
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot decode {dtype_name(proto.dtype)} tensor of shape "
                         f"{list(shape)}: {e}") from None


def max_wire_bytes(dtype: int, shape: Sequence[int]) -> int | None:
    """Upper bound of a tensor's serialised size (None if the shape or dtype is open)."""
    if any(d < 0 for d in shape) or dtype not in _MAX_WIRE_BYTES:
        return None
    return int(np.prod(shape, dtype=np.int64)) * _MAX_WIRE_BYTES[dtype] + 64
