"""Command line: ``python -m gglocal deploy|deployment|status|config|stop``.

``deploy`` runs in the foreground until SIGINT/SIGTERM or ``gglocal stop``, as the core ``--nucleus`` names
(``classic``, the Java nucleus, by default, or ``lite``); published IoT Core messages go to stdout as JSON
lines when no ``--mqtt`` broker is given; logs go to stderr and ``<root>/logs/greengrass.log``.
``deployment`` is a further deployment into the running stand-in (a new version of a component replaces
the running one, and what depends HARD on it restarts). ``config`` is a local configuration deployment
(greengrass-cli ``--update-config``; ggl-cli / IPC CreateLocalDeployment): on the Java nucleus a component may
reject it (the message is printed, exit 2); both cores apply it live, the component restarting only when the
Java nucleus rendered a changed lifecycle step from it. ``config --cloud`` carries it out as a deployment from
the cloud would: nucleus lite restarts the components it changes. ``status`` shows each component's
state, errors within the last hour and restarts, and the broker connection and outbox depth (``--json``:
the components; ``--json --full``: everything).
Exit codes: 0 ok, 2 deployment/usage error, 3 the running stand-in could not be reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from gglocal.control import IO_TIMEOUT_S, read_state_file, send_command
from gglocal.core import Core
from gglocal.errors import ControlError, GgLocalError
from gglocal.iotcore import status_lines
from gglocal.nucleus import DEFAULT_NUCLEUS, PROFILES
from gglocal.outbox import DEFAULT_LIMIT
from gglocal.private import PrivateFileHandler
from gglocal.validation import DEFAULT_TIMEOUT_S

logger = logging.getLogger(__name__)

DEFAULT_ROOT = ".gglocal"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gglocal", description="Local stand-in of the Greengrass v2 core."
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    deploy = commands.add_parser("deploy", help="install and run the components of a GDK build dir")
    deploy.add_argument(
        "build_dir", nargs="?", type=Path, help="GDK build output (has recipes/ and artifacts/)"
    )
    deploy.add_argument("--recipe-dir", type=Path, help="recipes (instead of BUILD_DIR/recipes)")
    deploy.add_argument("--artifact-dir", type=Path, help="artifacts as <name>/<version>/<file>")
    deploy.add_argument(
        "--root", type=Path, default=Path(DEFAULT_ROOT), help="device root (default .gglocal)"
    )
    deploy.add_argument(
        "--nucleus",
        choices=sorted(PROFILES),
        default=DEFAULT_NUCLEUS,
        help="the core to behave as: classic (the Java nucleus, default) or lite (nucleus lite)",
    )
    deploy.add_argument(
        "--validation-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="classic: how long a configuration deployment waits for validity reports (default 20)",
    )
    deploy.add_argument("--mqtt", metavar="HOST:PORT", help="MQTT broker standing in for IoT Core")
    deploy.add_argument(
        "--thing-name", default="gglocal-thing", help="AWS_IOT_THING_NAME and {iot:thingName}"
    )
    deploy.add_argument("--region", help="AWS_REGION for components (default $AWS_REGION or us-east-1)")
    deploy.add_argument(
        "--update-config", metavar="JSON_OR_FILE", help='{"<name>": {"MERGE": {...}, "RESET": [...]}}'
    )
    deploy.add_argument(
        "--only", nargs="+", metavar="NAME", help="deploy only these components (and their deps)"
    )
    deploy.add_argument(
        "--spool-bytes",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="BYTES",
        help="classic: payload bytes spooled while offline (the Java nucleus's maxSizeInBytes, default"
        " 2.5 MiB); lite keeps none",
    )
    deploy.add_argument("--verbose", action="store_true", help="echo component output to stderr")

    status = commands.add_parser("status", help="component states of a running stand-in")
    status.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    status.add_argument("--json", action="store_true", help="print the components as JSON instead of text")
    status.add_argument(
        "--full", action="store_true", help="with --json: nucleus, components, iot, deployments"
    )

    config = commands.add_parser(
        "config",
        help="change a component's configuration at run time (a local configuration deployment, live)",
    )
    config.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    config.add_argument("--component", required=True)
    config.add_argument("--merge", metavar="JSON", help="object to merge into the configuration")
    config.add_argument("--reset", action="append", default=[], metavar="/path", help="JSON pointer to reset")
    config.add_argument(
        "--cloud",
        action="store_true",
        help="as a deployment from the cloud (IoT jobs): lite restarts the components it changes; classic is"
        " the same as local",
    )

    further = commands.add_parser(
        "deployment",
        help="deploy (a new version of) components into a running stand-in, as greengrass-cli deployment"
        " create or ggl-cli deploy do; waits for the outcome",
    )
    further.add_argument(
        "build_dir", nargs="?", type=Path, help="GDK build output (has recipes/ and artifacts/)"
    )
    further.add_argument("--recipe-dir", type=Path, help="recipes (instead of BUILD_DIR/recipes)")
    further.add_argument("--artifact-dir", type=Path, help="artifacts as <name>/<version>/<file>")
    further.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    further.add_argument(
        "--only", nargs="+", metavar="NAME", help="deploy only these components (and their deps)"
    )
    further.add_argument(
        "--update-config", metavar="JSON_OR_FILE", help='{"<name>": {"MERGE": {...}, "RESET": [...]}}'
    )
    further.add_argument(
        "--timeout", type=float, default=900.0, metavar="SECONDS", help="how long to wait (default 900)"
    )

    stop = commands.add_parser("stop", help="stop a running stand-in")
    stop.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    return parser


def _deploy(args: argparse.Namespace) -> int:
    if args.build_dir is None and args.recipe_dir is None:
        logger.error("deploy needs BUILD_DIR or --recipe-dir")
        return 2
    core = Core(
        args.root,
        nucleus=args.nucleus,
        validation_timeout_s=args.validation_timeout,
        mqtt=args.mqtt,
        thing_name=args.thing_name,
        region=args.region,
        verbose=args.verbose,
        spool_bytes=args.spool_bytes,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        core.stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        names = core.deploy(
            args.build_dir,
            recipe_dir=args.recipe_dir,
            artifact_dir=args.artifact_dir,
            update_config=args.update_config,
            only=args.only,
        )
        logger.info("deployed %s; stop with Ctrl-C or: python -m gglocal stop --root %s", names, args.root)
        while not core.stop_requested.wait(0.5):
            pass
        return 0
    except GgLocalError as exc:
        logger.error("deployment failed: %s", exc)
        return 2
    finally:
        core.stop()


def _status(args: argparse.Namespace) -> int:
    status = send_command(args.root, {"cmd": "status"})
    if args.json:
        print(json.dumps(status if args.full else status["components"], indent=2))
        return 0
    print(f"Nucleus: {status.get('nucleus', DEFAULT_NUCLEUS)}")
    for name, info in status["components"].items():
        print(
            f"Component Name: {name}\n    Version: {info['version']}\n    State: {info['state']}\n"
            f"    Errors (last hour): {info.get('errors', 0)}\n    Restarts: {info.get('restarts', 0)}"
        )
    for line in status_lines(status.get("iot") or {}):
        print(line)
    return 0


def _config(args: argparse.Namespace) -> int:
    try:
        merge = json.loads(args.merge) if args.merge else {}
    except ValueError as exc:
        logger.error("--merge is not valid JSON: %s", exc)
        return 2
    request = {
        "cmd": "config",
        "component": args.component,
        "merge": merge,
        "reset": args.reset,
        "cloud": args.cloud,
    }
    try:
        waits = float(read_state_file(args.root).get("validation_timeout_s", DEFAULT_TIMEOUT_S))
    except ValueError:
        waits = DEFAULT_TIMEOUT_S
    reply = send_command(args.root, request, timeout=waits + IO_TIMEOUT_S)
    deployment = reply.get("deployment") or {}
    if deployment.get("status") == "FAILED":
        logger.error(
            "configuration deployment %s failed: %s", deployment.get("id"), deployment.get("message")
        )
        return 2
    print(json.dumps(reply["changed"]))
    return 0


def _deployment(args: argparse.Namespace) -> int:
    if args.build_dir is None and args.recipe_dir is None:
        logger.error("deployment needs BUILD_DIR or --recipe-dir")
        return 2
    paths = {"build_dir": args.build_dir, "recipe_dir": args.recipe_dir, "artifact_dir": args.artifact_dir}
    request = {
        "cmd": "deploy",
        **{key: str(path.absolute()) for key, path in paths.items() if path is not None},
        "only": args.only or [],
        "update_config": args.update_config,
    }
    deployment = send_command(args.root, request)["deployment"]
    logger.info("deployment %s queued; waiting for it (up to %s s)", deployment["id"], args.timeout)
    deadline = time.monotonic() + args.timeout
    while deployment.get("status") == "IN_PROGRESS":
        if time.monotonic() > deadline:
            logger.error("deployment %s still in progress after %s s", deployment["id"], args.timeout)
            return 2
        time.sleep(0.5)
        known = send_command(args.root, {"cmd": "status"}).get("deployments", [])
        deployment = next((d for d in known if d["id"] == deployment["id"]), deployment)
    if deployment.get("status") != "SUCCEEDED":
        logger.error("deployment %s failed: %s", deployment["id"], deployment.get("message"))
        return 2
    print(json.dumps(deployment))
    return 0


def _stop(args: argparse.Namespace) -> int:
    send_command(args.root, {"cmd": "stop"})
    return 0


def configure_logging(level: str, log_file: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(PrivateFileHandler(log_file))  # 0600 in a 0700 folder
    logging.basicConfig(
        level=level.upper(), handlers=handlers, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_file = args.root / "logs" / "greengrass.log" if args.command == "deploy" else None
    configure_logging(args.log_level, log_file)
    commands = {
        "deploy": _deploy,
        "deployment": _deployment,
        "status": _status,
        "config": _config,
        "stop": _stop,
    }
    try:
        return commands[args.command](args)
    except ControlError as exc:
        logger.error("%s", exc)
        return 3
