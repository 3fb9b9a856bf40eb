from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from agent_client.errors import ConfigError
from component.config import (
    DEFAULT_TOPIC,
    KEYS,
    build_config,
    parse_component_config,
    preflight,
    proposal_problem,
)

from ..helpers import IMAGES_DIR, MODEL_DIR

KEYS_BY_ALIAS = {key.alias: name for name, key in KEYS.items()}


def test_defaults_are_the_samples_contract() -> None:
    config = build_config()
    assert config.topic == DEFAULT_TOPIC == "gg/sageMakerEdgeManager/image-classification"
    assert (config.top_k, config.score_threshold) == (5, 0.3)
    assert config.agent_socket is None and config.model_variant == "fp32"  # resolved where it is deployed


def test_greengrass_strings_override_cli_values_key_by_key() -> None:
    config = build_config(
        {"top_k": 3, "inference_interval": 9.0},
        {
            "TopK": "7",
            "ScoreThreshold": "0.5",
            "InferenceInterval": "",
            "accessControl": access(DEFAULT_TOPIC),
        },
    )
    assert (config.top_k, config.score_threshold, config.inference_interval) == (7, 0.5, 9.0)


def access(*resources: str) -> dict[str, Any]:
    """accessControl as the recipe writes it, allowing PublishToIoTCore on ``resources``."""
    policy = {
        "operations": ["aws.greengrass#PublishToIoTCore"],
        "resources": [*resources, "edgeclassifier/status/+"],
    }
    return {"aws.greengrass.ipc.mqttproxy": {"edgeclassifier.ImageClassification:mqttproxy:1": policy}}


def test_a_topic_outside_the_configurations_own_access_control_is_refused_with_what_to_do() -> None:
    with pytest.raises(
        ConfigError, match=r"PublishResultsOnTopic='gg/new' not allowed by .* accessControl .*merge"
    ):
        parse_component_config(
            {}, {"PublishResultsOnTopic": "gg/new", "accessControl": access(DEFAULT_TOPIC)}
        )
    with pytest.raises(ConfigError, match=r"StatusTopic='ops/health' not allowed"):
        build_config(greengrass={"StatusTopic": "ops/health", "accessControl": access(DEFAULT_TOPIC)})
    with pytest.raises(
        ConfigError, match="not allowed"
    ):  # a policy for another operation allows nothing here
        other = {
            "aws.greengrass.ipc.mqttproxy": {
                "p": {"operations": ["aws.greengrass#SubscribeToIoTCore"], "resources": ["*"]}
            }
        }
        build_config(greengrass={"accessControl": other})


def test_a_topic_the_access_control_allows_exactly_or_by_wildcard_applies() -> None:
    assert build_config(greengrass={"PublishResultsOnTopic": "gg/new", "accessControl": access("gg/new")})
    assert build_config(
        greengrass={"PublishResultsOnTopic": "site/7/results", "accessControl": access("site/+/results")}
    )
    assert build_config(
        greengrass={"PublishResultsOnTopic": "site/7/results", "accessControl": access("site/#")}
    )
    assert build_config(
        greengrass={"PublishResultsOnTopic": "site/7/results", "accessControl": access("site/*")}
    )
    # outside Greengrass (no accessControl in the configuration) there is nothing to check against
    assert build_config(greengrass={"PublishResultsOnTopic": "gg/new"}).topic == "gg/new"


