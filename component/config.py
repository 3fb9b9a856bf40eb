"""The inference component's configuration: one validated frozen dataclass, parsed once at the edge.

Sources, later ones winning key by key: built-in defaults < command-line flags < the Greengrass component
configuration (GetConfiguration: the recipe's DefaultConfiguration with deployment MERGE/RESET applied).
A key that is missing or an empty string means its default; numbers may come as numbers or as strings (the
cores store recipe values as strings, nucleus lite turns YAML numbers into strings).

Unknown keys: `build_config` refuses them with the list of valid ones (command line, --validate-config, and
the Java nucleus's validation at deployment time, so a misspelt key never gets stored there).
`parse_component_config` is what the running component applies: nucleus lite cannot refuse a key before
storing it, so there an unknown key is reported and ignored rather than blocking every later update.

`preflight(config)` is the check that needs the file system (model package, image folder); the component
runs it wherever it validates: at start, for --validate-config, and before applying an update.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent_client.errors import ConfigError, EdgeError
from ggrules.access import MQTTPROXY, PUBLISH_TO_IOT_CORE, has_access_control, may_publish_to_iot_core
from ggrules.topics import iot_topic_problem

from .packages import VARIANTS, bundled_images
from .redact import redact

DEFAULT_TOPIC = "gg/sageMakerEdgeManager/image-classification"
MAX_PATH_BYTES = 4095  # PATH_MAX - 1
MAX_NAME_BYTES = 255  # NAME_MAX: one path component
MAX_SOCKET_BYTES = 107
MODEL_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")  # the agent's rule for model names
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PUBLISHERS = ("auto", "ipc", "stdout")

# Keys the core keeps in the same configuration object; the component leaves them alone.
CORE_KEYS = frozenset({"accessControl"})

Check = Callable[[Any], Any]  # a typed value in, the value to keep out (normalised); ValueError says why not


def _check_path(value: Path | None, what: str, limit: int = MAX_PATH_BYTES) -> Path | None:
    if value is None:
        return None
    raw = os.fsencode(value)
    if b"\x00" in raw:
        raise ValueError(f"{what} must not contain a NUL character")
    if len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes; at most {limit} are allowed")
    long = next((p for p in value.parts if len(os.fsencode(p)) > MAX_NAME_BYTES), None)
    if long is not None:
        raise ValueError(f"{what} has a folder or file name longer than {MAX_NAME_BYTES} bytes")
    return value


def _whole(value: Any) -> int:
    """An integer from a JSON number or a string: 3, 3.0, "3", " 3 ", "3.0", "1e3"; never a boolean, 3.5
    or "3.000001"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        exact = _decimal(value, "must be a whole number")
        if exact.adjusted() > 30:  # "1e999999999" would be a billion-digit int
            raise ValueError("must be a whole number of a sensible size")
        if exact != exact.to_integral_value():
            raise ValueError(f"must be a whole number, not {value.strip()}")
        return int(exact)
    number = _real(value, "must be a whole number")
    if not number.is_integer():
        raise ValueError(f"must be a whole number, not {number:g}")
    return int(number)


