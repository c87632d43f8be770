"""`ServingError`: a gRPC status code plus message, shared by server and clients."""

from __future__ import annotations

import re

import grpc

# TF Serving's HTTP mapping of canonical codes (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}
# HTTP status -> the most likely code (400 is ambiguous; INVALID_ARGUMENT wins).
_FROM_HTTP = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
              409: grpc.StatusCode.ABORTED, 403: grpc.StatusCode.PERMISSION_DENIED,
              429: grpc.StatusCode.RESOURCE_EXHAUSTED, 499: grpc.StatusCode.CANCELLED,
              501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
              504: grpc.StatusCode.DEADLINE_EXCEEDED, 401: grpc.StatusCode.UNAUTHENTICATED}
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A failed serving call: `code` (grpc.StatusCode) and a message naming the problem."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ServingError:
        return cls(error.code(), error.details() or str(error))

    @classmethod
    def from_http(cls, status: int, message: str) -> ServingError:
        return cls(_FROM_HTTP.get(status, grpc.StatusCode.UNKNOWN if status < 500
                                  else grpc.StatusCode.INTERNAL), message)


def code_from_value(value: int) -> grpc.StatusCode:
    """A canonical code number (as in `tf.errors.OpError.error_code`) -> grpc.StatusCode."""
    return _BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)


def clean_op_error(message: str) -> str:
    """The useful part of a TF op error: the assertion text, without graph node dumps.

    Eager signature calls wrap errors as "Graph execution error: Detected at node
    ...\n<trace>\nassertion failed: [text] ..."; TF Serving shows the op message.
    """
    assertion = re.search(r"assertion failed: \[([^\]]*)\]", message)
    if assertion:
        return assertion.group(1).strip()
    lines = [line.strip() for line in message.split("\n") if line.strip()]
    useful = [line for line in lines if not line.startswith(
        ("Graph execution error", "Detected at node", "<stack traces", "[[{{node"))]
    text = useful[0] if useful else (lines[0] if lines else message)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()
