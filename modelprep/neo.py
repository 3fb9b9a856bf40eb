"""Neo-format model folders for DLR: export for the Relay-era compiler, compile in the TVM venv, manifest.

The network is exported for the Relay frontend (TorchScript exporter, opset 17), given the same uint8 prologue
as the ONNX packages (modelprep.prologue: uint8 NHWC RGB pixels in, normalised in the graph), then compiled.
The TVM compile runs as a subprocess of the TVM venv's Python 3.10 (modelprep/tvm_compile.py), so torch and
TVM never share a process and neither is needed on a device. The folder gets labels.txt and a manifest.json
whose `file` is compiled.so and whose `sha256` is that file's; provenance records the digests of the other
three Neo files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from modelpkg.manifest import write_manifest

from .export import LABELS_FILE

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TVM_PYTHON = ROOT / ".venv-tvm" / "bin" / "python"
NEO_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")
OPSET = 17


def export_opset17(path: Path, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
    """The TorchScript exporter at opset 17 (the Relay ONNX frontend misreads the dynamo opset-18 graph),
    with the uint8 prologue for mean and std in front."""
    import onnx
    import torch

    from .efficientnet import INPUT_SIZE, load_model
    from .prologue import add_uint8_prologue

    torch.manual_seed(0)
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    torch.onnx.export(
        load_model(),
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
    )
    onnx.save(add_uint8_prologue(onnx.load(str(path)), mean, std), str(path))


def write_neo_folder(
    fp32_folder: Path, target: str, out: Path, tvm_python: Path = DEFAULT_TVM_PYTHON
) -> None:
    """Writes out/ (the four Neo files, labels.txt, manifest.json) for target (x86_64 | aarch64)."""
    if not tvm_python.is_file():
        raise FileNotFoundError(
            f"{tvm_python} is missing: create the TVM venv with Python 3.10 and "
            f"`pip install -r requirements/tvm.txt`, or pass --tvm-python"
        )
    base: dict[str, Any] = json.loads((fp32_folder / "manifest.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model-opset17.onnx"
        pre = base["preprocess"]
        if not pre["in_model"]:
            raise ValueError(
                f"{fp32_folder}: the Neo packages take uint8 pixels; export the FP32 folder first"
            )
        export_opset17(onnx_path, tuple(pre["mean"]), tuple(pre["std"]))
        staged = Path(tmp) / "neo"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [str(tvm_python), "-m", "modelprep.tvm_compile", "--onnx", str(onnx_path)]
        command += ["--target", target, "--out", str(staged)]
        subprocess.run(command, check=True, env=env)
        for name in NEO_FILES:
            shutil.copyfile(staged / name, out / name)
    shutil.copyfile(fp32_folder / LABELS_FILE, out / LABELS_FILE)
    meta = json.loads((out / "compiled.meta").read_text())
    manifest = {
        **base,
        "name": f"{base['name']}-neo-{target.replace('_', '-')}",  # model names allow no "_"
        "format": "neo",
        "file": "compiled.so",
        "provenance": {
            **{key: value for key, value in base["provenance"].items() if key != "check"},
            "exporter": f"torch.onnx.export dynamo=False opset {OPSET}",
            "compiler": f"{meta['Compilation']['Compiler']}, target {meta['Compilation']['Target']}, "
            f"opt_level {meta['Compilation']['OptLevel']}",
            "runtime": "dlr==1.6.0",
        },
    }
    write_manifest(out, manifest)
    logger.info("wrote %s (%s)", out, ", ".join(f"{n} {(out / n).stat().st_size}" for n in NEO_FILES))
