"""The inference component's configuration: one validated model, parsed once at the edge.

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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

# Keys the core keeps in the same configuration object; the component leaves them alone.
CORE_KEYS = frozenset({"accessControl"})


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


class ComponentConfig(BaseModel):
    """Every key of the component. Field aliases are the recipe's configuration keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    source: str = Field(
        "",
        alias="Source",
        description="video file, rtsp://... stream or /dev/videoN camera; empty = ImageDirectory/ImageName",
    )
    image_directory: Path | None = Field(
        None,
        alias="ImageDirectory",
        description="folder of images to classify (default: the bundled samples)",
    )
    image_name: str = Field(
        "", alias="ImageName", description="one file inside ImageDirectory; empty = every image in the folder"
    )
    inference_interval: float = Field(
        5.0,
        alias="InferenceInterval",
        ge=0,
        le=86400,
        description="seconds between frames (between batches when BatchSize > 1); 0 = as fast as possible",
    )
    batch_size: int = Field(
        1,
        alias="BatchSize",
        ge=1,
        le=64,
        description="frames per Predict call when the model takes a batch (dynamic first dimension)",
    )
    topic: str = Field(DEFAULT_TOPIC, alias="PublishResultsOnTopic", description="MQTT topic for results")
    model_variant: str = Field(
        "fp32",
        alias="ModelVariant",
        description="package of the model component to run: fp32, int8 or neo (the platform's Neo build)",
    )
    model_path: Path | None = Field(
        None,
        alias="ModelPath",
        description="a model folder with manifest.json; empty = ModelVariant of the model component",
    )
    model_name: str = Field("", alias="ModelName", description="agent-side model name; empty = manifest name")
    agent_socket: Path | None = Field(
        None,
        alias="AgentSocket",
        description="the agent's unix socket; empty = the deployed agent's (or the Edge Manager default)",
    )
    top_k: int = Field(5, alias="TopK", ge=1, le=100, description="how many classes to report at most")
    score_threshold: float = Field(
        0.3, alias="ScoreThreshold", ge=0, le=1, description="report classes scoring at least this"
    )
    rpc_timeout: float = Field(
        5.0, alias="RpcTimeoutSeconds", gt=0, le=300, description="deadline of each agent call"
    )
    max_frames: int = Field(
        0, alias="MaxFrames", ge=0, description="stop after this many frames; 0 = run forever"
    )
    max_frame_pixels: int = Field(
        40_000_000,
        alias="MaxFramePixels",
        ge=1,
        le=1_000_000_000,
        description="skip frames with more pixels than this (bounds the work one frame may cost)",
    )
    log_level: str = Field("INFO", alias="LogLevel", description="DEBUG, INFO, WARNING or ERROR")
    publisher: str = Field(
        "auto", alias="Publisher", description="ipc, stdout, or auto (ipc under Greengrass)"
    )
    status_topic: str = Field(
        "", alias="StatusTopic", description="health and metrics topic; empty = edgeclassifier/status/<thing>"
    )
    status_interval: float = Field(
        30.0, alias="StatusInterval", ge=0, le=86400, description="seconds between status messages; 0 = none"
    )
    errored_after: float = Field(
        120.0,
        alias="ErroredAfterSeconds",
        ge=0,
        le=86400,
        description="report ERRORED (the core restarts the component) when the run loop has made no "
        "progress at all for this long; outages never do; 0 = never",
    )
    capture_sample_rate: float = Field(
        0.0,
        alias="CaptureSampleRate",
        ge=0,
        le=1,
        description="share of inferences sent to CaptureData; 0 = none",
    )
    capture_budget_per_hour: int = Field(
        60, alias="CaptureBudgetPerHour", ge=0, description="at most this many captures per rolling hour"
    )

    @field_validator("inference_interval", "score_threshold", "rpc_timeout", "status_interval")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("topic", "status_topic")
    @classmethod
    def _topic_is_publishable(cls, value: str, info: ValidationInfo) -> str:
        """MQTT's and AWS IoT Core's rules for a topic to publish to; only StatusTopic may be empty."""
        if not value and info.field_name == "status_topic":
            return value
        problem = iot_topic_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("source")
    @classmethod
    def _source_parses(cls, value: str) -> str:
        if value:
            from .sources import source_problem

            problem = source_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("image_directory", "model_path")
    @classmethod
    def _path_fits(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _check_path(value, "the path")

    @field_validator("agent_socket", mode="before")
    @classmethod
    def _socket_is_a_path(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("unix:"):
            raise ValueError(
                f"takes a file path, not a gRPC address: use {value.split(':', 1)[1].lstrip('/')!r} "
                f"with a leading / instead of {value!r}"
            )
        return value

    @field_validator("agent_socket")
    @classmethod
    def _socket_fits(cls, value: Path | None) -> Path | None:
        return _check_path(value, "a unix socket path", MAX_SOCKET_BYTES)

    @field_validator("model_variant")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        value = value.lower()
        if value not in VARIANTS:
            raise ValueError(f"must be one of {', '.join(VARIANTS)}")
        return value

    @field_validator("model_name")
    @classmethod
    def _agent_name(cls, value: str) -> str:
        if value and (not MODEL_NAME.fullmatch(value) or len(value) > 100):
            raise ValueError("must be letters, digits and single inner dashes, at most 100 characters")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"must be {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("publisher")
    @classmethod
    def _known_publisher(cls, value: str) -> str:
        value = value.lower()
        if value not in ("auto", "ipc", "stdout"):
            raise ValueError("must be auto, ipc or stdout")
        return value

    @model_validator(mode="after")
    def _image_name_is_a_file_name(self) -> ComponentConfig:
        if self.image_name and (Path(self.image_name).name != self.image_name or "\x00" in self.image_name):
            raise ValueError("ImageName must be a file name inside ImageDirectory, not a path")
        if len(os.fsencode(self.image_name)) > MAX_NAME_BYTES:
            raise ValueError(f"ImageName is longer than {MAX_NAME_BYTES} bytes")
        return self

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


# Settings that need a new process: the IPC publisher and the agent connection are made once.
RESTART_KEYS = ("agent_socket", "publisher", "rpc_timeout")


def _aliases() -> dict[str, str]:
    return {field.alias or name: name for name, field in ComponentConfig.model_fields.items()}


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
    try:
        return ComponentConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, {v: k for k, v in _aliases().items()})) from None


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


def _describe(exc: ValidationError, alias_of: dict[str, str]) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "configuration"
        key = alias_of.get(field, field)
        value = redact(repr(error.get("input")))
        if len(value) > 80:
            value = value[:77] + "..."
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{key}={value}: {message}" if error["loc"] else message)
    return "invalid configuration: " + "; ".join(problems)


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