def _real(value: Any, what: str = "must be a number") -> float:
    """A finite float from a JSON number or a string ("0.5", "1e1"); never a boolean, NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(what)
    try:
        number = float(_decimal(value, what) if isinstance(value, str) else value)
    except OverflowError:
        raise ValueError(f"{what} of a sensible size") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _decimal(text: str, what: str) -> Decimal:
    """A finite decimal number written in ASCII (as a recipe or a YAML file writes it)."""
    text = text.strip()
    if not text.isascii() or len(text) > 100:
        raise ValueError(what)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(what) from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value.strip()


def _path(value: Any) -> Path | None:
    """A path from a string (surrounding blanks dropped; empty = not set) or a path object."""
    if isinstance(value, str):
        value = value.strip()
        return Path(value) if value else None
    if isinstance(value, os.PathLike):
        return Path(value)
    raise ValueError("must be a path (a string)")


READERS: dict[type, Callable[[Any], Any]] = {str: _text, int: _whole, float: _real, Path: _path}


@dataclass(frozen=True)
class Key:
    """How one configuration key is read: its recipe key, default, type, bounds and own checks."""

    alias: str  # the recipe's configuration key
    default: Any
    kind: type  # str, int, float or Path (a Path key may be unset: None)
    description: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    checks: tuple[Check, ...] = ()

    def read(self, value: Any) -> Any:
        """The typed, bounded, checked value; ValueError saying what is allowed."""
        typed = READERS[self.kind](value)
        if self.ge is not None and typed < self.ge:
            raise ValueError(f"must be at least {self.ge}")
        if self.gt is not None and typed <= self.gt:
            raise ValueError(f"must be more than {self.gt}")
        if self.le is not None and typed > self.le:
            raise ValueError(f"must be at most {self.le}")
        for check in self.checks:
            typed = check(typed)
        return typed


def setting(
    default: Any,
    alias: str,
    kind: type,
    description: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    checks: tuple[Check, ...] = (),
) -> Any:
    """A ComponentConfig field and how its key is read (kept in the field's metadata)."""
    key = Key(alias, default, kind, description, ge, gt, le, checks)
    return field(default=default, metadata={"key": key})


def _publishable(value: str) -> str:
    """MQTT's and AWS IoT Core's rules for a topic to publish to."""
    problem = iot_topic_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _status_topic(value: str) -> str:
    return _publishable(value) if value else value  # empty: the thing's own status topic


def _source_parses(value: str) -> str:
    if value:
        from .sources import source_problem

        problem = source_problem(value)
        if problem:
            raise ValueError(problem)
    return value


def _path_fits(value: Path | None) -> Path | None:
    return _check_path(value, "the path")


def _socket_path(value: Path | None) -> Path | None:
    if value is not None and str(value).startswith("unix:"):
        rest = str(value).split(":", 1)[1].lstrip("/")
        raise ValueError(f"takes a file path, not a gRPC address: use '/{rest}' with a leading /")
    return _check_path(value, "a unix socket path", MAX_SOCKET_BYTES)


def _one_of(*allowed: str, case: Callable[[str], str] = str.lower) -> Check:
    def check(value: str) -> str:
        value = case(value)
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return check


def _agent_name(value: str) -> str:
    if value and (not MODEL_NAME.fullmatch(value) or len(value) > 100):
        raise ValueError("must be letters, digits and single inner dashes, at most 100 characters")
    return value


@dataclass(frozen=True)
class ComponentConfig:
    """Every key of the component, validated (see parse_component_config); `KEYS` has each one's recipe
    key, type, bounds and description."""

    source: str = setting(
        "",
        "Source",
        str,
        "video file, rtsp://... stream or /dev/videoN camera; empty = ImageDirectory/ImageName",
        checks=(_source_parses,),
    )
    image_directory: Path | None = setting(
        None,
        "ImageDirectory",
        Path,
        "folder of images to classify (default: the bundled samples)",
        checks=(_path_fits,),
    )
    image_name: str = setting(
        "", "ImageName", str, "one file inside ImageDirectory; empty = every image in the folder"
    )
    inference_interval: float = setting(
        5.0,
        "InferenceInterval",
        float,
        "seconds between frames (between batches when BatchSize > 1); 0 = as fast as possible",
        ge=0,
        le=86400,
    )
    batch_size: int = setting(
        1,
        "BatchSize",
        int,
        "frames per Predict call when the model takes a batch (dynamic first dimension)",
        ge=1,
        le=64,
    )
    topic: str = setting(
        DEFAULT_TOPIC, "PublishResultsOnTopic", str, "MQTT topic for results", checks=(_publishable,)
    )
    model_variant: str = setting(
        "fp32",
        "ModelVariant",
        str,
        "package of the model component to run: fp32, int8 or neo (the platform's Neo build)",
        checks=(_one_of(*VARIANTS),),
    )
    model_path: Path | None = setting(
        None,
        "ModelPath",
        Path,
        "a model folder with manifest.json; empty = ModelVariant of the model component",
        checks=(_path_fits,),
    )
    model_name: str = setting(
        "", "ModelName", str, "agent-side model name; empty = manifest name", checks=(_agent_name,)
    )
    agent_socket: Path | None = setting(
        None,
        "AgentSocket",
        Path,
        "the agent's unix socket; empty = the deployed agent's (or the Edge Manager default)",
        checks=(_socket_path,),
    )
    top_k: int = setting(5, "TopK", int, "how many classes to report at most", ge=1, le=100)
    score_threshold: float = setting(
        0.3, "ScoreThreshold", float, "report classes scoring at least this", ge=0, le=1
    )
    rpc_timeout: float = setting(5.0, "RpcTimeoutSeconds", float, "deadline of each agent call", gt=0, le=300)
    max_frames: int = setting(
        0, "MaxFrames", int, "stop after this many frames; 0 = run forever", ge=0, le=10**15
    )
    max_frame_pixels: int = setting(
        40_000_000,
        "MaxFramePixels",
        int,
        "skip frames with more pixels than this (bounds the work one frame may cost)",
        ge=1,
        le=1_000_000_000,
    )
    log_level: str = setting(
        "INFO",
        "LogLevel",
        str,
        "DEBUG, INFO, WARNING or ERROR",
        checks=(_one_of(*LOG_LEVELS, case=str.upper),),
    )
    publisher: str = setting(
        "auto",
        "Publisher",
        str,
        "ipc, stdout, or auto (ipc under Greengrass)",
        checks=(_one_of(*PUBLISHERS),),
    )
    status_topic: str = setting(
        "",
        "StatusTopic",
        str,
        "health and metrics topic; empty = edgeclassifier/status/<thing>",
        checks=(_status_topic,),
    )
    status_interval: float = setting(
        30.0, "StatusInterval", float, "seconds between status messages; 0 = none", ge=0, le=86400
    )
    errored_after: float = setting(
        120.0,
        "ErroredAfterSeconds",
        float,
        "report ERRORED (the core restarts the component) when the run loop has made no "
        "progress at all for this long; outages never do; 0 = never",
        ge=0,
        le=86400,
    )
    capture_sample_rate: float = setting(
        0.0, "CaptureSampleRate", float, "share of inferences sent to CaptureData; 0 = none", ge=0, le=1
    )
    capture_budget_per_hour: int = setting(
        60, "CaptureBudgetPerHour", int, "at most this many captures per rolling hour", ge=0, le=10**9
    )

    @property
    def images(self) -> Path:
        return self.image_directory or bundled_images()

    @property
    def source_path(self) -> Path:
        """The image or folder frames come from when Source is empty."""
        return self.images / self.image_name if self.image_name else self.images

    @property
    def source_spec(self) -> str | Path:
        """What frames come from: Source when set, else the image or folder."""
        return self.source or self.source_path

    def describe_source(self) -> str:
        """The source as it may be logged and published (credentials in a URL are masked)."""
        return redact(str(self.source_spec))

    def replace(self, **changes: Any) -> ComponentConfig:
        """A copy with some fields changed (values already validated)."""
        return replace(self, **changes)

    def recipe_values(self, *, changed_only: bool = False) -> dict[str, Any]:
        """The configuration by recipe key as JSON values (paths as strings, an unset one as null);
        changed_only: only the keys whose value is not their default."""
        values = {}
        for name, key in KEYS.items():
            value = getattr(self, name)
            if changed_only and value == key.default:
                continue
            values[key.alias] = str(value) if isinstance(value, Path) else value
        return values


KEYS: dict[str, Key] = {f.name: f.metadata["key"] for f in fields(ComponentConfig)}  # by field name


def _between_keys(config: ComponentConfig) -> list[str]:
    """The rules that involve more than one key's value (or the value as a whole)."""
    name = config.image_name
    if name and (Path(name).name != name or "\x00" in name):
        return ["ImageName must be a file name inside ImageDirectory, not a path"]
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        return [f"ImageName is longer than {MAX_NAME_BYTES} bytes"]
    return []


# Settings that need a new process: the IPC publisher and the agent connection are made once.
RESTART_KEYS = ("agent_socket", "publisher", "rpc_timeout")


def _aliases() -> dict[str, str]:
    return {key.alias: name for name, key in KEYS.items()}


def valid_keys() -> list[str]:
    return sorted(_aliases())


@dataclass(frozen=True)
class ParsedConfig:
    """A validated configuration and the keys of the core's configuration it ignored (unknown ones)."""

    config: ComponentConfig
    ignored: tuple[str, ...] = ()


def _values(
    cli: Mapping[str, Any] | None, greengrass: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    aliases = _aliases()
    values: dict[str, Any] = {k: v for k, v in (cli or {}).items() if v is not None}
    unknown = unknown_keys(greengrass)
    for key, value in (greengrass or {}).items():
        if key in CORE_KEYS or key in unknown:
            continue
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue  # not set: the command line's value, else the default
        values[aliases[key]] = value
    return values, list(unknown)


def unknown_keys(greengrass: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The keys of the core's configuration that are neither ours nor the core's own, sorted."""
    aliases = _aliases()
    return tuple(sorted(k for k in (greengrass or {}) if k not in CORE_KEYS and k not in aliases))


def _validate(values: dict[str, Any]) -> ComponentConfig:
    """Every value typed, bounded and checked; ConfigError naming each bad key, its value and what is
    allowed (all of them at once), then the rules between keys."""
    typed: dict[str, Any] = {}
    problems = []
    for name, value in values.items():
        key = KEYS.get(name)
        if key is None:
            problems.append(f"{name}: not a configuration key (valid: {', '.join(KEYS)})")
            continue
        try:
            typed[name] = key.read(value)
        except ValueError as exc:
            problems.append(f"{key.alias}={_shown(value)}: {exc}")
    if not problems:
        config = ComponentConfig(**typed)
        problems = _between_keys(config)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return config


def _shown(value: Any) -> str:
    """A refused value as an error message shows it: its repr, credentials masked, at most 80 characters."""
    shown = redact(repr(value))
    return shown if len(shown) <= 80 else shown[:77] + "..."


def parse_component_config(
    cli: Mapping[str, Any] | None = None, greengrass: Mapping[str, Any] | None = None
) -> ParsedConfig:
    """defaults < cli (field names) < greengrass (recipe keys), unknown recipe keys ignored and returned;
    ConfigError naming each bad key, its value and what is allowed."""
    values, unknown = _values(cli, greengrass)
    config = _validate(values)
    _check_access(config, greengrass)
    return ParsedConfig(config, tuple(unknown))


def build_config(
    cli: Mapping[str, Any] | None = None, greengrass: Mapping[str, Any] | None = None
) -> ComponentConfig:
    """Like parse_component_config, but an unknown key is an error too (listing the valid ones)."""
    values, unknown = _values(cli, greengrass)
    if unknown:
        raise ConfigError(
            f"unknown configuration key(s) {', '.join(unknown)}; valid keys: {', '.join(valid_keys())}"
        )
    config = _validate(values)
    _check_access(config, greengrass)
    return config


def _check_access(config: ComponentConfig, greengrass: Mapping[str, Any] | None) -> None:
    """A configuration whose own accessControl does not let the component publish on its topics is refused:
    the core would refuse every result on them (UnauthorizedError) while the component looked healthy.
    Checked only when the core's configuration holds accessControl (both cores keep it there)."""
    from .status import default_status_topic

    if not has_access_control(greengrass):
        return
    assert greengrass is not None
    thing = os.environ.get("AWS_IOT_THING_NAME")  # what {iot:thingName} in a resource stands for
    topics = {
        "PublishResultsOnTopic": config.topic,
        "StatusTopic": config.status_topic or default_status_topic(),
    }
    denied = [
        f"{key}={topic!r}"
        for key, topic in topics.items()
        if not may_publish_to_iot_core(greengrass, topic, thing)
    ]
    if denied:
        raise ConfigError(
            f"{' and '.join(denied)} not allowed by this configuration's accessControl"
            f" ({MQTTPROXY}, {PUBLISH_TO_IOT_CORE}): the core would refuse every message on it;"
            " merge the topic into accessControl in the same deployment (README: Changing the topic)"
        )


def preflight(config: ComponentConfig, model_folder: Path | None) -> list[str]:
    """What keeps config from running, found on the file system: the model package in model_folder
    (manifest, every file's digest, labels; not checked when None) and, for images, the folder or file.
    Empty when it can run."""
    from modelpkg.manifest import load_labels, load_manifest, verify_files

    from .sources import image_source_problem

    problems = []
    if model_folder is not None:
        try:
            manifest = load_manifest(model_folder)
            verify_files(manifest)
            load_labels(manifest)
        except EdgeError as exc:
            problems.append(str(exc))
    if not config.source:
        problem = image_source_problem(config.source_path)
        if problem:
            problems.append(problem)
    return problems


def proposal_problem(cli: Mapping[str, Any], raw: Mapping[str, Any]) -> str | None:
    """Why a configuration proposed by a deployment cannot be applied, or None: every check the component
    makes when it applies one (keys, types, ranges, cross-field rules, the model package, the image folder),
    unknown keys refused. Answered to the Java nucleus's validation, so a bad MERGE fails the deployment."""
    from .packages import model_folder

    try:
        config = build_config(cli, raw)
    except ConfigError as exc:
        return str(exc)
    folder: Path | None = model_folder(config.model_path, config.model_variant)
    if config.model_path is None and folder is not None and not folder.exists():
        folder = None  # the model component of the same deployment is not installed yet: checked at load
    return "; ".join(preflight(config, folder)) or None
