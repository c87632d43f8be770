"""TF Serving's REST JSON encoding of the Predict API (`/v1/models/<name>:predict`).

Documented at https://www.tensorflow.org/tfx/serving/api_rest:

- request: `{"signature_name": s, "inputs": {name: nested list}}` (columnar) or
  `{"signature_name": s, "instances": [{name: value}, ...]}` (row; a single-input
  signature may list bare values);
- response: `{"outputs": ...}` for a columnar request, `{"predictions": [...]}` for
  a row request; with a single output the name is omitted;
- strings are JSON strings; binary strings are `{"b64": "<base64>"}`; floats may
  be `NaN`/`Infinity`; errors are `{"error": "<message>"}` with an HTTP status.

Both directions are here: clients encode requests / decode responses, the dev
server decodes requests / encodes responses.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import numpy as np
from tensorflow.core.framework import types_pb2

from tfvideogen.serving import tensors

B64 = "b64"


# --------------------------------------------------------------------------- #
# Values.

def _string_to_json(value) -> str | dict:
    if isinstance(value, str):
        return value
    raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {B64: base64.b64encode(raw).decode("ascii")}


def to_json_value(value, *, binary: bool = False):
    """numpy-like -> JSON-ready nested lists. Strings: UTF-8 text, else (or when
    `binary`, as for TF Serving's `*_bytes` tensors) `{"b64": ...}`."""
    array = tensors.as_array(value)
    if array.dtype.kind in "OSU":
        def convert(v):
            if binary:
                raw = v.encode("utf-8") if isinstance(v, str) else bytes(v)
                return {B64: base64.b64encode(raw).decode("ascii")}
            return _string_to_json(v)
        flat = [convert(v) for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def _decode_strings(value):
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, dict):
        if set(value) != {B64}:
            raise ValueError(f"a string value must be a JSON string or {{\"b64\": ...}}, "
                             f"got an object with keys {sorted(value)}")
        try:
            return base64.b64decode(value[B64], validate=True)
        except (ValueError, TypeError):
            raise ValueError("invalid base64 in a {\"b64\": ...} value") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")


def from_json_value(value, dtype: np.dtype | None = None) -> np.ndarray:
    """JSON (nested lists) -> numpy. `dtype` object/None with strings -> bytes objects.

    Raises ValueError naming the problem (ragged lists, non-integers for an int dtype).
    """
    if dtype is not None and np.dtype(dtype) == np.dtype(object):
        decoded = _decode_strings(value)
        array = np.array(decoded, dtype=object)
        if array.dtype != object or any(not isinstance(v, bytes) for v in array.reshape(-1)):
            raise ValueError("ragged or non-string list for a string tensor")
        return array
    if _has_strings(value):
        if dtype is not None:
            raise ValueError(f"got strings for a {np.dtype(dtype).name} tensor")
        return from_json_value(value, np.dtype(object))
    try:
        array = np.array(value)
    except ValueError as e:
        raise ValueError(f"not a rectangular nested list ({e})") from None
    if array.dtype == object:
        raise ValueError("not a rectangular nested list of numbers")
    if dtype is None:
        return array
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        # Strict like TF Serving: JSON 1.0 is not an integer.
        if array.dtype.kind not in "iu":
            raise ValueError(f"non-integer numbers for a {dtype.name} tensor")
        if array.size and (array.min() < np.iinfo(dtype).min or array.max() > np.iinfo(dtype).max):
            raise ValueError(f"numbers out of the {dtype.name} range")
    if dtype.kind == "b" and array.dtype.kind != "b":
        raise ValueError(f"expected true/false for a bool tensor, got {array.dtype.name}")
    return array.astype(dtype)


def _has_strings(value) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, str | dict)


# --------------------------------------------------------------------------- #
# Client side.

def encode_predict_request(inputs: Mapping[str, object], signature_name: str = "",
                           *, row_format: bool = False) -> dict:
    """Inputs (name -> numpy-like) -> the JSON body of `:predict`.

    Columnar (`inputs`) by default; `row_format=True` gives `instances` (all
    inputs must share the 0th dimension; a single input lists bare values).
    """
    if not inputs:
        raise ValueError("no inputs to encode")
    body: dict = {"signature_name": signature_name} if signature_name else {}
    arrays = {k: tensors.as_array(v) for k, v in inputs.items()}
    if not row_format:
        body["inputs"] = {k: to_json_value(v, binary=k.endswith("_bytes"))
                          for k, v in arrays.items()}
        return body
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"row format needs every input batched with the same 0th dimension, "
                         f"got {sizes}; use the columnar format")
    columns = {k: to_json_value(v, binary=k.endswith("_bytes")) for k, v in arrays.items()}
    if len(columns) == 1:
        body["instances"] = next(iter(columns.values()))
    else:
        n = next(iter(sizes.values()))
        body["instances"] = [{k: col[i] for k, col in columns.items()} for i in range(n)]
    return body


