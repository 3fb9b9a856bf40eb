"""Normalisation and layout folded into an ONNX graph: the model then takes raw uint8 RGB pixels, NHWC.

`add_uint8_prologue` turns a model whose input is float NCHW [N, 3, H, W] of (x - mean) / std values into
one whose input, under the same name, is uint8 NHWC [N, H, W, 3] of 0..255 RGB values, by prepending

    Transpose(perm 0,3,1,2) -> Cast(float) -> Mul(scale) -> Add(shift)      (nodes named "prologue/...")

with scale and shift the float32 constants of `component.preprocess.normalisation`, the very ones the
component's float path multiplies and adds: the network behind the prologue sees the same float32
values, so the scores stay the same within float rounding. The batch dimension is kept as it was
(dynamic or fixed). The request on the wire shrinks from 4 to 1 byte a value, and the component does no
float work. The transpose runs on the uint8 values, a quarter of the bytes a float transpose would move.

`strip_uint8_prologue` is its exact inverse (the original model, proto for proto): INT8 quantization and
the in-process benchmark start from the float-input network.

Needs the onnx package (requirements/modelprep.txt, dev.txt); imports nothing of torch or TVM.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from component.preprocess import Preprocessor, normalisation
from modelpkg.manifest import PreprocessSpec

logger = logging.getLogger(__name__)

PREFIX = "prologue/"
NORMALISED = f"{PREFIX}normalised"
_NODES = ("transpose", "cast", "scale", "shift")
_SCALE, _SHIFT = f"{PREFIX}scale", f"{PREFIX}shift"


def float_preprocessor(spec: PreprocessSpec) -> Preprocessor:
    """The component's float path for the network behind the prologue of a package with spec:
    (x - mean) / std as float32 NCHW, batch of 1."""
    height, width = spec.crop
    float_spec = replace(spec, layout="NCHW", dtype="float32", in_model=False)
    return Preprocessor(float_spec, (1, 3, height, width))


def _input(graph: Any, name: str) -> Any:
    for value in graph.input:
        if value.name == name:
            return value
    raise ValueError(f"the graph has no input {name!r} (inputs: {[v.name for v in graph.input]})")


def has_uint8_prologue(model: Any) -> bool:
    return any(node.name.startswith(PREFIX) for node in model.graph.node)


def add_uint8_prologue(
    model: Any,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    input_name: str = "input",
) -> Any:
    """A copy of model (onnx.ModelProto, float NCHW RGB input) taking uint8 NHWC RGB pixels instead."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if has_uint8_prologue(model):
        raise ValueError("the model already has a uint8 prologue")
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    value = _input(graph, input_name)
    tensor = value.type.tensor_type
    if tensor.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
        raise ValueError(f"input {input_name!r} is not a float tensor (elem_type {tensor.elem_type})")
    dims = list(tensor.shape.dim)
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise ValueError(f"input {input_name!r} is not NCHW with 3 channels: {tensor.shape}")
    float_type = tensor.elem_type
    for node in graph.node:
        node.input[:] = [NORMALISED if name == input_name else name for name in node.input]
    for output in graph.output:
        if output.name == input_name:
            raise ValueError(f"input {input_name!r} is also a graph output")
    nchw = [dims[0], dims[1], dims[2], dims[3]]
    copies = [type(d)() for d in nchw]
    for copy, dim in zip(copies, (nchw[0], nchw[2], nchw[3], nchw[1]), strict=True):
        copy.CopyFrom(dim)
    del tensor.shape.dim[:]
    tensor.shape.dim.extend(copies)
    tensor.elem_type = TensorProto.UINT8
    scale, shift = normalisation(mean, std, "RGB")
    dtype = helper.tensor_dtype_to_np_dtype(float_type)
    graph.initializer.extend(
        [
            numpy_helper.from_array(scale.astype(dtype).reshape(1, 3, 1, 1), _SCALE),
            numpy_helper.from_array(shift.astype(dtype).reshape(1, 3, 1, 1), _SHIFT),
        ]
    )
    transpose, cast, scaled = (f"{PREFIX}{n}" for n in ("nchw", "float", "scaled"))
    nodes = [
        helper.make_node(
            "Transpose", [input_name], [transpose], name=f"{PREFIX}transpose", perm=[0, 3, 1, 2]
        ),
        helper.make_node("Cast", [transpose], [cast], name=f"{PREFIX}cast", to=float_type),
        helper.make_node("Mul", [cast, _SCALE], [scaled], name=f"{PREFIX}scale"),
        helper.make_node("Add", [scaled, _SHIFT], [NORMALISED], name=f"{PREFIX}shift"),
    ]
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *body])
    onnx.checker.check_model(result, full_check=True)
    return result


