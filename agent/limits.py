"""Admission control: the agent takes a bounded amount of work at once and refuses the rest, never dies of it.

Each bound answers RESOURCE_EXHAUSTED (the client raises AgentBusyError, a timeout-like "retry later"):
- concurrent calls (`--max-concurrent-rpcs`): grpc.server(maximum_concurrent_rpcs=...) refuses calls beyond
  it as they arrive, before their request is read, with gRPC's own "Concurrent RPC limit exceeded!";
- bytes in flight (`--max-inflight-mb`): a request's serialized size counts from the moment gRPC hands its
  bytes to the deserializer, before they are parsed, until its handler returns; a request that would take
  the total past the limit is refused unparsed, with a message naming the numbers. The Predict handler adds
  the bytes of shared memory tensors (which arrive as a small message) in the same budget.
- one message (`--max-message-mb`): grpc.max_receive_message_length.
Memory: gRPC reads a queued call's message only when a worker thread takes the call, so raw request bytes are
bounded by `workers` x the largest message, and parsed requests and the runs they feed by the byte budget.
What gRPC buffers of a call accepted but still queued is up to its stream window
(agent.server.STREAM_WINDOW_BYTES, 256 KiB), outside the budget: about (max concurrent RPCs - workers) x 256
KiB, 15 MiB with the defaults (measured, 63 queued 602 kB calls: +17 MiB, against +5 with gRPC's 64 KiB);
a larger --max-concurrent-rpcs raises it in proportion.
A malformed message is answered INVALID_ARGUMENT (gRPC's own deserializer failure would be INTERNAL).
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from agent_client import agent_pb2 as pb

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


class AgentStats:
    """Counters of what the agent refused or abandoned, by name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]


class Ticket:
    """Bytes held in a ByteBudget until release() (also released if the ticket is garbage-collected)."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self.size = size
        self._release = weakref.finalize(self, budget.give_back, size)

    def release(self) -> None:
        self._release()


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    def try_take(self, size: int) -> Ticket | None:
        with self._lock:
            if self._used + size > self.limit:
                return None
            self._used += size
        return Ticket(self, size)

    def give_back(self, size: int) -> None:
        with self._lock:
            self._used -= size

    def refusal(self, size: int) -> str:
        return (
            f"agent busy: {self.used / MIB:.1f} MiB of requests are in flight and this one adds "
            f"{size / MIB:.1f} MiB, past its limit of {self.limit / MIB:.0f} MiB (--max-inflight-mb); retry "
            f"later, send smaller batches, or fewer requests at once"
        )


@dataclass(frozen=True)
class _Admitted:
    message: Any
    ticket: Ticket


@dataclass(frozen=True)
class _Refused:
    code: grpc.StatusCode
    details: str


def _deserializer(message_class: Any, budget: ByteBudget, stats: AgentStats) -> Callable[[bytes], object]:
    def deserialize(raw: bytes) -> _Admitted | _Refused:
        ticket = budget.try_take(len(raw))
        if ticket is None:
            stats.add("refused_busy")
            return _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, budget.refusal(len(raw)))
        try:
            return _Admitted(message_class.FromString(raw), ticket)
        except DecodeError:
            ticket.release()
            return _Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {message_class.DESCRIPTOR.full_name} message",
            )

    return deserialize


def _behavior(
    method: Callable[[Any, grpc.ServicerContext], Any],
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def behavior(request: _Admitted | _Refused, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Refused):
            logger.info("%s refused: %s", method.__name__, request.details)
            context.abort(request.code, request.details)
            raise AssertionError("context.abort() returned")
        try:
            return method(request.message, context)
        finally:
            request.ticket.release()

    return behavior


def add_agent_service(server: grpc.Server, servicer: Any, budget: ByteBudget, stats: AgentStats) -> None:
    """Registers servicer's methods for the `AWS.SageMaker.Edge.Agent` service (as the generated
    add_AgentServicer_to_server does) with every request admitted through budget."""
    service = pb.DESCRIPTOR.services_by_name["Agent"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            _behavior(getattr(servicer, method.name)),
            request_deserializer=_deserializer(getattr(pb, method.input_type.name), budget, stats),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
