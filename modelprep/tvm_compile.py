"""Compiles an ONNX model into a Neo-format folder that DLR 1.6 loads (run in the TVM venv only).

    .venv-tvm/bin/python -m modelprep.tvm_compile --onnx model-opset17.onnx --target x86_64 --out DIR

Needs requirements/tvm.txt (hhb-tvm 3.2.3: TVM 0.16.dev0 with Relay and the graph executor, Python 3.10)
and, for aarch64, the cross compiler `aarch64-linux-gnu-gcc` (Debian: gcc-aarch64-linux-gnu). Imports only
the standard library, numpy, onnx and tvm, so that it runs outside the project's own venvs.

Output, as SageMaker Neo writes it (DLR 1.6's runtime predates TVM's graph-executor-factory module, so the
kernels are exported alone and the graph and weights go beside them):

    compiled.so           the compiled kernels (lib.get_lib().export_library)
    compiled_model.json   the graph executor's graph
    compiled.params       the weights (relay.save_param_dict)
    compiled.meta         {"Model": {"Inputs": [...], "Outputs": [...]}, "Requirements", "Compilation"}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# TVM target and linker per device architecture. Portable AVX2 for x86_64 (Haswell, 2013, and later);
# NEON is part of every aarch64 core.
TARGETS: dict[str, tuple[str, str | None]] = {
    "x86_64": ("llvm -mcpu=core-avx2 -mtriple=x86_64-linux-gnu", None),
    "aarch64": ("llvm -mtriple=aarch64-linux-gnu -mattr=+neon", "aarch64-linux-gnu-gcc"),
}
OPT_LEVEL = 3
NEO_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")


_LIST_MAGIC = 0xF7E58D4F05049CB7  # TVM's kTVMNDArrayListMagic: the params file
_ARRAY_MAGIC = 0xDD5E40F096B4A13F  # kTVMNDArrayMagic: each tensor in it


def canonical_params(blob: bytes) -> bytes:
    """The same params file with its tensors in name order.

    relay.save_param_dict writes them in the order of a TVM Map, which follows memory addresses (measured:
    two aarch64 builds, the same tensors in another order), so the file differed from build to build.
    Format: u64 list magic, u64 reserved, u64 n, n x (u64 length, name bytes), u64 n, n x tensor; a
    tensor is u64 magic, u64 reserved, i32 device type, i32 device id, i32 ndim, u8 code, u8 bits,
    u16 lanes, ndim x i64 shape, i64 byte count, the bytes. ValueError for anything else."""
    try:
        return _canonical_params(blob)
    except struct.error as exc:
        raise ValueError(f"a truncated params file: {exc}") from exc


def _canonical_params(blob: bytes) -> bytes:
    magic, reserved = struct.unpack_from("<QQ", blob, 0)
    if magic != _LIST_MAGIC:
        raise ValueError("not a TVM params file")
    offset = 16
    (count,) = struct.unpack_from("<Q", blob, offset)
    offset += 8
    names = []
    for _ in range(count):
        (length,) = struct.unpack_from("<Q", blob, offset)
        names.append(blob[offset + 8 : offset + 8 + length])
        offset += 8 + length
    (arrays,) = struct.unpack_from("<Q", blob, offset)
    offset += 8
    if arrays != count:
        raise ValueError(f"params file with {count} names but {arrays} tensors")
    tensors = []
    for _ in range(count):
        start = offset
        (array_magic,) = struct.unpack_from("<Q", blob, offset)
        if array_magic != _ARRAY_MAGIC:
            raise ValueError(f"no tensor at byte {offset} of the params file")
        (ndim,) = struct.unpack_from("<i", blob, offset + 24)
        offset += 32 + 8 * ndim
        (size,) = struct.unpack_from("<q", blob, offset)
        offset += 8 + size
        tensors.append(blob[start:offset])
    if offset > len(blob):
        raise ValueError(f"a truncated params file: {offset - len(blob)} bytes missing")
    if offset < len(blob):
        raise ValueError(f"{len(blob) - offset} bytes after the last tensor of the params file")
    ordered = sorted(zip(names, tensors, strict=True))
    parts = [struct.pack("<QQQ", magic, reserved, count)]
    parts += [struct.pack("<Q", len(name)) + name for name, _ in ordered]
    parts += [struct.pack("<Q", count)] + [tensor for _, tensor in ordered]
    return b"".join(parts)


def compile_onnx(
    onnx_path: Path, target: str, out: Path, input_name: str, output_name: str
) -> dict[str, Any]:
    """Writes the four Neo files into out; returns the compiled.meta content."""
    # TVM's TopHub would download reference tuning logs (arm_cpu) at build time: never download anything.
    os.environ["TOPHUB_LOCATION"] = "NONE"
    import onnx
    import tvm
    from tvm import relay
    from tvm.contrib import cc

    tvm_target, cross_cc = TARGETS[target]
    model = onnx.load(str(onnx_path))
    (graph_input,) = model.graph.input
    shape = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type).name
    mod, params = relay.frontend.from_onnx(model, shape={input_name: shape}, freeze_params=True)
    started = time.monotonic()
    with tvm.transform.PassContext(opt_level=OPT_LEVEL):
        lib = relay.build(mod, target=tvm_target, params=params)
    logger.info("relay.build for %s took %.1f s", target, time.monotonic() - started)
    out.mkdir(parents=True, exist_ok=True)
    fcompile = cc.cross_compiler(cross_cc) if cross_cc else None
    lib.get_lib().export_library(str(out / "compiled.so"), fcompile=fcompile)
    (out / "compiled_model.json").write_text(lib.get_graph_json())
    params = relay.save_param_dict(lib.get_params())
    (out / "compiled.params").write_bytes(canonical_params(params))
    meta = {
        "Requirements": {"TargetDevice": f"linux_{target}", "TargetDeviceType": "cpu"},
        "Model": {
            "Inputs": [{"name": input_name, "dtype": dtype, "shape": shape}],
            "Outputs": [{"name": output_name, "dtype": "float32"}],
        },
        "Compilation": {
            "Compiler": f"TVM {tvm.__version__} (hhb-tvm 3.2.3), relay.frontend.from_onnx",
            "Target": tvm_target,
            "OptLevel": OPT_LEVEL,
        },
    }
    (out / "compiled.meta").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelprep.tvm_compile", description=__doc__)
    parser.add_argument("--onnx", type=Path, required=True, help="opset-17 ONNX model (dynamo=False export)")
    parser.add_argument("--target", choices=sorted(TARGETS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--input-name", default="input")
    parser.add_argument("--output-name", default="logits")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    compile_onnx(args.onnx, args.target, args.out, args.input_name, args.output_name)
    logger.info("wrote %s", ", ".join(str(args.out / name) for name in NEO_FILES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
