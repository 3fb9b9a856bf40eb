"""The Java nucleus's IoT Core side on a real MQTT broker: a spooler (the on-disk outbox) and its sender.

Used by profiles that spool offline (``NucleusProfile.spools_offline``); nucleus lite's iotcored, which
does not, is :mod:`gglocal.iotcored`. Both share the connection (:mod:`gglocal.mqtt_link`) and the limits
of what IoT Core accepts (:class:`MqttLimits`).

A sender thread publishes the oldest message not yet sent, waits for the broker's acknowledgement (QoS 1)
or the write (QoS 0), then removes it: one message in flight keeps the order across broker restarts. QoS 1
messages interrupted by a disconnect are re-sent by paho after reconnecting, so delivery is at least once.

Nothing can block the outbox head for good:

- a message IoT Core would refuse (MQTT's rules for topics, AWS IoT Core's topic and payload quotas:
  :class:`MqttLimits`) is refused at ``publish`` (InvalidArgumentsError to the IPC caller), and dropped and
  counted should one be in the outbox already (written by an older stand-in);
- a message whose sending ends the broker connection ``REFUSED_AFTER_SESSIONS`` times in a row without an
  acknowledgement is taken as refused by the broker for good: dropped, counted, logged, and the paho client
  is replaced (paho would re-send it after every reconnect);
- when the disk is full, removing delivered messages fails: they are remembered (not sent again) and
  removed once the database can be written again; the sender never stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from gglocal.errors import IpcOperationError
from gglocal.iotcore import IotMessage
from gglocal.mqtt_link import MqttLink, OnLink
from gglocal.outbox import Outbox, OutboxEntry
from gglocal.throttle import LogThrottle
from ggrules.topics import validate_topic

logger = logging.getLogger(__name__)

POLL_S = 0.25
JOIN_TIMEOUT_S = 5.0
FAULT_PAUSE_S = 1.0
REFUSED_AFTER_SESSIONS = 3


@dataclass(frozen=True)
class MqttLimits:
    """What the cloud accepts in one message; the defaults are AWS IoT Core's quotas."""

    max_topic_bytes: int = 256
    max_topic_slashes: int = 7
    max_payload_bytes: int = 128 * 1024

    def refusal(self, message: IotMessage) -> str | None:
        """Why IoT Core would refuse ``message`` for good, or None."""
        if problem := validate_topic(message.topic):
            return problem
        size = len(message.topic.encode("utf-8"))
        if size > self.max_topic_bytes:
            return f"the topic is {size} bytes; AWS IoT Core takes at most {self.max_topic_bytes}"
        if message.topic.count("/") > self.max_topic_slashes:
            return f"the topic has more than {self.max_topic_slashes} slashes, the most AWS IoT Core takes"
        if len(message.payload) > self.max_payload_bytes:
            return (
                f"the payload is {len(message.payload)} bytes; AWS IoT Core takes at most "
                f"{self.max_payload_bytes}"
            )
        if message.qos not in (0, 1):
            return f"QoS {message.qos} is not supported by AWS IoT Core (0 or 1)"
        return None


