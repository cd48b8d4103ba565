"""Write the triage classifier as a .tflite file: FULLY_CONNECTED, then SOFTMAX.

Why by hand: the model is one matrix and one bias, and the usual converters (TensorFlow's
TFLiteConverter, litert-torch) pull in TensorFlow or PyTorch: hundreds of megabytes, slow to install
on a Pi and absent for some Jetson Python versions. The .tflite format is a FlatBuffer with a
published schema (tensorflow/lite/schema/schema.fbs); the ``flatbuffers`` package, which LiteRT
itself depends on, writes it. Only the tables and fields used here are written; every other field
takes its schema default. The tests load the file with the LiteRT interpreter and compare its
output with numpy's.

Graph: input "features" float32 [1, dim] -> FULLY_CONNECTED(weights [classes, dim], bias [classes])
-> "logits" -> SOFTMAX -> "probabilities" [1, classes]. The class names and feature settings go
into the model's metadata under ``edged_triage`` (JSON), so a .tflite file describes itself.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import flatbuffers
import numpy as np

METADATA_NAME = "edged_triage"
SCHEMA_VERSION = 3  # the TFLite schema version written in Model.version
FILE_IDENTIFIER = b"TFL3"

# Enum values and field positions from schema.fbs.
FLOAT32 = 0
FULLY_CONNECTED, SOFTMAX = 9, 25
OPTIONS_FULLY_CONNECTED, OPTIONS_SOFTMAX = 8, 9  # BuiltinOptions union members


def _int_vector(b: flatbuffers.Builder, values: list[int]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(v)
    return b.EndVector()


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _buffer(b: flatbuffers.Builder, data: bytes | None) -> int:
    data_off = None
    if data:
        # Buffers hold tensor data that the interpreter reads in place: align it to 16 bytes.
        b.StartVector(1, len(data), 16)
        b.head = b.head - len(data)
        b.Bytes[b.head : b.head + len(data)] = data
        data_off = b.EndVector()
    b.StartObject(3)
    if data_off is not None:
        b.PrependUOffsetTRelativeSlot(0, data_off, 0)
    return b.EndObject()


def _tensor(b: flatbuffers.Builder, name: str, shape: list[int], buffer: int) -> int:
    name_off = b.CreateString(name)
    shape_off = _int_vector(b, shape)
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(0, shape_off, 0)
    b.PrependInt8Slot(1, FLOAT32, 0)
    b.PrependUint32Slot(2, buffer, 0)
    b.PrependUOffsetTRelativeSlot(3, name_off, 0)
    return b.EndObject()


def _operator_code(b: flatbuffers.Builder, code: int) -> int:
    b.StartObject(4)
    b.PrependInt8Slot(0, code, 0)  # deprecated_builtin_code: what older runtimes read
    b.PrependInt32Slot(2, 1, 1)  # version
    b.PrependInt32Slot(3, code, 0)  # builtin_code
    return b.EndObject()


def _operator(b: flatbuffers.Builder, opcode_index: int, inputs: list[int], outputs: list[int],
              options_type: int, options: int) -> int:
    in_off, out_off = _int_vector(b, inputs), _int_vector(b, outputs)
    b.StartObject(5)
    b.PrependUint32Slot(0, opcode_index, 0)
    b.PrependUOffsetTRelativeSlot(1, in_off, 0)
    b.PrependUOffsetTRelativeSlot(2, out_off, 0)
    b.PrependUint8Slot(3, options_type, 0)
    b.PrependUOffsetTRelativeSlot(4, options, 0)
    return b.EndObject()


def export_linear_softmax(weights: np.ndarray, bias: np.ndarray, metadata: dict[str, Any]) -> bytes:
    """The .tflite bytes of softmax(x @ weights.T + bias); weights is (classes, dim)."""
    weights = np.ascontiguousarray(weights, dtype="<f4")
    bias = np.ascontiguousarray(bias, dtype="<f4")
    classes, dim = weights.shape
    if bias.shape != (classes,):
        raise ValueError(f"bias has shape {bias.shape}, expected ({classes},)")
    meta_bytes = json.dumps(metadata, sort_keys=True).encode()
    b = flatbuffers.Builder(weights.nbytes + bias.nbytes + len(meta_bytes) + 4096)

    # Buffers: 0 is the empty sentinel every model has; 1 weights; 2 bias; 3 metadata.
    buffers = [_buffer(b, None), _buffer(b, weights.tobytes()), _buffer(b, bias.tobytes()), _buffer(b, meta_bytes)]
    empty = 0
    tensors = [
        _tensor(b, "features", [1, dim], empty),  # 0
        _tensor(b, "weights", [classes, dim], 1),  # 1
        _tensor(b, "bias", [classes], 2),  # 2
        _tensor(b, "logits", [1, classes], empty),  # 3
        _tensor(b, "probabilities", [1, classes], empty),  # 4
    ]
    b.StartObject(4)  # FullyConnectedOptions: all defaults (no activation, default weights format)
    fc_options = b.EndObject()
    b.StartObject(1)  # SoftmaxOptions
    b.PrependFloat32Slot(0, 1.0, 0.0)  # beta
    softmax_options = b.EndObject()
    operators = [
        _operator(b, 0, [0, 1, 2], [3], OPTIONS_FULLY_CONNECTED, fc_options),
        _operator(b, 1, [3], [4], OPTIONS_SOFTMAX, softmax_options),
    ]
    subgraph_name = b.CreateString("triage")
    tensors_off, operators_off = _offset_vector(b, tensors), _offset_vector(b, operators)
    inputs_off, outputs_off = _int_vector(b, [0]), _int_vector(b, [4])
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tensors_off, 0)
    b.PrependUOffsetTRelativeSlot(1, inputs_off, 0)
    b.PrependUOffsetTRelativeSlot(2, outputs_off, 0)
    b.PrependUOffsetTRelativeSlot(3, operators_off, 0)
    b.PrependUOffsetTRelativeSlot(4, subgraph_name, 0)
    subgraph = b.EndObject()

    meta_name = b.CreateString(METADATA_NAME)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, meta_name, 0)
    b.PrependUint32Slot(1, 3, 0)
    meta_entry = b.EndObject()

    codes_off = _offset_vector(b, [_operator_code(b, FULLY_CONNECTED), _operator_code(b, SOFTMAX)])
    subgraphs_off = _offset_vector(b, [subgraph])
    buffers_off = _offset_vector(b, buffers)
    metadata_off = _offset_vector(b, [meta_entry])
    description = b.CreateString("edged triage classifier")
    b.StartObject(8)
    b.PrependUint32Slot(0, SCHEMA_VERSION, 0)
    b.PrependUOffsetTRelativeSlot(1, codes_off, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs_off, 0)
    b.PrependUOffsetTRelativeSlot(3, description, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers_off, 0)
    b.PrependUOffsetTRelativeSlot(6, metadata_off, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def read_metadata(model: bytes) -> dict[str, Any]:
    """The ``edged_triage`` metadata of a .tflite file written by export_linear_softmax."""
    buf = bytearray(model)
    if buf[4:8] != FILE_IDENTIFIER:
        raise ValueError("not a .tflite file (no TFL3 identifier)")
    try:
        meta = _metadata(buf)
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"a damaged .tflite file: {exc}") from None
    if meta is None:
        raise ValueError(f"the .tflite file has no {METADATA_NAME} metadata")
    return meta


def _metadata(buf: bytearray) -> dict[str, Any] | None:
    root = flatbuffers.table.Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))

    def vector(table: flatbuffers.table.Table, slot: int) -> tuple[int, int]:
        off = table.Offset(4 + 2 * slot)
        if not off:
            return 0, 0
        return table.Vector(off), table.VectorLen(off)

    def vector_table(table: flatbuffers.table.Table, slot: int, i: int) -> flatbuffers.table.Table:
        start, _ = vector(table, slot)
        return flatbuffers.table.Table(buf, table.Indirect(start + 4 * i))

    _, meta_len = vector(root, 6)  # Model.metadata
    for i in range(meta_len):
        entry = vector_table(root, 6, i)
        name_off = entry.Offset(4)
        if not name_off or entry.String(entry.Pos + name_off).decode() != METADATA_NAME:
            continue
        index_off = entry.Offset(6)
        index = entry.Get(flatbuffers.number_types.Uint32Flags, entry.Pos + index_off) if index_off else 0
        data_start, data_len = vector(vector_table(root, 4, index), 0)  # Model.buffers[index].data
        return json.loads(bytes(buf[data_start : data_start + data_len]))
    return None
