"""`python -m agent --socket PATH --models-root DIR`: the open inference agent.

Serves the SageMaker Edge Manager agent gRPC API on a unix socket. Stops gracefully on SIGTERM/SIGINT.
Optional `--load NAME=FOLDER` loads models at start (clients may also LoadModel themselves).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
import threading
from pathlib import Path

from agent_client.client import DEFAULT_SOCKET
from agent_client.errors import EdgeError

from .server import AgentOptions, AgentServer

logger = logging.getLogger("agent")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--socket", type=Path, default=Path(DEFAULT_SOCKET), help="unix socket to serve on")
    parser.add_argument("--models-root", type=Path, required=True, help="LoadModel urls must lie under it")
    parser.add_argument("--threads", type=int, default=2, help="runtime threads per model (default 2)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent RPCs (default 4)")
    parser.add_argument("--capture-dir", type=Path, default=None, help="enable CaptureData, writing here")
    parser.add_argument("--max-message-mb", type=int, default=32, help="largest request in MiB (default 32)")
    parser.add_argument("--load", action="append", default=[], metavar="NAME=FOLDER", help="load at start")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.register(
        signal.SIGUSR1, all_threads=True
    )  # `kill -USR1 PID`: every thread's stack to stderr
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        options = AgentOptions(
            socket=args.socket,
            models_root=args.models_root,
            threads=args.threads,
            workers=args.workers,
            capture_dir=args.capture_dir,
            max_message_bytes=args.max_message_mb * 1024 * 1024,
        )
        server = AgentServer(options)
        server.start()
    except EdgeError as exc:
        logger.error("%s", exc)
        return 2
    try:
        for spec in args.load:
            name, _, folder = spec.partition("=")
            server.registry.load(folder, name)
        while not stop.wait(1.0):
            pass
    except EdgeError as exc:
        logger.error("%s", exc)
        return 2
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
