"""PublishToIoTCore under each profile against a real mosquitto that goes away or stops answering: nucleus
lite's iotcored keeps nothing offline (ServiceError) and at most 10 QoS 1 publishes in flight; the Java
nucleus spools."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from awsiot.greengrasscoreipc import model

from gglocal import Core
from gglocal.iotcore import status_lines
from tests.gglocal_builds import publish_access
from tests.gglocal_helpers import wait_until

if TYPE_CHECKING:
    from tests.mqtt_broker import Mosquitto, MqttSubscriber

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 10.0
ACCESS = publish_access("iotcored/#")
CoreFor = Callable[..., Core]


@pytest.fixture
def core_on_broker(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[CoreFor]:
    """Factory: a started Core of the given profile bridged to the test broker, connected."""
    cores: list[Core] = []

    def make(nucleus: str, **options: Any) -> Core:
        core = Core(tmp_path / f"gg-{nucleus}", nucleus=nucleus, mqtt=mosquitto.address, **options)
        core.start()
        cores.append(core)
        assert wait_until(lambda: core.iot_status()["connected"], TIMEOUT)
        return core

    yield make
    for core in cores:
        core.stop()


def publisher(core: Core, ipc_client: Callable[[Any, str], Any]) -> Callable[[bytes, str], None]:
    assert core.ipc is not None
    client = ipc_client(core.ipc, core.ipc.register_component("com.example.Pub", ACCESS))

    def publish(payload: bytes, qos: str = "1") -> None:
        client.publish_to_iot_core_async(topic_name="iotcored/x", qos=qos, payload=payload).result(TIMEOUT)

    return publish


class Rig(NamedTuple):
    """A started core on the test broker, a component publishing through it, a subscriber on the broker."""

    core: Core
    publish: Callable[..., None]
    subscriber: MqttSubscriber


RigFor = Callable[..., Rig]


@pytest.fixture
def rig_for(
    core_on_broker: CoreFor,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
    ipc_client: Callable[[Any, str], Any],
) -> RigFor:
    """Factory: a Rig for the given profile (and Core options)."""

    def make(nucleus: str, **options: Any) -> Rig:
        subscriber = mqtt_subscriber(["iotcored/#"])
        core = core_on_broker(nucleus, **options)
        return Rig(core, publisher(core, ipc_client), subscriber)

    return make


def payloads(subscriber: MqttSubscriber) -> list[bytes]:
    return [m.payload for m in subscriber.messages]


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_a_publish_while_the_broker_is_down_is_refused_on_lite_and_spooled_on_classic(
    nucleus: str, rig_for: RigFor, mosquitto: Mosquitto
) -> None:
    core, publish, subscriber = rig_for(nucleus)
    publish(b"before")
    assert subscriber.wait_until(lambda got: b"before" in [m.payload for m in got], TIMEOUT)

    mosquitto.stop()
    assert wait_until(lambda: not core.iot_status()["connected"], TIMEOUT)
    if nucleus == "lite":
        for qos in ("1", "0"):
            with pytest.raises(model.ServiceError) as refused:
                publish(b"offline-" + qos.encode(), qos)
            assert str(refused.value) == ""  # lite's errors carry no message
    else:
        publish(b"offline-1")  # accepted into the spooler
        with pytest.raises(model.ServiceError) as refused:  # keepQos0WhenOffline is false by default
            publish(b"offline-0", "0")
        assert "not kept while offline" in (refused.value.message or "")
    mosquitto.start()
    assert wait_until(lambda: core.iot_status()["connected"], 30.0)
    publish(b"after")

    got = subscriber.wait_until(lambda got: b"after" in [m.payload for m in got], 30.0)
    seen = list(dict.fromkeys(m.payload for m in got))  # QoS 1 is at least once
    status = core.iot_status()
    if nucleus == "lite":
        assert seen == [b"before", b"after"]  # the refused ones are never sent later
        assert (status["spooling"], status["outbox"], status["refused_not_connected"]) == (False, 0, 2)
        assert "2 while not connected" in status_lines(status)[0]
    else:
        assert seen == [b"before", b"offline-1", b"after"]
        assert status["spooling"] is True and status["queue"]["refused"] == 0
        assert status["refused_qos0_offline"] == 1


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_lite_refuses_the_11th_unacknowledged_qos1_publish_at_once_and_classic_queues_it(
    nucleus: str, rig_for: RigFor, mosquitto: Mosquitto
) -> None:
    core, publish, subscriber = rig_for(nucleus)
    mosquitto.pause()  # a real fault: the connection stays up, nothing is acknowledged
    try:
        for index in range(10):
            publish(f"held-{index}".encode())
        if nucleus == "lite":
            assert core.iot_status()["in_flight"] == 10
            with pytest.raises(model.ServiceError):
                publish(b"eleventh")
            publish(b"qos0", "0")  # QoS 0 waits for no acknowledgement: it takes no record
        else:
            publish(b"eleventh")
    finally:
        mosquitto.resume()
    expected = [f"held-{index}".encode() for index in range(10)]
    expected += [b"qos0"] if nucleus == "lite" else [b"eleventh"]
    assert wait_until(lambda: set(expected) <= set(payloads(subscriber)), 30.0), payloads(subscriber)
    if nucleus == "lite":
        assert wait_until(lambda: core.iot_status()["in_flight"] == 0, TIMEOUT)
        publish(b"room-again")  # the acknowledgements freed the records
        assert wait_until(lambda: b"room-again" in payloads(subscriber), TIMEOUT)
        assert b"eleventh" not in payloads(subscriber)
        # "delivered" counts a QoS 1 publish once its PUBACK is back, which may follow the subscriber's copy
        assert wait_until(lambda: core.iot_status()["delivered"] == 12, TIMEOUT), core.iot_status()
        status = core.iot_status()
        assert (status["refused_in_flight"], status["refused_not_connected"]) == (1, 0)
        assert status["lost_in_flight"] == 0


def test_a_full_spool_on_classic_refuses_a_qos1_publish_and_keeps_every_one_it_accepted(
    rig_for: RigFor, mosquitto: Mosquitto
) -> None:
    """The Java nucleus's spooler holds so many payload bytes; a QoS 1 message that does not fit is answered
    ServiceError (the publisher must keep it), and nothing it accepted before is dropped for it."""
    core, publish, subscriber = rig_for("classic", spool_bytes=100)
    mosquitto.stop()
    assert wait_until(lambda: not core.iot_status()["connected"], TIMEOUT)
    publish(b"a" * 40)
    publish(b"b" * 40)
    with pytest.raises(model.ServiceError) as full:
        publish(b"c" * 40)
    assert "spool is full" in (full.value.message or "")
    mosquitto.start()
    assert wait_until(lambda: core.iot_status()["outbox"] == 0, 30.0)
    publish(b"c" * 40)  # the publisher's retry, once there is room
    got = subscriber.wait_until(lambda got: b"c" * 40 in [m.payload for m in got], 30.0)
    assert list(dict.fromkeys(m.payload for m in got)) == [b"a" * 40, b"b" * 40, b"c" * 40]
    assert core.iot_status()["queue"]["refused"] == 1