def parse_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) to a tuple; the port defaults to 1883."""
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:
        return address.strip("[]"), 1883
    if not port.isdigit():
        raise ValueError(f"invalid MQTT address {address!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class MqttBridge(OnLink):
    """The Java nucleus's IoT Core side on a broker at ``host:port``: every message accepted into the outbox
    (the spooler) and delivered from it in order; reconnects on its own (:class:`MqttLink`)."""

    def __init__(
        self,
        host: str,
        port: int,
        outbox: Outbox,
        *,
        client_id: str | None = None,
        limits: MqttLimits | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.outbox = outbox
        self.limits = limits or MqttLimits()
        self.delivered = 0
        self.refused_by_broker = 0
        self.refused_qos0_offline = 0
        self._link = MqttLink(
            host,
            port,
            client_id=client_id or f"gglocal-{os.getpid()}",
            on_session=self._new_session,
            on_published=self._acknowledged,
            on_lost=self._connection_lost,
        )
        self._sessions = 0  # successful connections so far
        self._cursor = 0  # the last sequence number sent
        self._unremoved: list[int] = []  # sent (or dropped) but not yet removed from the outbox
        self._retry_removal_at = 0.0
        self._fault_log = LogThrottle()
        self._stop = threading.Event()
        self._acked: set[int] = set()
        self._acked_cond = threading.Condition()
        self._sender = threading.Thread(target=self._send_loop, name="gglocal-mqtt-sender", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._link.start()
        self._sender.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sender.is_alive():
            self._sender.join(JOIN_TIMEOUT_S)
        self._link.stop()
        if self._unremoved and self.outbox.ack(self._unremoved):
            self._unremoved.clear()
        logger.info("MQTT bridge stopped (%d delivered, %d left in outbox)", self.delivered, len(self.outbox))

    def status(self) -> dict[str, Any]:
        """Broker connection, delivery counters and the outbox's state (with any disk fault)."""
        return {
            "broker": f"{self.host}:{self.port}",
            "connected": self.connected,
            "spooling": True,
            "delivered": self.delivered,
            "refused_by_broker": self.refused_by_broker,
            "refused_qos0_offline": self.refused_qos0_offline,
            "sent_not_yet_removed": len(self._unremoved),
            "outbox": self.outbox.status(),
        }

    # -- IotCore ---------------------------------------------------------------------------------
    def publish(self, message: IotMessage) -> None:
        """Accept a message into the outbox: InvalidArgumentsError for what IoT Core would refuse,
        OutboxError (ServiceError) when the outbox cannot store it, and ServiceError for QoS 0 while
        the broker is not connected (the Java nucleus keeps no QoS 0 message offline: its spooler's
        ``keepQos0WhenOffline`` is false by default)."""
        if problem := self.limits.refusal(message):
            raise IpcOperationError("InvalidArgumentsError", f"IoT Core would refuse this message: {problem}")
        if message.qos == 0 and not self.connected:
            with self._acked_cond:
                self.refused_qos0_offline += 1
            raise IpcOperationError(
                "ServiceError", "IoT Core is not connected and QoS 0 messages are not kept while offline"
            )
        self.outbox.put(message)

    # -- link events (paho's thread) -------------------------------------------------------------
    def _new_session(self) -> None:
        with self._acked_cond:
            self._sessions += 1
            self._acked_cond.notify_all()

    def _connection_lost(self) -> None:
        """The Java nucleus drops queued QoS 0 messages when its connection is interrupted."""
        if gone := self.outbox.drop_qos0():
            logger.info("connection lost: dropped %d queued QoS 0 message(s), as the nucleus does", gone)

    def _acknowledged(self, mid: int) -> None:
        with self._acked_cond:
            self._acked.add(mid)
            self._acked_cond.notify_all()

    # -- sender ----------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._send_next()
            except Exception:  # the sender must outlive any one message or fault: log, pause, go on
                if (held := self._fault_log.ready()) is not None:
                    logger.exception("MQTT sender failed (%d more not logged); retrying", held)
                self._stop.wait(FAULT_PAUSE_S)

    def _send_next(self) -> None:
        self._remove_sent()
        entry = self.outbox.head(after=self._cursor)
        if entry is None:
            self.outbox.wait_for_message(POLL_S, after=self._cursor)
            return
        if problem := self.limits.refusal(entry.message):
            self._done(entry, dropped=f"IoT Core would refuse it: {problem}")
            return
        if not self._link.wait_connected(POLL_S):
            return
        message = entry.message
        with self._acked_cond:
            sessions = self._sessions
        try:
            info, _ = self._link.publish(message)
        except ValueError as exc:  # paho refuses it (invalid topic, payload too large)
            self._done(entry, dropped=f"paho refused it: {exc}")
            return
        if message.qos == 0 and info.rc != self._link.success:
            return  # not written: paho keeps no QoS 0 copy, so try again once reconnected
        outcome = self._wait_acked(info.mid, sessions)
        if outcome == "acked":
            self.delivered += 1
            self._done(entry)
        elif outcome == "refused":
            self.refused_by_broker += 1
            self._done(
                entry,
                dropped=f"the broker closed the connection each of the {REFUSED_AFTER_SESSIONS}"
                " times it was sent",
            )
            self._link.replace_client()  # the old one would re-send the refused message after every reconnect
            with self._acked_cond:  # the old client's acknowledgements are ignored from now on
                self._acked.clear()

    def _remove_sent(self) -> None:
        """Retry removing what was sent while the outbox could not be written (at most once a second)."""
        if not self._unremoved or time.monotonic() < self._retry_removal_at:
            return
        if self.outbox.ack(self._unremoved):
            self._unremoved.clear()
        else:
            self._retry_removal_at = time.monotonic() + FAULT_PAUSE_S

    def _done(self, entry: OutboxEntry, *, dropped: str | None = None) -> None:
        """Move past a message; remove it now, or later when the outbox cannot be written now."""
        self._cursor = entry.seq
        if dropped is not None:
            removed = self.outbox.drop(entry.seq, f"topic {entry.message.topic!r}: {dropped}")
        else:
            removed = self.outbox.ack(entry.seq)
        if not removed:
            self._unremoved.append(entry.seq)

    def _wait_acked(self, mid: int, sessions: int) -> str:
        """ "acked" once paho reports ``mid`` sent/acked (it re-sends QoS 1 after reconnects); "refused" when
        the broker dropped the connection that many times meanwhile; "stopped"."""
        with self._acked_cond:
            while mid not in self._acked:
                if self._stop.is_set():
                    return "stopped"
                if self._sessions - sessions >= REFUSED_AFTER_SESSIONS:
                    return "refused"
                self._acked_cond.wait(POLL_S)
            self._acked.discard(mid)
        return "acked"
