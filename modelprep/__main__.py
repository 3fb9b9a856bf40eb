"""`python -m modelprep`: prepare the bundled model folder and sample images.

Needs requirements/modelprep.txt (torch, CPU build) in its own virtual environment, never on a device.

python -m modelprep export --out artifacts/models/efficientnet-lite0
python -m modelprep images --out artifacts/images
python -m modelprep verify artifacts/models/efficientnet-lite0
"""

from __future__ import annotations

import argparse
import logging
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
    verify = commands.add_parser("verify", help="check a model folder's manifest, digest and labels")
    verify.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "export":
        from .export import write_model_folder

        write_model_folder(args.out)
    elif args.command == "images":
        from .images import write_images

        write_images(args.out)
    else:
        from agent_client.errors import EdgeError
        from component.manifest import load_labels, load_manifest, verify_sha256

        try:
            manifest = load_manifest(args.folder)
            verify_sha256(manifest)
            labels = load_labels(manifest)
        except EdgeError as exc:
            logger.error("%s", exc)
            return 1
        logger.info("%s %s: digest and %d labels OK", manifest.name, manifest.version, len(labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
