"""`python -m component`: classify frames through the agent and publish the top-k results.

Under Greengrass (SVCUID set), the component configuration read over IPC overrides these flags key by
key; elsewhere the flags are all there is, and results go to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from agent_client.errors import EdgeError
from modelpkg.manifest import load_manifest, verify_sha256

from .app import ConfigUpdates, InferenceApp
from .config import ComponentConfig, build_config
from .greengrass import ConfigurationWatcher
from .health import IpcStateSender, LifecycleReporter
from .publishers import under_greengrass

logger = logging.getLogger("component")

# flag -> config field; help texts come from the config model's field descriptions.
FLAGS: dict[str, tuple[str, type]] = {
    "--source": ("source", str),
    "--image-directory": ("image_directory", Path),
    "--image-name": ("image_name", str),
    "--interval": ("inference_interval", float),
    "--topic": ("topic", str),
    "--model-path": ("model_path", Path),
    "--model-name": ("model_name", str),
    "--agent-socket": ("agent_socket", Path),
    "--top-k": ("top_k", int),
    "--threshold": ("score_threshold", float),
    "--rpc-timeout": ("rpc_timeout", float),
    "--max-frames": ("max_frames", int),
    "--batch-size": ("batch_size", int),
    "--errored-after": ("errored_after", float),
    "--log-level": ("log_level", str),
    "--publisher": ("publisher", str),
    "--status-topic": ("status_topic", str),
    "--status-interval": ("status_interval", float),
    "--capture-sample-rate": ("capture_sample_rate", float),
    "--capture-budget": ("capture_budget_per_hour", int),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m component", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    fields = ComponentConfig.model_fields
    for flag, (name, kind) in FLAGS.items():
        field = fields[name]
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=None,
            help=f"{field.description} [{field.alias}; default {field.default}]",
        )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration and the model manifest, then exit",
    )
    return parser.parse_args(argv)


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name, _ in FLAGS.values()}


def load_config(args: argparse.Namespace) -> ComponentConfig:
    greengrass: dict[str, Any] = {}
    if under_greengrass():
        from .greengrass import read_configuration

        greengrass = read_configuration()
    return build_config(cli_values(args), greengrass)


def watch_config(args: argparse.Namespace) -> tuple[ConfigurationWatcher | None, ConfigUpdates | None]:
    """Under Greengrass, a watcher of configuration updates and the function the run loop polls."""
    if not under_greengrass():
        return None, None
    watcher = ConfigurationWatcher()
    watcher.start()
    cli = cli_values(args)

    def updates() -> ComponentConfig | None:
        raw = watcher.changed()
        return None if raw is None else build_config(cli, raw)

    return watcher, updates


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    faulthandler.register(
        signal.SIGUSR1, all_threads=True
    )  # `kill -USR1 PID`: every thread's stack to stderr
    try:
        config = load_config(args)
        logging.getLogger().setLevel(config.log_level)
        if args.validate_config:
            verify_sha256(load_manifest(config.model_path))
            print(f"configuration OK: {config.model_dump_json(by_alias=True)}")
            return 0
        watcher, updates = watch_config(args)
        sender = IpcStateSender() if under_greengrass() else None
        lifecycle = LifecycleReporter(sender, config.errored_after) if sender is not None else None
        app = InferenceApp(config, updates=updates, lifecycle=lifecycle)
        signal.signal(signal.SIGTERM, lambda *_: app.stop())
        signal.signal(signal.SIGINT, lambda *_: app.stop())
        try:
            app.start()
        finally:
            app.close()
            if watcher is not None:
                watcher.close()
            if sender is not None:
                sender.close()
    except EdgeError as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
