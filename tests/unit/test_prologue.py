"""modelprep.prologue on tiny ONNX models: uint8 NHWC in, the same scores as the float path, an exact inverse,
and the fold into an INT8 model's input quantization; modelprep.tvm_compile.canonical_params."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelprep.prologue import (
    add_uint8_prologue,
    fold_into_quantize,
    has_uint8_prologue,
    strip_uint8_prologue,
)
from modelprep.tvm_compile import canonical_params

MEAN, STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)


def conv_model(batch: int | str = "batch", quantized_input: float | None = None) -> Any:
    """x float [batch, 3, 8, 8] -> 3x3 conv (2 filters) -> y; optionally x goes through QuantizeLinear /
    DequantizeLinear (uint8, that scale, zero point 127) first, as a QDQ-quantized model's input does."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(2, 3, 3, 3)).astype(np.float32), "w")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2, 8, 8])
    nodes, initializers, conv_input = [], [weights], "input"
    if quantized_input is not None:
        initializers += [
            numpy_helper.from_array(np.array(quantized_input, np.float32), "s"),
            numpy_helper.from_array(np.array(127, np.uint8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="input_QuantizeLinear"),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="input_DequantizeLinear"),
        ]
        conv_input = "dq"
    nodes.append(helper.make_node("Conv", [conv_input, "w"], ["y"], pads=[1, 1, 1, 1], name="conv"))
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run(model: Any, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x})[0])


def float_path(pixels: np.ndarray) -> np.ndarray:
    """What the component's float path sends for these NHWC pixels: x * (1/128) + (-127/128), NCHW."""
    normalised = pixels * np.float32(1 / 128) + np.float32(-127 / 128)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2), dtype=np.float32)


def dims(model: Any) -> list[int | str]:
    tensor = model.graph.input[0].type.tensor_type
    return [d.dim_param or d.dim_value for d in tensor.shape.dim]


@pytest.mark.parametrize("batch", ["batch", 1])
def test_the_prologue_takes_uint8_nhwc_and_gives_the_float_paths_outputs_exactly(batch: int | str) -> None:
    model = conv_model(batch)
    prologued = add_uint8_prologue(model, MEAN, STD)
    assert prologued.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert dims(prologued) == [batch, 8, 8, 3]
    pixels = np.random.default_rng(1).integers(0, 256, (3 if batch == "batch" else 1, 8, 8, 3), np.uint8)
    np.testing.assert_array_equal(run(prologued, pixels), run(model, float_path(pixels)))


def test_strip_is_the_exact_inverse() -> None:
    model = conv_model()
    prologued = add_uint8_prologue(model, MEAN, STD)
    assert has_uint8_prologue(prologued) and not has_uint8_prologue(model)
    assert strip_uint8_prologue(prologued).SerializeToString() == model.SerializeToString()


def test_the_prologue_applies_mean_and_std_per_channel() -> None:
    mean, std = (10.0, 100.0, 200.0), (2.0, 50.0, 0.5)
    identity = conv_model()
    prologued = add_uint8_prologue(identity, mean, std)
    pixels = np.random.default_rng(2).integers(0, 256, (1, 8, 8, 3), np.uint8)
    scale = (1 / np.asarray(std)).astype(np.float32)
    shift = (-np.asarray(mean) / np.asarray(std)).astype(np.float32)
    expected = np.ascontiguousarray((pixels * scale + shift).transpose(0, 3, 1, 2), dtype=np.float32)
    np.testing.assert_array_equal(run(prologued, pixels), run(identity, expected))


def test_models_the_prologue_does_not_fit_are_refused() -> None:
    model = conv_model()
    with pytest.raises(ValueError, match="already has"):
        add_uint8_prologue(add_uint8_prologue(model, MEAN, STD), MEAN, STD)
    with pytest.raises(ValueError, match="no input 'x'"):
        add_uint8_prologue(model, MEAN, STD, input_name="x")
    wrong = conv_model()
    wrong.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4
    with pytest.raises(ValueError, match="3 channels"):
        add_uint8_prologue(wrong, MEAN, STD)
    with pytest.raises(ValueError, match="no uint8 prologue"):
        strip_uint8_prologue(model)


def test_a_quantized_input_that_inverts_the_normalisation_is_folded_bit_for_bit() -> None:
    model = conv_model(quantized_input=1 / 128)
    prologued = add_uint8_prologue(model, MEAN, STD)
    folded = fold_into_quantize(prologued)
    assert folded is not None
    ops = [node.op_type for node in folded.graph.node]
    assert ops == ["Transpose", "DequantizeLinear", "Conv"]  # no Cast, Mul, Add or QuantizeLinear
    pixels = (np.arange(2 * 8 * 8 * 3) % 256).astype(np.uint8).reshape(2, 8, 8, 3)  # every value once
    np.testing.assert_array_equal(run(folded, pixels), run(model, float_path(pixels)))


@pytest.mark.parametrize("scale", [1 / 100, 2 / 128])
def test_a_quantized_input_that_does_not_invert_it_is_left_alone(scale: float) -> None:
    assert fold_into_quantize(add_uint8_prologue(conv_model(quantized_input=scale), MEAN, STD)) is None
    assert fold_into_quantize(add_uint8_prologue(conv_model(), MEAN, STD)) is None  # no QuantizeLinear


def params_blob(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    """A TVM params file (relay.save_param_dict's format) of float32 tensors, in the given order."""
    parts = [struct.pack("<QQQ", 0xF7E58D4F05049CB7, 0, len(tensors))]
    parts += [struct.pack("<Q", len(name)) + name.encode() for name, _ in tensors]
    parts.append(struct.pack("<Q", len(tensors)))
    for _, array in tensors:
        header = struct.pack("<QQiii", 0xDD5E40F096B4A13F, 0, 1, 0, array.ndim)
        header += struct.pack("<BBH", 2, 32, 1) + struct.pack(f"<{array.ndim}q", *array.shape)
        parts.append(header + struct.pack("<q", array.nbytes) + array.tobytes())
    return b"".join(parts)


def test_canonical_params_orders_the_tensors_by_name_and_keeps_them() -> None:
    a, b, c = (np.full((2, i + 1), i, np.float32) for i in range(3))
    shuffled = params_blob([("p2", c), ("p0", a), ("p1", b)])
    ordered = params_blob([("p0", a), ("p1", b), ("p2", c)])
    assert canonical_params(shuffled) == ordered
    assert canonical_params(ordered) == ordered


@pytest.mark.parametrize("cut", [b"", b"\x00" * 3])
def test_canonical_params_refuses_what_is_not_a_params_file(cut: bytes) -> None:
    blob = params_blob([("p0", np.zeros(3, np.float32))])
    with pytest.raises(ValueError, match="not a TVM params file"):
        canonical_params(b"not a params file, really not" + cut)
    with pytest.raises(ValueError, match="params file"):
        canonical_params(blob + b"\x01" if not cut else blob[: -len(cut)])
