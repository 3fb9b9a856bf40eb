"""Each core's IPC, as the real awsiotsdk client sees it: nucleus lite's errors without text and its missing
operations, the accessControl refusal, configuration of other components, lite's per-key events and silent
RESET, stale updates."""

from __future__ import annotations

import datetime
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from awsiot.greengrasscoreipc import model

from gglocal.config_deployment import apply_update
from gglocal.deployment import ConfigUpdate
from gglocal.nucleus import CLASSIC, LITE, NucleusProfile
from gglocal.server import IpcServer, short_socket_path

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 10.0
PROFILES = [LITE, CLASSIC]
MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
CONFIG: dict[str, Any] = {
    "Interval": "5",
    "Camera": {"Width": "640"},
    "accessControl": {
        MQTTPROXY: {"pub": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["gg/results/#"]}}
    },
}

ServerFactory = Callable[[NucleusProfile], IpcServer]
ClientFactory = Callable[[IpcServer, str], Any]


@pytest.fixture
def server_for(tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory: a started IpcServer behaving as the given core."""
    servers: list[IpcServer] = []

    def make(nucleus: NucleusProfile) -> IpcServer:
        server = IpcServer(
            short_socket_path(tmp_path, f"{nucleus.name}-{len(servers)}.sock"), nucleus=nucleus
        )
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        if server.socket_path.parent.name.startswith("gg"):
            shutil.rmtree(server.socket_path.parent, ignore_errors=True)


def now() -> datetime.datetime:
    return datetime.datetime.now()


def test_lite_errors_reach_the_sdk_without_text(server_for: ServerFactory, ipc_client: ClientFactory) -> None:
    texts: dict[str, list[Any]] = {}
    for nucleus in PROFILES:
        server = server_for(nucleus)
        client = ipc_client(server, server.register_component("com.example.C", CONFIG))
        with pytest.raises(model.UnauthorizedError) as denied:
            client.publish_to_iot_core_async(topic_name="not/allowed", qos="0", payload=b"x").result(TIMEOUT)
        with pytest.raises(model.ResourceNotFoundError) as missing:
            client.get_configuration_async(key_path=["Missing"]).result(TIMEOUT)
        texts[nucleus.name] = [denied.value.message, str(denied.value), missing.value.message]
    assert texts["lite"] == [None, "", None]
    assert "not authorized" in texts["classic"][0] and texts["classic"][2] == "Key not found"


def test_lite_serves_no_validation_and_no_deferral(
    server_for: ServerFactory, ipc_client: ClientFactory
) -> None:
    lite = server_for(LITE)
    client = ipc_client(lite, lite.register_component("com.example.C", CONFIG))
    report = model.ConfigurationValidityReport(status="ACCEPTED", deployment_id="d")
    calls = [
        lambda: client.subscribe_to_validate_configuration_updates_async(on_stream_event=lambda e: None)[0],
        lambda: client.send_configuration_validity_report_async(configuration_validity_report=report),
        lambda: client.defer_component_update_async(deployment_id="d", recheck_after_ms=1000),
    ]
    for call in calls:
        with pytest.raises(model.ServiceError):
            call().result(TIMEOUT)
    assert client.get_configuration_async(key_path=["Interval"]).result(TIMEOUT).value == {"Interval": "5"}
    classic = server_for(CLASSIC)
    other = ipc_client(classic, classic.register_component("com.example.C", CONFIG))
    future, operation = other.subscribe_to_validate_configuration_updates_async(
        on_stream_event=lambda e: None
    )
    future.result(TIMEOUT)
    assert classic.operations.validation.subscribed("com.example.C")
    operation.close().result(TIMEOUT)


@pytest.mark.parametrize("nucleus", PROFILES, ids=lambda n: n.name)
def test_a_component_cannot_widen_its_own_access_control(
    nucleus: NucleusProfile, server_for: ServerFactory, ipc_client: ClientFactory
) -> None:
    server = server_for(nucleus)
    client = ipc_client(server, server.register_component("com.example.C", CONFIG))
    wider = {MQTTPROXY: {"all": {"operations": ["*"], "resources": ["#"]}}}
    with pytest.raises(model.InvalidArgumentsError) as root_merge:
        client.update_configuration_async(value_to_merge={"accessControl": wider}, timestamp=now()).result(
            TIMEOUT
        )
    with pytest.raises(model.InvalidArgumentsError):
        client.update_configuration_async(
            key_path=["accessControl", MQTTPROXY], value_to_merge=wider[MQTTPROXY], timestamp=now()
        ).result(TIMEOUT)
    expected = (
        "Config update is not allowed for following fields [accessControl]" if nucleus.error_text else None
    )
    assert root_merge.value.message == expected
    with pytest.raises(model.UnauthorizedError):
        client.publish_to_iot_core_async(topic_name="any/topic", qos="0", payload=b"x").result(TIMEOUT)
    client.update_configuration_async(value_to_merge={"Interval": "6"}, timestamp=now()).result(TIMEOUT)
    assert server.config.get("com.example.C", ["Interval"]) == "6"


@pytest.mark.parametrize("nucleus", PROFILES, ids=lambda n: n.name)
def test_another_component_s_configuration_is_readable_without_a_policy(
    nucleus: NucleusProfile, server_for: ServerFactory, ipc_client: ClientFactory
) -> None:
    server = server_for(nucleus)
    server.register_component("com.example.Model", {"Variant": "int8"})
    client = ipc_client(server, server.register_component("com.example.NoPolicy", {}))
    value = client.get_configuration_async(component_name="com.example.Model", key_path=["Variant"])
    assert value.result(TIMEOUT).value == {"Variant": "int8"}
    got = threading.Event()
    client.subscribe_to_configuration_update_async(
        component_name="com.example.Model", on_stream_event=lambda event: got.set()
    )[0].result(TIMEOUT)
    server.config.merge("com.example.Model", {"Variant": "fp32"})
    assert got.wait(TIMEOUT)


def collect_events(client: Any, key_path: list[str] | None = None) -> list[list[str]]:
    events: list[list[str]] = []

    def on_event(event: model.ConfigurationUpdateEvents) -> None:
        events.append(list(event.configuration_update_event.key_path))

    client.subscribe_to_configuration_update_async(key_path=key_path, on_stream_event=on_event)[0].result(
        TIMEOUT
    )
    return events


@pytest.mark.parametrize("nucleus", PROFILES, ids=lambda n: n.name)
def test_a_merge_sends_one_event_per_key_and_lite_s_reset_deletes_without_one(
    nucleus: NucleusProfile, server_for: ServerFactory, ipc_client: ClientFactory
) -> None:
    server = server_for(nucleus)
    name = "com.example.C"
    server.config.register(name, {"Interval": "5", "Camera": {"Width": "640", "Height": "480"}})
    client = ipc_client(server, server.register_component(name))
    events = collect_events(client)
    apply_update(server.config, nucleus, name, ConfigUpdate({"Interval": "1", "Camera": {"Width": "320"}}))
    deadline = time.monotonic() + TIMEOUT
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(events) == [["Camera", "Width"], ["Interval"]]
    events.clear()
    apply_update(server.config, nucleus, name, ConfigUpdate({}, ("/Interval", "/Camera/Width")))
    time.sleep(0.5)
    current = client.get_configuration_async().result(TIMEOUT).value
    if nucleus.reset_deletes:
        assert (current, events) == ({"Camera": {"Height": "480"}}, [])
    else:
        assert current == {"Interval": "5", "Camera": {"Width": "640", "Height": "480"}}
        assert sorted(events) == [["Camera", "Width"], ["Interval"]]


def test_an_update_older_than_the_stored_value(server_for: ServerFactory, ipc_client: ClientFactory) -> None:
    past = datetime.datetime.now() - datetime.timedelta(hours=1)
    for nucleus in PROFILES:
        server = server_for(nucleus)
        client = ipc_client(server, server.register_component("com.example.C", dict(CONFIG)))
        client.update_configuration_async(value_to_merge={"Interval": "7"}, timestamp=now()).result(TIMEOUT)
        stale = client.update_configuration_async(
            value_to_merge={"Interval": "1", "New": "n"}, timestamp=past
        )
        if nucleus.stale_update_fails:
            with pytest.raises(model.FailedUpdateConditionCheckError):
                stale.result(TIMEOUT)
            assert "New" not in server.config.get("com.example.C")
        else:
            stale.result(TIMEOUT)
            assert server.config.get("com.example.C", ["New"]) == "n"
        assert server.config.get("com.example.C", ["Interval"]) == "7"
