"""`python -m modelprep`: prepare the bundled model folder and sample images.

Needs requirements/modelprep.txt (torch, CPU build) in its own virtual environment, never on a device.

python -m modelprep export --out artifacts/models/efficientnet-lite0
python -m modelprep images --out artifacts/images
python -m modelprep verify artifacts/models/efficientnet-lite0
python -m modelprep manifest FOLDER     # digests of the files a folder holds now
python -m modelprep quantize --out artifacts/models/efficientnet-lite0-int8
python -m modelprep neo --target x86_64 --out artifacts/models/efficientnet-lite0-neo-x86_64
python -m modelprep neo --target aarch64 --out artifacts/models/efficientnet-lite0-neo-aarch64
python -m modelprep agreement           # top-1 and score changes of the packages against the 1.x float path
python -m modelprep scores              # README's table of the sample images' classes and scores
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from pathlib import Path

logger = logging.getLogger("modelprep")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelprep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="export EfficientNet-Lite0 to ONNX with labels and manifest")
    export.add_argument("--out", type=Path, default=Path("artifacts/models/efficientnet-lite0"))
    images = commands.add_parser("images", help="write the sample images")
    images.add_argument("--out", type=Path, default=Path("artifacts/images"))
    verify = commands.add_parser("verify", help="check a model folder's manifest, file digests and labels")
    verify.add_argument("folder", type=Path)
    rewrite = commands.add_parser(
        "manifest", help="rewrite a folder's manifest.json with the digests of the files it holds now"
    )
    rewrite.add_argument("folder", type=Path)
    quantize = commands.add_parser(
        "quantize", help="ONNX INT8 (static QDQ) from the FP32 folder, checked vs FP32"
    )
    quantize.add_argument("--fp32", type=Path, default=Path("artifacts/models/efficientnet-lite0"))
    quantize.add_argument("--out", type=Path, default=Path("artifacts/models/efficientnet-lite0-int8"))
    neo = commands.add_parser("neo", help="Neo-format folder for DLR, compiled with TVM (Relay) for a target")
    neo.add_argument("--target", choices=("x86_64", "aarch64"), required=True)
    neo.add_argument("--fp32", type=Path, default=Path("artifacts/models/efficientnet-lite0"))
    neo.add_argument("--out", type=Path, help="default: artifacts/models/efficientnet-lite0-neo-<target>")
    neo.add_argument(
        "--tvm-python", type=Path, help="Python 3.10 with requirements/tvm.txt (default .venv-tvm)"
    )
    agree = commands.add_parser(
        "agreement", help="top-1 and max score change of the packages against the 1.x float path"
    )
    agree.add_argument(
        "--packages",
        nargs="+",
        default=[
            "efficientnet-lite0",
            "efficientnet-lite0-int8",
            f"efficientnet-lite0-neo-{platform.machine()}",
        ],
    )
    commands.add_parser(
        "scores", help="the sample images' top-1 and score, this project vs other preprocessing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "export":
        from .export import write_model_folder

        write_model_folder(args.out)
    elif args.command == "quantize":
        from .quantize import quantize as quantize_folder

        quantize_folder(args.fp32, args.out)
    elif args.command == "neo":
        from .neo import DEFAULT_TVM_PYTHON, write_neo_folder

        out = args.out or Path(f"artifacts/models/efficientnet-lite0-neo-{args.target}")
        write_neo_folder(args.fp32, args.target, out, args.tvm_python or DEFAULT_TVM_PYTHON)
    elif args.command == "manifest":
        import json

        from modelpkg.manifest import MANIFEST_FILE, write_manifest

        data = json.loads((args.folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        written = write_manifest(args.folder, {k: v for k, v in data.items() if k != "files"})
        logger.info(
            "wrote %s: %d files, sha256 %s",
            args.folder / MANIFEST_FILE,
            len(written["files"]),
            written["sha256"],
        )
    elif args.command == "agreement":
        from .agreement import agreement, table

        print(table(agreement(tuple(args.packages))))
    elif args.command == "scores":
        from .scores import table as scores_table

        print(scores_table())
    elif args.command == "images":
        from .images import write_images

        write_images(args.out)
    else:
        from agent_client.errors import EdgeError
        from modelpkg.manifest import load_labels, load_manifest, verify_files

        try:
            manifest = load_manifest(args.folder)
            verify_files(manifest)
            labels = load_labels(manifest)
        except EdgeError as exc:
            logger.error("%s", exc)
            return 1
        logger.info("%s %s: digest and %d labels OK", manifest.name, manifest.version, len(labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
