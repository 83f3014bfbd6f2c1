"""Read an ONNX file safely, before ONNX Runtime sees it. Torch-free, onnx-free.

cnn-edge models are single files. A foreign model can keep its weights in external data files,
named by paths inside the model; older ONNX Runtime versions (which pyproject.toml allows) follow
such a path outside the model's folder and read an arbitrary file as weights. So every tensor of
the model, in every graph, subgraph, function and training graph, is checked here with a tiny
protobuf reader, and a model with any external data is refused. ONNX Runtime then gets the bytes
read here, not the path, so nothing else is read from disk.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ..core.errors import ModelFileError

# Protobuf has a 2 GiB limit; cnn-edge's models are a few MB. Past this, the file is not read at all.
MAX_MODEL_BYTES = 1 << 30
# Subgraphs nest (If, Loop, Scan); deeper than this is no model of ours.
MAX_NESTING = 64

# onnx.proto field numbers of the messages that can hold tensors.
_MODEL_GRAPH, _MODEL_TRAINING_INFO, _MODEL_FUNCTIONS = 7, 20, 25
_TRAINING_GRAPHS = (1, 2)  # TrainingInfoProto: initialization, algorithm
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE, _FUNCTION_NODE = 5, 7
_ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE = (5, 10), (6, 11), (22, 23)
_SPARSE_TENSORS = (1, 2)  # SparseTensorProto: values, indices
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1


def varint(data, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ModelFileError("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data):
    """Top-level protobuf fields: (number, wire type, value: int or a memoryview of its bytes)."""
    data = memoryview(data)
    pos = 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 2:
            length, pos = varint(data, pos)
            if pos + length > len(data):
                raise ModelFileError("truncated protobuf field")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ModelFileError(f"unexpected protobuf wire type {wire}")
        yield number, wire, value


def _messages(data, numbers) -> list:
    return [v for n, w, v in fields(data) if n in numbers and w == 2]


def _tensor_is_external(tensor) -> bool:
    return any(n == _TENSOR_EXTERNAL_DATA or (n == _TENSOR_DATA_LOCATION and w == 0 and v == _EXTERNAL)
               for n, w, v in fields(tensor))


def _graph_is_external(graph, depth: int) -> bool:
    if depth > MAX_NESTING:
        raise ModelFileError(f"subgraphs nested deeper than {MAX_NESTING}")
    if any(_tensor_is_external(t) for t in _messages(graph, (_GRAPH_INITIALIZER,))):
        return True
    for sparse in _messages(graph, (_GRAPH_SPARSE_INITIALIZER,)):
        if any(_tensor_is_external(t) for t in _messages(sparse, _SPARSE_TENSORS)):
            return True
    return any(_node_is_external(node, depth) for node in _messages(graph, (_GRAPH_NODE,)))


def _node_is_external(node, depth: int) -> bool:
    for attr in _messages(node, (_NODE_ATTRIBUTE,)):
        if any(_tensor_is_external(t) for t in _messages(attr, _ATTR_TENSORS)):
            return True
        for sparse in _messages(attr, _ATTR_SPARSE):
            if any(_tensor_is_external(t) for t in _messages(sparse, _SPARSE_TENSORS)):
                return True
        if any(_graph_is_external(g, depth + 1) for g in _messages(attr, _ATTR_GRAPHS)):
            return True
    return False


def has_external_data(model: bytes) -> bool:
    """Whether any tensor of the ModelProto keeps its data in an external file."""
    for number, wire, value in fields(model):
        if wire != 2:
            continue
        if number == _MODEL_GRAPH and _graph_is_external(value, 0):
            return True
        if number == _MODEL_TRAINING_INFO and any(_graph_is_external(g, 0) for g in _messages(value, _TRAINING_GRAPHS)):
            return True
        if number == _MODEL_FUNCTIONS and any(_node_is_external(n, 0) for n in _messages(value, (_FUNCTION_NODE,))):
            return True
    return False


def read_model_bytes(path: Path) -> bytes:
    """The bytes of a regular, single-file ONNX model of a sane size; ModelFileError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelFileError(f"model {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot open model {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"model {path} is not a regular file; give an .onnx file")
        if st.st_size > MAX_MODEL_BYTES:
            raise ModelFileError(f"model {path} is {st.st_size / 2**30:.1f} GiB; cnn-edge reads models up to "
                                 f"{MAX_MODEL_BYTES / 2**30:g} GiB")
        os.set_blocking(fd, True)
        data = f.read()
    try:
        external = has_external_data(data)
    except ModelFileError as exc:
        raise ModelFileError(f"{path} is not a loadable ONNX model ({exc})") from None
    if external:
        raise ModelFileError(f"{path} keeps tensors in external data files, which cnn-edge refuses (its models "
                             f"are single files, and external paths can point anywhere); re-save it as one file")
    return data
