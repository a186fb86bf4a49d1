"""The messages a worker process sends back: JSON plus raw numeric arrays, never a pickle.

A worker runs the code under test, so nothing it sends may run code in the checker: a
message is ``len(header) (4 bytes) + header (JSON) + array bytes``, where every array in the
JSON value is replaced by ``{"__array__": [dtype, shape, offset]}`` and only real numeric and
boolean dtypes are accepted. Both directions travel in frames (read_frame, write_frame): a
4-byte big-endian length, then the message. numpy only.
"""

from __future__ import annotations

import json
import math
import os
import struct
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
        data = value.tobytes(order="C")  # one copy, in C order (a 0-d array stays 0-d)
        ref = {"__array__": [value.dtype.str, list(value.shape), offset[0]]}
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
    """Exactly ``n`` bytes from the file descriptor ``fd`` (read a MiB at a time), or None at the
    end of the stream."""
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int | None = None) -> bytes | None:
    """One frame from ``fd``: a 4-byte big-endian length, then that many bytes; None at the end of
    the stream. WireError for a frame longer than ``limit``, before it is read."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if limit is not None and n > limit:
        raise WireError(f"a message of {n} bytes")
    return read_exact(fd, n)


def write_frame(fd: int, data: bytes) -> None:
    """``data`` to ``fd`` behind its 4-byte big-endian length, all of it (a large message is not
    copied to put the length in front)."""
    head = struct.pack(">I", len(data))
    for part in (head, data) if len(data) > 1 << 16 else (head + data,):
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view) :]