def decode_predict_response(body: Mapping, output_names: Sequence[str] = (),
                            dtypes: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
    """The JSON body of a `:predict` response -> {output name: numpy}.

    A single unnamed output is named `output_names[0]` (TF Serving omits the
    name when a signature has one output). `dtypes` casts by name. Raises
    ValueError on an `{"error": ...}` body or an unknown layout.
    """
    if "error" in body:
        raise ValueError(f"error response: {body['error']}")
    dtypes = dict(dtypes or {})
    single = output_names[0] if output_names else "output"
    if "outputs" in body:
        out = body["outputs"]
        named = isinstance(out, dict) and set(out) != {B64}
        columns = dict(out) if named else {single: out}
    elif "predictions" in body:
        rows = body["predictions"]
        if not isinstance(rows, list):
            raise ValueError("'predictions' must be a list")
        if rows and all(isinstance(r, dict) and set(r) != {B64} for r in rows):
            columns = {k: [r[k] for r in rows] for k in rows[0]}
        else:
            columns = {single: rows}
    else:
        raise ValueError(f"a predict response has 'outputs' or 'predictions', got keys "
                         f"{sorted(body)}")
    result = {}
    for name, value in columns.items():
        dtype = dtypes.get(name)
        binary = name.endswith("_bytes")
        result[name] = from_json_value(value, np.dtype(object) if binary else dtype)
    return result


# --------------------------------------------------------------------------- #
# Server side.

_NUMPY_OF = {types_pb2.DT_STRING: np.dtype(object)}


def numpy_dtype(datatype: int) -> np.dtype:
    """A signature's DataType enum -> the numpy dtype JSON values are converted to."""
    if datatype in _NUMPY_OF:
        return _NUMPY_OF[datatype]
    import tensorflow as tf

    return np.dtype(tf.dtypes.as_dtype(datatype).as_numpy_dtype)


def decode_predict_request(body: Mapping, input_dtypes: Mapping[str, int]
                           ) -> tuple[dict[str, np.ndarray], bool]:
    """A `:predict` JSON body -> ({input name: numpy}, row_format).

    `input_dtypes`: the signature's inputs (name -> DataType enum); JSON values
    are converted to those dtypes. Raises ValueError naming the problem.
    """
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise ValueError("a predict request needs exactly one of 'instances' (row format) "
                         "or 'inputs' (columnar format)")
    names = list(input_dtypes)
    if has_cols:
        value = body["inputs"]
        if isinstance(value, dict) and set(value) != {B64}:
            columns = dict(value)
        elif len(names) == 1:
            columns = {names[0]: value}
        else:
            raise ValueError(f"'inputs' must be an object keyed by input name "
                             f"({', '.join(names)})")
    else:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise ValueError("'instances' must be a list")
        if rows and all(isinstance(r, dict) and set(r) != {B64} for r in rows):
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise ValueError("every instance must have the same input names")
            columns = {k: [r[k] for r in rows] for k in rows[0]}
        elif len(names) == 1:
            columns = {names[0]: rows}
        else:
            raise ValueError(f"each instance must be an object keyed by input name "
                             f"({', '.join(names)})")
    inputs = {}
    for name, value in columns.items():
        dtype = numpy_dtype(input_dtypes[name]) if name in input_dtypes else None
        try:
            inputs[name] = from_json_value(value, dtype)
        except ValueError as e:
            want = tensors.dtype_name(input_dtypes[name]) if name in input_dtypes else "?"
            raise ValueError(f"input '{name}' ({want}): {e}") from None
    return inputs, has_rows


def encode_predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict:
    """{output name: numpy} -> `{"predictions": ...}` (row) or `{"outputs": ...}`."""
    columns = {k: to_json_value(v, binary=k.endswith("_bytes")) for k, v in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    n = len(next(iter(columns.values())))
    return {"predictions": [{k: col[i] for k, col in columns.items()} for i in range(n)]}
