"""Every committed model package: manifest, SHA-256, labels; the Neo folders' files, ELF machine and meta."""

from __future__ import annotations

import json
import struct

import pytest

from modelpkg.manifest import load_labels, load_manifest, verify_files

from ..helpers import ROOT

pytestmark = pytest.mark.integration

MODELS = ROOT / "artifacts" / "models"
NEO_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")
PACKAGES = {
    "efficientnet-lite0": "onnx",
    "efficientnet-lite0-int8": "onnx",
    "efficientnet-lite0-neo-x86_64": "neo",
    "efficientnet-lite0-neo-aarch64": "neo",
}
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}  # EM_X86_64, EM_AARCH64


@pytest.mark.parametrize(("folder", "fmt"), PACKAGES.items())
def test_each_package_carries_a_valid_manifest_its_digest_and_labels(folder: str, fmt: str) -> None:
    manifest = load_manifest(MODELS / folder)
    verify_files(manifest)
    assert manifest.format == fmt
    assert len(load_labels(manifest)) == 1000
    # one input contract for every package: uint8 RGB pixels NHWC, normalised by the model's graph
    assert manifest.input.name == "input" and manifest.input.shape == (1, 224, 224, 3)
    assert (manifest.input.dtype, manifest.preprocess.layout, manifest.preprocess.in_model) == (
        "uint8",
        "NHWC",
        True,
    )
    assert manifest.version == "2.0.0"
    assert manifest.output_name == "logits"
    assert (MODELS / folder / "labels.txt").read_bytes() == (
        MODELS / "efficientnet-lite0" / "labels.txt"
    ).read_bytes()


@pytest.mark.parametrize("target", ELF_MACHINE)
def test_each_neo_folder_is_a_shared_object_for_its_target_with_graph_params_and_meta(target: str) -> None:
    folder = MODELS / f"efficientnet-lite0-neo-{target}"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["file"] == "compiled.so"
    assert set(manifest["files"]) == {*NEO_FILES, "labels.txt"}
    header = (folder / "compiled.so").read_bytes()[:64]
    assert header[:4] == b"\x7fELF" and header[4] == 2 and header[5] == 1  # 64-bit, little-endian
    e_type, e_machine = struct.unpack_from("<HH", header, 16)
    assert (e_type, e_machine) == (3, ELF_MACHINE[target])  # ET_DYN, the target's machine
    graph = json.loads((folder / "compiled_model.json").read_text())
    assert {"nodes", "arg_nodes", "heads", "attrs", "node_row_ptr"} <= set(graph)
    assert graph["nodes"][graph["arg_nodes"][0]]["name"] == "input"
    meta = json.loads((folder / "compiled.meta").read_text())
    assert meta["Model"]["Inputs"] == [{"name": "input", "dtype": "uint8", "shape": [1, 224, 224, 3]}]
    assert [o["name"] for o in meta["Model"]["Outputs"]] == ["logits"]
    assert (
        target in meta["Compilation"]["Target"].replace("-", "_")
        or target in meta["Requirements"]["TargetDevice"]
    )
    assert (folder / "compiled.params").stat().st_size > 18_000_000  # the FP32 weights, 4.65 M parameters


def test_the_int8_package_is_static_qdq_quantized() -> None:
    import onnx

    model = onnx.load(str(MODELS / "efficientnet-lite0-int8" / "model.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "DynamicQuantizeLinear" not in ops
    # the prologue is folded into the input's quantization: the transposed uint8 pixels are dequantized
    # with scale 1/128 and zero point 127, i.e. (x - 127) / 128, with no Cast, Mul, Add or QuantizeLinear
    (first,) = [node for node in model.graph.node if "input" in node.input]
    assert (first.op_type, list(first.attribute[0].ints)) == ("Transpose", [0, 3, 1, 2])
    users = [node for node in model.graph.node if first.output[0] in node.input]
    assert [node.op_type for node in users] == ["DequantizeLinear"]
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert (float(initializers[users[0].input[1]]), int(initializers[users[0].input[2]])) == (1 / 128, 127)


def test_the_fp32_package_is_the_exported_network_behind_the_uint8_prologue() -> None:
    import onnx

    from modelprep.prologue import has_uint8_prologue, strip_uint8_prologue

    model = onnx.load(str(MODELS / "efficientnet-lite0" / "model.onnx"))
    assert has_uint8_prologue(model)
    assert [n.op_type for n in model.graph.node[:4]] == ["Transpose", "Cast", "Mul", "Add"]
    network = strip_uint8_prologue(model)
    (value,) = network.graph.input
    dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    assert (value.type.tensor_type.elem_type, dims) == (onnx.TensorProto.FLOAT, ["batch", 3, 224, 224])
    assert (MODELS / "efficientnet-lite0-int8" / "model.onnx").stat().st_size < 6_000_000
