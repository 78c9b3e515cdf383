"""The program IR: every backend dispatches on node kind through one handler table, and each
table covers every node kind (a kind added to the IR without a handler fails here, not at run
time in one backend)."""
from __future__ import annotations

import typing

import pytest

from granular_mobile.export import channel_pairs
from granular_mobile.export.onnx import _Emitter
from granular_mobile.export.tflite import _TFProgram
from granular_mobile.ir import EXECUTE, NODE_KINDS, Node, Relu, handler

TABLES = {
    "torch executor": EXECUTE,
    "ONNX emitter": _Emitter.EMIT,
    "TFLite emitter": _TFProgram.EMIT,
    "channel ties": channel_pairs.TIES,
    "channel permutation": channel_pairs.PERMUTE,
}


def test_node_kinds_are_the_node_union():
    assert set(typing.get_args(Node)) == set(NODE_KINDS)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_backend_handles_every_node_kind(name):
    table = TABLES[name]
    missing = sorted(k.__name__ for k in NODE_KINDS if k not in table)
    extra = sorted(k.__name__ for k in table if k not in NODE_KINDS)
    assert not missing and not extra, f"{name}: no handler for {missing}, handlers of unknown kinds {extra}"
    assert all(callable(h) for h in table.values())


def test_unhandled_kind_names_the_backend():
    class Sigmoid(Relu):  # a kind no table knows (a subclass is a kind of its own)
        pass

    with pytest.raises(TypeError, match="the ONNX emitter has no handler for Sigmoid nodes"):
        handler(_Emitter.EMIT, Sigmoid("x", "y"), "the ONNX emitter")
