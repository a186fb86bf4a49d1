"""The messages a worker process sends back: JSON plus raw numeric arrays, never a pickle.

A worker runs the code under test, so nothing it sends may run code in the checker: a
message is ``len(header) (4 bytes) + header (JSON) + array bytes``, where every array in the
JSON value is replaced by ``{"__array__": [dtype, shape, offset]}`` and only real numeric and
boolean dtypes are accepted. numpy only.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import WireError

#: Largest message accepted (bytes).
MAX_MESSAGE = 1 << 28
_KINDS = "fiub"


def _pack(value: Any, blobs: list[bytes], offset: list[int]) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _KINDS:
            raise WireError(f"cannot send an array of dtype {value.dtype}")
        a = value.copy(order="C")  # (not ascontiguousarray: that makes 0-d arrays 1-d)
        data = a.tobytes()
        ref = {"__array__": [a.dtype.str, list(a.shape), offset[0]]}
        blobs.append(data)
        offset[0] += len(data)
        return ref
    if isinstance(value, dict):
        return {str(k): _pack(v, blobs, offset) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v, blobs, offset) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    raise WireError(f"cannot send a {type(value).__name__}")


def encode(value: Any) -> bytes:
    """A JSON-like value (dicts, lists, str, int, float, bool, None, numeric ndarrays) as bytes."""
    blobs: list[bytes] = []
    header = json.dumps(_pack(value, blobs, [0])).encode("utf-8")
    return struct.pack(">I", len(header)) + header + b"".join(blobs)


def _unpack(value: Any, data: memoryview) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            dtype_str, shape, offset = value["__array__"]
            dtype = np.dtype(str(dtype_str))
            if dtype.kind not in _KINDS or dtype.hasobject:
                raise WireError(f"array of dtype {dtype} refused")
            shape = tuple(int(n) for n in shape)
            if any(n < 0 for n in shape):
                raise WireError("negative array size")
            count = math.prod(shape)
            end = int(offset) + count * dtype.itemsize
            if int(offset) < 0 or end > len(data):
                raise WireError("array outside the message")
            return np.frombuffer(data[int(offset) : end], dtype=dtype, count=count).reshape(shape).copy()
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _unpack(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, data) for v in value]
    return value


def decode(message: bytes) -> Any:
    """The value encoded by :func:`encode`. WireError on anything malformed."""
    try:
        if len(message) < 4:
            raise WireError("message too short")
        (n,) = struct.unpack(">I", message[:4])
        header = json.loads(message[4 : 4 + n].decode("utf-8"))
        return _unpack(header, memoryview(message)[4 + n :])
    except WireError:
        raise
    except Exception as exc:  # anything malformed
        raise WireError(f"malformed message: {type(exc).__name__}: {exc}") from exc


def read_exact(fd: int, n: int) -> bytes | None:
    """Exactly ``n`` bytes from the file descriptor ``fd``, or None at the end of the stream (the
    worker processes' side of the framing: a 4-byte big-endian length, then the message)."""
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, data: bytes) -> None:
    """``data`` to ``fd`` behind its 4-byte big-endian length, all of it."""
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def private_stdio() -> tuple[int, int]:
    """A worker process's start: Ctrl-C left to the checker, and private copies (fd_in, fd_out) of
    stdin and stdout for the protocol, while the code under test sees /dev/null as stdin and
    stderr as stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the checker handles Ctrl-C and stops us
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    return fd_in, fd_out


def serve_requests(fd_in: int, fd_out: int, handle: Callable[[Any], dict[str, Any]]) -> None:
    """Answer each request of each batch the checker sends, one framed reply per request, until a
    None batch or the end of the stream."""
    while True:
        head = read_exact(fd_in, 4)
        if head is None:
            return
        body = read_exact(fd_in, struct.unpack(">I", head)[0])
        batch = None if body is None else pickle.loads(body)
        if batch is None:
            return
        for request in batch:
            write_frame(fd_out, encode(handle(request)))
