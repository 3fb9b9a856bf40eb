"""Regenerates the gRPC stubs from agent.proto with the pinned grpcio-tools.

Run `python -m agent_client.codegen` after editing agent.proto; `--check` exits 1 when the committed
stubs differ from what the pinned tools generate (CI runs the check through the unit tests).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO = "agent.proto"
GENERATED = ("agent_pb2.py", "agent_pb2_grpc.py", "agent_pb2.pyi")


def generate(out_dir: Path) -> dict[str, str]:
    """Runs protoc on agent.proto into out_dir; returns {file name: text} with package-relative imports."""
    from grpc_tools import protoc  # dev-only dependency: imported here, never on the device path

    include = Path(protoc.__file__).resolve().parent / "_proto"
    argv = [
        "protoc",
        f"-I{PACKAGE_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PACKAGE_DIR / PROTO),
    ]
    if protoc.main(argv) != 0:
        raise RuntimeError(f"protoc failed on {PACKAGE_DIR / PROTO}")
    texts = {name: (out_dir / name).read_text() for name in GENERATED}
    # protoc writes `import agent_pb2`; inside a package it must be relative.
    texts["agent_pb2_grpc.py"] = re.sub(
        r"^import agent_pb2 as", "from . import agent_pb2 as", texts["agent_pb2_grpc.py"], flags=re.M
    )
    return texts


def stale_files() -> list[str]:
    """Names of generated files whose committed text differs from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    return [
        name
        for name, text in fresh.items()
        if not (PACKAGE_DIR / name).exists() or (PACKAGE_DIR / name).read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale stubs; exit 1 if any")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.check:
        stale = stale_files()
        if stale:
            logger.error("stale generated stubs: %s; run python -m agent_client.codegen", ", ".join(stale))
            return 1
        logger.info("generated stubs are up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in generate(Path(tmp)).items():
            (PACKAGE_DIR / name).write_text(text)
            logger.info("wrote %s", PACKAGE_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
