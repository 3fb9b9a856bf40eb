"""Nucleus lite's iotcored stand-in without a broker: the packet size it counts, the profile fields that
choose it, and what ``gglocal status`` prints for it."""

from __future__ import annotations

from gglocal.iotcore import IotMessage, status_lines
from gglocal.iotcored import packet_bytes
from gglocal.nucleus import CLASSIC, LITE


def test_packet_bytes_is_the_size_of_the_mqtt_publish_packet() -> None:
    # fixed header 1 + remaining length 1 (< 128) or 2 bytes + topic length 2 + topic + packet id 2 + payload
    assert packet_bytes(IotMessage("a/b", b"x" * 100, 1)) == 1 + 1 + 2 + 3 + 2 + 100
    assert packet_bytes(IotMessage("a/b", b"x" * 200, 1)) == 1 + 2 + 2 + 3 + 2 + 200
    assert packet_bytes(IotMessage("a/b", b"", 0)) == 1 + 1 + 2 + 3


def test_only_lite_refuses_offline_and_bounds_what_is_in_flight() -> None:
    assert (LITE.spools_offline, LITE.max_qos1_in_flight, LITE.qos1_in_flight_bytes) == (False, 10, 15000)
    assert (CLASSIC.spools_offline, CLASSIC.max_qos1_in_flight, CLASSIC.qos1_in_flight_bytes) == (
        True,
        None,
        None,
    )


def test_status_of_the_lite_bridge_counts_what_it_refused() -> None:
    status = {
        "broker": "127.0.0.1:1883",
        "connected": False,
        "spooling": False,
        "delivered": 7,
        "in_flight": 0,
        "max_in_flight": 10,
        "refused_not_connected": 3,
        "refused_in_flight": 1,
        "lost_in_flight": 0,
        "outbox": 0,
    }
    [line] = status_lines(status)
    assert "NOT connected, no spooler, 7 delivered" in line
    assert "refused: 3 while not connected, 1 with no room in flight" in line