def test_numbers_may_come_as_numbers_or_as_strings_and_a_missing_key_is_its_default() -> None:
    assert build_config(greengrass={"TopK": 3, "ScoreThreshold": 0.5}).top_k == 3
    assert build_config(greengrass={"TopK": "3", "ScoreThreshold": "0.5"}).score_threshold == 0.5
    assert build_config(greengrass={}).top_k == 5


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("TopK", 3.0, 3),  # the Java nucleus may keep a YAML number as a double
        ("TopK", " 4 ", 4),
        ("TopK", "3.0", 3),
        ("TopK", "1e1", 10),
        ("MaxFrames", "-0", 0),
        ("InferenceInterval", "1e1", 10.0),
        ("InferenceInterval", 2, 2.0),
        ("PublishResultsOnTopic", " a/b ", "a/b"),
        ("ImageDirectory", " /tmp/x ", Path("/tmp/x")),
        ("ModelVariant", "INT8", "int8"),
        ("LogLevel", "debug", "DEBUG"),
    ],
)
def test_values_are_typed_and_normalised_as_the_cores_store_them(key: str, value: Any, expected: Any) -> None:
    config = build_config(greengrass={key: value})
    assert config.recipe_values()[key] == (str(expected) if isinstance(expected, Path) else expected)
    assert type(getattr(config, KEYS_BY_ALIAS[key])) is type(expected)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("TopK", True, "must be a whole number"),  # a boolean is no count
        ("TopK", 3.5, "must be a whole number, not 3.5"),
        ("TopK", "0x10", "must be a whole number"),
        ("TopK", [1], "must be a whole number"),
        ("InferenceInterval", "inf", "must be a finite number"),
        ("InferenceInterval", False, "must be a number"),
        ("RpcTimeoutSeconds", "0", "must be more than 0"),
        ("ModelName", 123, "must be a string"),
        ("ImageDirectory", 5, "must be a path"),
        ("TopK", "3.00000000000000001", "must be a whole number, not 3.00000000000000001"),  # not rounded
        ("TopK", "\u0663", "must be a whole number"),  # an Arabic-Indic three: recipes write ASCII
        ("MaxFrames", "1e999999999", "of a sensible size"),
        ("MaxFrames", 1e30, "must be at most"),
        ("InferenceInterval", 10**400, "of a sensible size"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_with_what_is_allowed(
    key: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"{key}=.*{message}"):
        build_config(greengrass={key: value})


def test_every_bad_key_is_named_at_once_and_the_rules_between_keys_wait_for_valid_values() -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(greengrass={"TopK": "0", "BatchSize": "x", "ImageName": "../a"})
    assert "TopK='0': must be at least 1" in str(raised.value)
    assert "BatchSize='x': must be a whole number" in str(raised.value)
    assert "ImageName" not in str(raised.value)
    with pytest.raises(ConfigError, match="not a configuration key"):
        build_config({"top_kk": 3})


def test_the_kept_values_read_back_to_the_same_configuration() -> None:
    config = build_config(greengrass={"TopK": "7", "ImageDirectory": "/imgs", "AgentSocket": "/run/a.sock"})
    changed = config.recipe_values(changed_only=True)
    assert changed == {"TopK": 7, "ImageDirectory": "/imgs", "AgentSocket": "/run/a.sock"}
    assert build_config(greengrass=changed) == config
    assert config.replace(top_k=3).top_k == 3 and config.top_k == 7


def test_unknown_keys_are_rejected_with_the_valid_ones_listed() -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration key\(s\) TopKK; valid keys: .*TopK"):
        build_config(greengrass={"TopKK": "1"})


def test_the_running_component_ignores_an_unknown_key_instead_of_blocking_every_later_update() -> None:
    parsed = parse_component_config({}, {"Topk": "3", "TopK": "2"})
    assert parsed.ignored == ("Topk",) and parsed.config.top_k == 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("TopK", "x", "TopK='x'"),
        ("TopK", "0", "must be at least 1"),
        ("ScoreThreshold", "1.5", "ScoreThreshold='1.5'"),
        ("ScoreThreshold", "nan", "must be a finite number"),
        ("InferenceInterval", "-1", "InferenceInterval"),
        ("PublishResultsOnTopic", "a/+/b", "wildcards"),
        ("PublishResultsOnTopic", "a\x00b", "must not contain NUL"),
        ("PublishResultsOnTopic", "a\x07b", "control character U.0007"),
        ("PublishResultsOnTopic", "t" * 257, "257 bytes; AWS IoT Core takes topics of at most 256"),
        ("PublishResultsOnTopic", "a/b/c/d/e/f/g/h/i", "8 slashes; AWS IoT Core allows at most 7"),
        ("PublishResultsOnTopic", "$aws/things/x", "reserves"),
        ("StatusTopic", "s/#", "wildcards"),
        ("LogLevel", "LOUD", "DEBUG, INFO"),
        ("Publisher", "kafka", "auto, ipc, stdout"),
        ("ImageName", "../etc/passwd", "file name inside ImageDirectory"),
        ("ImageDirectory", "/" + "x" * 300, "longer than 255 bytes"),
        ("ImageDirectory", "/a" * 2100, "at most 4095 are allowed"),
        ("AgentSocket", "/" + "s" * 120, "at most 107 are allowed"),
        ("AgentSocket", "unix:///tmp/agent.sock", "takes a file path, not a gRPC address"),
        ("ModelVariant", "fp16", "fp32, int8, neo"),
        ("ModelName", "bad name", "letters, digits and single inner dashes"),
        ("Source", "rtsp://", "needs a host"),
        ("Source", "rtsp://cam:99999/s", "Port out of range"),
        ("Source", "ftp://cam/x.mp4", "unknown scheme 'ftp'"),
        ("Source", "v4l2://video0", "v4l2:// takes a device path"),
        ("MaxFramePixels", "0", "must be at least 1"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        build_config(greengrass={key: value})
    assert key in str(raised.value)


def test_credentials_in_a_refused_source_never_reach_the_message() -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(greengrass={"Source": "rtsp://admin:s3cret@cam:99999/s"})
    assert "s3cret" not in str(raised.value) and "***@cam" in str(raised.value)


def test_source_path_is_the_folder_or_the_named_image() -> None:
    assert build_config(greengrass={"ImageDirectory": "/imgs"}).source_path == Path("/imgs")
    assert build_config(greengrass={"ImageDirectory": "/imgs", "ImageName": "a.jpg"}).source_path == Path(
        "/imgs/a.jpg"
    )


def test_preflight_finds_a_missing_image_folder_and_a_package_that_fails_its_digests(tmp_path: Path) -> None:
    config = build_config(greengrass={"ImageDirectory": str(tmp_path / "missing")})
    assert preflight(build_config(greengrass={"ImageDirectory": str(IMAGES_DIR)}), MODEL_DIR) == []
    broken = shutil.copytree(MODEL_DIR, tmp_path / "model")
    (broken / "labels.txt").write_text("cat\n" * 1000)
    problems = preflight(config, broken)
    assert any("missing does not exist; set ImageDirectory" in p for p in problems)
    assert any("labels.txt has SHA-256" in p for p in problems)


def test_a_proposal_is_checked_as_strictly_as_at_start(tmp_path: Path) -> None:
    assert proposal_problem({}, {"ModelPath": str(MODEL_DIR), "ImageDirectory": str(IMAGES_DIR)}) is None
    assert "unknown configuration key(s) Topk" in str(proposal_problem({}, {"Topk": "3"}))
    assert "TopK='0'" in str(proposal_problem({}, {"TopK": "0"}))
    assert "manifest.json does not exist" in str(proposal_problem({}, {"ModelPath": str(tmp_path)}))


def test_the_thing_name_variable_in_an_access_control_resource_stands_for_this_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_IOT_THING_NAME", "camera-7")
    allowed = {
        "PublishResultsOnTopic": "site/camera-7/results",
        "accessControl": access("site/{iot:thingName}/results"),
    }
    assert build_config(greengrass=allowed).topic == "site/camera-7/results"
    other = {**allowed, "PublishResultsOnTopic": "site/camera-8/results"}
    with pytest.raises(ConfigError, match="not allowed"):
        build_config(greengrass=other)
