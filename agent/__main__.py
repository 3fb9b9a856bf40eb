"""`python -m agent --socket PATH --models-root DIR [--models-root DIR ...]`: the open inference agent.

Serves the SageMaker Edge Manager agent gRPC API on a unix socket. Stops gracefully on SIGTERM/SIGINT.
Optional `--load NAME=FOLDER` loads models at start (clients may also LoadModel themselves).

Only model packages with a manifest.json listing every file's sha256 are loaded, verified again at every
LoadModel (`python -m modelprep manifest FOLDER` fills in a manifest's digests). The socket is owner-only
(0600) unless --socket-group lets one group in (0660); a missing socket folder is created private (0700,
or 0750).
Exit status: 0 after a graceful stop, 2 for an option, socket or model problem (the message says what to do).
"""

from __future__ import annotations

import argparse
import faulthandler
import grp
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from agent_client.client import DEFAULT_SOCKET
from agent_client.errors import ConfigError, EdgeError

from .datacapture import CaptureLimits
from .server import MIB, AgentOptions, AgentServer

logger = logging.getLogger("agent")


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}")
        return value

    return parse


def _group(text: str) -> int:
    try:
        return int(text) if text.isdigit() else grp.getgrnam(text).gr_gid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no group named {text!r} (see `getent group`)") from None


def _load_spec(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FOLDER")
    return name, folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--socket",
        type=Path,
        default=Path(DEFAULT_SOCKET),
        help=f"unix socket to serve on (default {DEFAULT_SOCKET}, the Edge Manager path, in world-writable "
        f"/tmp: prefer a folder of the agent's own)",
    )
    add(
        "--models-root",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="a folder holding model packages; LoadModel urls must lie inside one (repeat for several)",
    )
    add(
        "--socket-group",
        type=_group,
        metavar="GROUP",
        help="let this group (name or gid) connect: socket "
        "0660 and a created socket folder 0750 (default: the agent's user only, 0600/0700)",
    )
    add(
        "--trusted-uid",
        type=_int_at_least(0),
        action="append",
        default=[],
        metavar="UID",
        help="also read shared memory tensors from segments of this uid (the agent's own uid and root "
        "always; repeatable)",
    )
    add("--threads", type=_int_at_least(1), default=2, help="runtime threads per model (default 2)")
    add(
        "--spin",
        action="store_true",
        help="let idle ONNX Runtime threads spin-wait for work (faster on an "
        "idle machine, slower when other processes want the cores; default off)",
    )
    add("--workers", type=_int_at_least(1), default=4, help="RPCs handled at once (default 4)")
    add(
        "--max-concurrent-rpcs",
        type=_int_at_least(1),
        default=64,
        metavar="N",
        help="calls accepted at once, running or queued; more are answered RESOURCE_EXHAUSTED (default 64)",
    )
    add(
        "--max-message-mb",
        type=_int_at_least(1),
        default=32,
        metavar="MB",
        help="largest request and shared memory tensor in MiB (default 32)",
    )
    add(
        "--max-inflight-mb",
        type=_int_at_least(1),
        default=64,
        metavar="MB",
        help="request bytes handled at "
        "once in MiB; more are answered RESOURCE_EXHAUSTED (default 64, at least --max-message-mb)",
    )
    add("--capture-dir", type=Path, default=None, help="enable CaptureData, writing here (created 0700)")
    add(
        "--capture-max-mb",
        type=_int_at_least(1),
        default=256,
        metavar="MB",
        help="captures kept on disk in MiB; the oldest are deleted beyond it (default 256)",
    )
    add(
        "--capture-max-count",
        type=_int_at_least(1),
        default=10_000,
        metavar="N",
        help="captures kept on disk; the oldest are deleted beyond it (default 10000)",
    )
    add(
        "--capture-max-request-mb",
        type=_int_at_least(1),
        default=16,
        metavar="MB",
        help="largest CaptureData request in MiB (default 16)",
    )
    add("--load", type=_load_spec, action="append", default=[], metavar="NAME=FOLDER", help="load at start")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> AgentOptions:
    return AgentOptions(
        socket=args.socket,
        models_root=tuple(args.models_root),
        threads=args.threads,
        spin=args.spin,
        workers=args.workers,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_message_bytes=args.max_message_mb * MIB,
        max_inflight_bytes=args.max_inflight_mb * MIB,
        socket_group=args.socket_group,
        trusted_uids=frozenset(args.trusted_uid),
        capture_dir=args.capture_dir,
        capture_limits=CaptureLimits(
            max_bytes=args.capture_max_mb * MIB,
            max_count=args.capture_max_count,
            max_request_bytes=args.capture_max_request_mb * MIB,
            max_pending_bytes=max(CaptureLimits.max_pending_bytes, args.capture_max_request_mb * MIB),
        ),
    )


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
        server = AgentServer(options_from(args))
    except EdgeError as exc:
        logger.error("%s", exc)
        return 2
    try:
        server.start()
        for name, folder in args.load:
            server.registry.load(folder, name)
        while not stop.wait(1.0):
            pass
    except EdgeError as exc:
        logger.error("%s", exc)
        return 2
    except OSError as exc:  # what the checks before could not foresee (a full disk, a vanished folder)
        logger.error("%s", ConfigError(f"the agent cannot run: {exc}; fix the path or its permissions"))
        return 2
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
