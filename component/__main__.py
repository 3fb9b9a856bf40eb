"""`edgeclassifier-component` (python -m component): classify frames through the agent and publish the top-k
results.

Under Greengrass (SVCUID set), the component configuration read over IPC overrides these flags key by
key; elsewhere the flags are all there is, and results go to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_client.errors import ConfigError, CoreError, EdgeError

from .app import InferenceApp, StartOptions, Updates
from .config import (
    KEYS,
    LOG_LEVELS,
    ComponentConfig,
    build_config,
    parse_component_config,
    preflight,
    proposal_problem,
    unknown_keys,
)
from .configfeed import ConfigurationFeed
from .ipc import CoreConnection, under_greengrass
from .packages import model_folder
from .reconfigure import ConfigurationStatus, read_last_good

logger = logging.getLogger("component")

# flag -> config field; help texts come from the config model's field descriptions.
FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--source": ("source", str),
    "--image-directory": ("image_directory", Path),
    "--image-name": ("image_name", str),
    "--interval": ("inference_interval", float),
    "--topic": ("topic", str),
    "--model-variant": ("model_variant", str),
    "--model-path": ("model_path", Path),
    "--model-name": ("model_name", str),
    "--agent-socket": ("agent_socket", Path),
    "--top-k": ("top_k", int),
    "--threshold": ("score_threshold", float),
    "--rpc-timeout": ("rpc_timeout", float),
    "--max-frames": ("max_frames", int),
    "--max-frame-pixels": ("max_frame_pixels", int),
    "--batch-size": ("batch_size", int),
    "--errored-after": ("errored_after", float),
    "--log-level": ("log_level", str.upper),
    "--publisher": ("publisher", str),
    "--status-topic": ("status_topic", str),
    "--status-interval": ("status_interval", float),
    "--capture-sample-rate": ("capture_sample_rate", float),
    "--capture-budget": ("capture_budget_per_hour", int),
}
CORE_WAIT_S = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="edgeclassifier-component",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, (name, kind) in FLAGS.items():
        key = KEYS[name]
        default = "" if key.default is None else key.default
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=None,
            help=f"{key.description} [{key.alias}; default {default}]",
        )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration, the model package and the image source, then exit (0 = OK)",
    )
    return parser.parse_args(argv)


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name, _ in FLAGS.values()}


def configure_logging(level: str | None) -> None:
    level = (level or "INFO").upper()
    logging.basicConfig(
        level=level if level in LOG_LEVELS else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def validate(cli: dict[str, Any]) -> int:
    """--validate-config: every check the component makes before it runs."""
    raw = CoreConnection().get_configuration() if under_greengrass() else {}
    config = build_config(cli, raw)
    problems = preflight(config, model_folder(config.model_path, config.model_variant))
    if problems:
        for problem in problems:
            print(f"configuration problem: {problem}", file=sys.stderr)
        return 2
    values = {**config.recipe_values(), "Source": config.describe_source() if config.source else ""}
    print(f"configuration OK: {json.dumps(values, separators=(',', ':'), ensure_ascii=False)}")
    return 0


def last_good(cli: dict[str, Any], state_dir: Path) -> ComponentConfig:
    """The configuration applied last time (the work folder keeps it), else the defaults."""
    try:
        return parse_component_config(cli, read_last_good(state_dir)).config
    except ConfigError as exc:
        logger.warning(
            "the last good configuration no longer validates (%s); starting from the defaults", exc
        )
        return parse_component_config(cli, {}).config


def greengrass_start(cli: dict[str, Any]) -> tuple[ComponentConfig, Updates, StartOptions, ConfigurationFeed]:
    """Under Greengrass: one IPC connection, subscribed to configuration updates before the first read;
    a configuration the core stored but the component refuses starts it from the last good one."""
    core = CoreConnection()
    state_dir = Path.cwd()  # both cores start a component in its work folder
    feed = ConfigurationFeed(core, check=lambda raw: proposal_problem(cli, raw))
    deadline = time.monotonic() + CORE_WAIT_S
    while True:
        try:
            raw = feed.start()
            break
        except CoreError as exc:
            if time.monotonic() >= deadline:
                raise
            logger.warning("%s; trying again", exc)
            time.sleep(1.0)
    status = ConfigurationStatus()
    status.note_ignored(unknown_keys(raw))
    try:
        config = parse_component_config(cli, raw).config
    except ConfigError as exc:
        config = last_good(cli, state_dir)
        status.state, status.reason, status.refusals = "REFUSED", str(exc), 1
        logger.error("the configuration the core gave is refused; starting from the last good one: %s", exc)
    options = StartOptions(
        cli=cli, core=core, state_dir=state_dir, send_state=core.update_state, configuration=status
    )
    return config, feed.poll, options, feed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack
    cli = cli_values(args)
    feed: ConfigurationFeed | None = None
    try:
        if args.validate_config:
            return validate(cli)
        if under_greengrass():
            config, updates, options, feed = greengrass_start(cli)
        else:
            config, updates, options = build_config(cli), None, StartOptions(cli=cli)
        logging.getLogger().setLevel(config.log_level)
        app = InferenceApp(config, updates=updates, options=options)
        signal.signal(signal.SIGTERM, lambda *_: app.stop())
        signal.signal(signal.SIGINT, lambda *_: app.stop())
        try:
            app.start()
            app.run()
        finally:
            if feed is not None:
                feed.close()  # first: the streams that end with the connection are not the core closing them
            app.close()
            if options.core is not None:
                options.core.close()
    except EdgeError as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
