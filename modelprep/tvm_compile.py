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
    mod, params = relay.frontend.from_onnx(model, shape={input_name: shape}, freeze_params=True)
    started = time.monotonic()
    with tvm.transform.PassContext(opt_level=OPT_LEVEL):
        lib = relay.build(mod, target=tvm_target, params=params)
    logger.info("relay.build for %s took %.1f s", target, time.monotonic() - started)
    out.mkdir(parents=True, exist_ok=True)
    fcompile = cc.cross_compiler(cross_cc) if cross_cc else None
    lib.get_lib().export_library(str(out / "compiled.so"), fcompile=fcompile)
    (out / "compiled_model.json").write_text(lib.get_graph_json())
    (out / "compiled.params").write_bytes(relay.save_param_dict(lib.get_params()))
    meta = {
        "Requirements": {"TargetDevice": f"linux_{target}", "TargetDeviceType": "cpu"},
        "Model": {
            "Inputs": [{"name": input_name, "dtype": "float32", "shape": shape}],
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