def strip_uint8_prologue(model: Any, input_name: str = "input") -> Any:
    """The model add_uint8_prologue was given (float NCHW input), from one it returned."""
    import onnx

    if not has_uint8_prologue(model):
        raise ValueError("the model has no uint8 prologue to strip")
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    nodes = {node.name: node for node in graph.node if node.name.startswith(PREFIX)}
    if sorted(nodes) != sorted(f"{PREFIX}{n}" for n in _NODES):
        raise ValueError(f"unexpected prologue nodes {sorted(nodes)}")
    float_type = next(a.i for a in nodes[f"{PREFIX}cast"].attribute if a.name == "to")
    body = [node for node in graph.node if not node.name.startswith(PREFIX)]
    for node in body:
        node.input[:] = [input_name if name == NORMALISED else name for name in node.input]
    del graph.node[:]
    graph.node.extend(body)
    kept = [init for init in graph.initializer if init.name not in (_SCALE, _SHIFT)]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    tensor = _input(graph, input_name).type.tensor_type
    nhwc = list(tensor.shape.dim)
    copies = [type(d)() for d in nhwc]
    for copy, dim in zip(copies, (nhwc[0], nhwc[3], nhwc[1], nhwc[2]), strict=True):
        copy.CopyFrom(dim)
    del tensor.shape.dim[:]
    tensor.shape.dim.extend(copies)
    tensor.elem_type = float_type
    return result


def uint8_max_difference(
    original: bytes,
    prologued: bytes,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    samples: int = 4,
    input_name: str = "input",
    batch: int = 1,
) -> float:
    """Largest |scores| difference between the float model fed (x - mean) / std of random uint8 images
    (the component's float path) and the prologue'd model fed the same uint8 images."""
    import onnxruntime

    sessions = [
        onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        for model in (original, prologued)
    ]
    shape = [d if isinstance(d, int) else batch for d in sessions[1].get_inputs()[0].shape]
    rng = np.random.default_rng(0)
    scale, shift = normalisation(mean, std, "RGB")
    worst = 0.0
    for _ in range(samples):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        normalised = np.ascontiguousarray((pixels * scale + shift).transpose(0, 3, 1, 2), dtype=np.float32)
        (expected,) = sessions[0].run(None, {input_name: normalised})
        (found,) = sessions[1].run(None, {input_name: pixels})
        worst = max(worst, float(np.abs(expected - found).max()))
    return worst


def _quantize_is_identity(scale: np.ndarray, shift: np.ndarray, q_scale: float, zero_point: int) -> bool:
    """True when QuantizeLinear(x * scale + shift) == x for every uint8 x and channel, whether the
    runtime divides by q_scale or multiplies by its reciprocal (round half to even, as ONNX specifies)."""
    x = np.arange(256, dtype=np.float32)[:, np.newaxis]
    normalised = x * scale.astype(np.float32) + shift.astype(np.float32)
    step = np.float32(q_scale)
    for scaled in (normalised / step, normalised * (np.float32(1) / step)):
        quantized = np.clip(np.rint(scaled) + zero_point, 0, 255)
        if not np.array_equal(quantized, np.broadcast_to(x, quantized.shape)):
            return False
    return True


def fold_into_quantize(model: Any) -> Any | None:
    """For a QDQ-quantized model with a uint8 prologue whose normalised values go only to a per-tensor
    uint8 QuantizeLinear that maps them straight back to the pixel values (INT8 calibrated on 0..255 images
    with (x - 127) / 128 gets scale 1/128, zero point 127): a copy without Cast, Mul, Add and that
    QuantizeLinear, the transposed pixels being the quantized tensor already. Bit-identical results (checked
    over all 256 values); None when the model does not have that shape."""
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    consumers = [node for node in graph.node if NORMALISED in node.input]
    if len(consumers) != 1 or consumers[0].op_type != "QuantizeLinear":
        return None
    quantize = consumers[0]
    initializers = {init.name: init for init in graph.initializer}
    if len(quantize.input) < 3 or not {quantize.input[1], quantize.input[2]} <= set(initializers):
        return None
    q_scale = numpy_helper.to_array(initializers[quantize.input[1]])
    zero_point = initializers[quantize.input[2]]
    if q_scale.size != 1 or zero_point.data_type != TensorProto.UINT8:
        return None
    scale = numpy_helper.to_array(initializers[_SCALE]).reshape(3, 1).T
    shift = numpy_helper.to_array(initializers[_SHIFT]).reshape(3, 1).T
    if not _quantize_is_identity(
        scale, shift, float(q_scale.item()), int(numpy_helper.to_array(zero_point).item())
    ):
        return None
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    quantized, transposed = quantize.output[0], f"{PREFIX}nchw"
    dropped = {f"{PREFIX}cast", f"{PREFIX}scale", f"{PREFIX}shift", quantize.name}
    kept = [node for node in graph.node if node.name not in dropped]
    for node in kept:
        node.input[:] = [transposed if name == quantized else name for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    initializers_kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers_kept)
    onnx.checker.check_model(result, full_check=True)
    return result
