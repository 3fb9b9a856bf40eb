"""agent_client.rpc without sockets: which way a call goes, and what it costs to decide (issue 12)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

from agent_client.rpc import CallPolicy, SentCall, call

POLICY = CallPolicy(
    timeout=1.0,
    retries=0,
    backoff=0.01,
    blocking_max_bytes=64 * 1024,
    socket_path=Path("/run/test/agent.sock"),
    before_attempt=lambda: None,
)


class Request:
    """Counts `ByteSize()`, which serialises a real protobuf request (0.26 ms for a 150 kB Predict)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sized = 0

    def ByteSize(self) -> int:
        self.sized += 1
        return self.size


class Method:
    """A unary-unary method: the blocking call or `.future()`, each recorded; both answer at once."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, request: Any, timeout: float) -> str:
        self.calls.append("blocking")
        return "answer"

    def future(self, request: Any, timeout: float) -> Future[str]:
        self.calls.append("future")
        answered: Future[str] = Future()
        answered.set_result("answer")
        return answered


def test_a_small_request_goes_blocking_a_large_one_through_future() -> None:
    small, large, method = Request(100), Request(150_000), Method()
    assert call(method, small, "small", POLICY) == "answer"
    assert call(method, large, "large", POLICY) == "answer"
    assert method.calls == ["blocking", "future"] and small.sized == large.sized == 1


def test_a_size_given_by_the_caller_spares_serialising_the_request() -> None:
    request, method = Request(100), Method()
    assert call(method, request, "Predict m", POLICY, size=150_000) == "answer"
    assert method.calls == ["future"] and request.sized == 0


def test_the_answer_of_a_call_sent_ahead_is_taken_without_serialising_the_request_again() -> None:
    request, method = Request(150_000), Method()
    sent = SentCall(method, request, "Predict m", POLICY)
    assert sent.result() == "answer" and sent.answered_at is not None
    assert method.calls == ["future"] and request.sized == 0
