from __future__ import annotations

from pathlib import Path

import pytest

from agent_client.errors import ConfigError
from component.config import DEFAULT_TOPIC, build_config


def test_defaults_are_the_samples_contract() -> None:
    config = build_config()
    assert config.topic == DEFAULT_TOPIC == "gg/sageMakerEdgeManager/image-classification"
    assert (config.top_k, config.score_threshold) == (5, 0.3)
    assert str(config.agent_socket) == "/tmp/aws.greengrass.SageMakerEdgeManager.sock"


def test_greengrass_strings_override_cli_values_key_by_key() -> None:
    config = build_config(
        {"top_k": 3, "inference_interval": 9.0},
        {"TopK": "7", "ScoreThreshold": "0.5", "InferenceInterval": "", "accessControl": {"x": {}}},
    )
    assert (config.top_k, config.score_threshold, config.inference_interval) == (7, 0.5, 9.0)


def test_unknown_keys_are_rejected_with_the_valid_ones_listed() -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration key\(s\) TopKK; valid keys: .*TopK"):
        build_config(greengrass={"TopKK": "1"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("TopK", "x", "TopK='x'"),
        ("TopK", "0", "greater than or equal to 1"),
        ("ScoreThreshold", "1.5", "ScoreThreshold='1.5'"),
        ("InferenceInterval", "-1", "InferenceInterval"),
        ("PublishResultsOnTopic", "a/+/b", "without wildcards"),
        ("LogLevel", "LOUD", "DEBUG, INFO"),
        ("Publisher", "kafka", "auto, ipc or stdout"),
        ("ImageName", "../etc/passwd", "file name inside ImageDirectory"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(greengrass={key: value})


def test_source_path_is_the_folder_or_the_named_image() -> None:
    assert build_config(greengrass={"ImageDirectory": "/imgs"}).source_path == Path("/imgs")
    assert build_config(greengrass={"ImageDirectory": "/imgs", "ImageName": "a.jpg"}).source_path == Path(
        "/imgs/a.jpg"
    )
