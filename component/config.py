"""The inference component's configuration: one validated model, parsed once at the edge.

Sources, later ones winning key by key: built-in defaults < command-line flags < the Greengrass component
configuration (GetConfiguration; recipe DefaultConfiguration merged with deployment updates). An empty
string in the Greengrass configuration means "not set". Unknown keys are rejected with the list of valid
ones, so a typo in a deployment never passes silently.
"""

from __future__ import annotations

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

from agent_client.client import DEFAULT_SOCKET
from agent_client.errors import ConfigError

DEFAULT_TOPIC = "gg/sageMakerEdgeManager/image-classification"
BUNDLED_IMAGES = Path(__file__).resolve().parent.parent / "artifacts" / "images"
BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "artifacts" / "models" / "efficientnet-lite0"

# Keys the core keeps in the same configuration object; the component ignores them.
CORE_KEYS = frozenset({"accessControl"})


class ComponentConfig(BaseModel):
    """Every key of the component. Field aliases are the recipe's configuration keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    source: str = Field(
        "",
        alias="Source",
        description="video file, rtsp://... stream or /dev/videoN camera; empty = ImageDirectory/ImageName",
    )
    image_directory: Path = Field(
        BUNDLED_IMAGES,
        alias="ImageDirectory",
        description="folder of images to classify (default: bundled samples)",
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
    model_path: Path = Field(BUNDLED_MODEL, alias="ModelPath", description="model folder with manifest.json")
    model_name: str = Field("", alias="ModelName", description="agent-side model name; empty = manifest name")
    agent_socket: Path = Field(Path(DEFAULT_SOCKET), alias="AgentSocket", description="agent unix socket")
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
        description="report ERRORED to the core after this long without a classified frame; 0 = never",
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

    @field_validator("topic", "status_topic")
    @classmethod
    def _topic_is_publishable(cls, value: str, info: ValidationInfo) -> str:
        """One rule for both topics; only StatusTopic may be empty (it then defaults to the thing's)."""
        optional = info.field_name == "status_topic"
        if (not value and not optional) or "+" in value or "#" in value or len(value.encode()) > 256:
            raise ValueError(
                "must be an MQTT topic without wildcards, at most 256 bytes (or empty)"
                if optional
                else "must be a non-empty MQTT topic without wildcards, at most 256 bytes"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @field_validator("publisher")
    @classmethod
    def _known_publisher(cls, value: str) -> str:
        if value not in ("auto", "ipc", "stdout"):
            raise ValueError("must be auto, ipc or stdout")
        return value

    @model_validator(mode="after")
    def _image_name_is_a_file_name(self) -> ComponentConfig:
        if self.image_name and Path(self.image_name).name != self.image_name:
            raise ValueError("ImageName must be a file name inside ImageDirectory, not a path")
        return self

    @property
    def source_path(self) -> Path:
        """The image or folder frames come from when Source is empty."""
        return self.image_directory / self.image_name if self.image_name else self.image_directory

    @property
    def source_spec(self) -> str | Path:
        """What frames come from: Source when set, else the image or folder."""
        return self.source or self.source_path


def _aliases() -> dict[str, str]:
    return {field.alias or name: name for name, field in ComponentConfig.model_fields.items()}


def build_config(
    cli: dict[str, Any] | None = None, greengrass: dict[str, Any] | None = None
) -> ComponentConfig:
    """Validates defaults < cli (field names) < greengrass (recipe keys); ConfigError names each bad key."""
    aliases = _aliases()
    values: dict[str, Any] = {k: v for k, v in (cli or {}).items() if v is not None}
    unknown = []
    for key, value in (greengrass or {}).items():
        if key in CORE_KEYS:
            continue
        if key not in aliases:
            unknown.append(key)
            continue
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        values[aliases[key]] = value
    if unknown:
        raise ConfigError(
            f"unknown configuration key(s) {', '.join(sorted(unknown))}; "
            f"valid keys: {', '.join(sorted(aliases))}"
        )
    try:
        return ComponentConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, {v: k for k, v in aliases.items()})) from None


def _describe(exc: ValidationError, alias_of: dict[str, str]) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "configuration"
        key = alias_of.get(field, field)
        problems.append(f"{key}={error.get('input')!r}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)
