"""One call to the agent: its deadline, the frozen-agent guard, bounded retries, status codes -> exceptions.

Unreachable and slow are different failures with different exceptions:
- AgentUnavailableError: nothing accepts the connection (no socket, connection refused, agent restarting):
  gRPC UNAVAILABLE, retried `retries` times with exponential backoff inside the deadline, then raised;
- AgentTimeoutError: the agent is there but the deadline passed (DEADLINE_EXCEEDED), or the request could
  not even be sent within it (below); never retried here, since the agent may still be working on it. Its
  subclasses AgentBusyError (RESOURCE_EXHAUSTED: refused for now) and ModelLoadingError (ABORTED: the model
  is still loading) share that policy: retry later.

The frozen-agent guard: gRPC's own deadline does not fire while a request sits in a full unix socket buffer
(an agent that is stopped or swapping never reads it: measured, blocked for good). A request larger than
`blocking_max_bytes` therefore goes through `.future()`, whose wait is bounded by the deadline plus
DEADLINE_GRACE_S and then cancelled. A smaller request (the default bound, 64 KiB, fits the socket buffer
many times; shared memory tensors make a Predict that small) cannot get stuck that way and uses the plain
blocking call with the same deadline, which saves the channel thread `.future()` starts (about 0.2 ms).

Sending ahead (`SentCall`): a call sent through `.future()` and answered later (SentCall.result), so that a
caller can have a second request on the agent while it waits for the first; the answer is waited for and
translated exactly as `call` does, the deadline counted from the send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import grpc

from .errors import (
    AgentBusyError,
    AgentError,
    AgentTimeoutError,
    AgentUnavailableError,
    InvalidRequestError,
    ModelAlreadyLoadedError,
    ModelLoadingError,
    ModelNotFoundError,
)

logger = logging.getLogger(__name__)

DEADLINE_GRACE_S = 0.25  # how long past the gRPC deadline the client waits before giving up by itself

Response = TypeVar("Response")


@dataclass(frozen=True)
class CallPolicy:
    """timeout: the call's deadline in seconds; retries/backoff: on UNAVAILABLE only; blocking_max_bytes:
    requests up to this size use the plain blocking call (see the module docstring)."""

    timeout: float
    retries: int
    backoff: float
    blocking_max_bytes: int
    socket_path: Path  # named in the errors
    before_attempt: Callable[[], None]  # runs before each attempt: the client's trust check, which may raise


def call(
    method: Callable[..., Response],
    request: Any,
    what: str,
    policy: CallPolicy,
    sent: SentCall[Response] | None = None,
    size: int | None = None,
) -> Response:
    """Sends request through method within policy.timeout. With `sent` (the same call already sent, a
    SentCall), its answer is the first attempt's, waited for within its own deadline; the rest is the
    same. `size`: the request's size in bytes when the caller knows it without serialising it (a Predict:
    its tensors' bytes), which picks blocking call or `.future()`; otherwise `request.ByteSize()` is asked,
    only when a call is to be made, since it serialises the whole request (0.26 ms for a 150 kB Predict)."""
    deadline = sent.deadline if sent is not None else time.monotonic() + policy.timeout
    first_sent = sent
    blocking: bool | None = None
    attempt = 0
    while True:
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            if sent is not None:
                future, sent = sent.future, None
            else:
                policy.before_attempt()
                if blocking is None:
                    blocking = (request.ByteSize() if size is None else size) <= policy.blocking_max_bytes
                if blocking:
                    return method(request, timeout=remaining)
                future = cast(Any, method).future(request, timeout=remaining)
            return _answer(future, remaining, what, policy)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            pause = policy.backoff * 2**attempt
            if code is grpc.StatusCode.UNAVAILABLE and attempt < policy.retries and remaining > pause:
                logger.debug("%s: agent unavailable, retry %d in %.2f s", what, attempt + 1, pause)
                if first_sent is not None:
                    first_sent.retried = True  # the answer will be a later attempt's
                time.sleep(pause)
                attempt += 1
                continue
            raise translate(exc, code, what, policy.timeout, policy.socket_path) from exc


def _answer(future: Any, remaining: float, what: str, policy: CallPolicy) -> Any:
    """A `.future()` call's answer, waited for at most DEADLINE_GRACE_S past its deadline (the frozen-agent
    guard); its gRPC error raised as such."""
    try:
        return future.result(timeout=remaining + DEADLINE_GRACE_S)
    except grpc.FutureCancelledError:
        raise AgentTimeoutError(f"{what}: the call was cancelled before the agent answered") from None
    except grpc.FutureTimeoutError:
        future.cancel()
        raise AgentTimeoutError(
            f"{what}: the agent did not answer within {policy.timeout:g} s (the request could not "
            f"even be sent: is the agent process stopped or starved?)"
        ) from None


class SentCall(Generic[Response]):
    """A call sent at once without waiting for its answer: `result()` waits for it under `call`'s rules
    (the frozen-agent guard, retries on UNAVAILABLE, status codes -> exceptions), its deadline counted from
    when it was sent, so time spent queued on the agent behind other calls counts too; `cancel()` gives it
    up (the agent skips it, or stops its run). Whatever sending raised (the trust check) is raised by
    `result()`; `answered_at` is when the first attempt was answered."""

    def __init__(self, method: Callable[..., Response], request: Any, what: str, policy: CallPolicy) -> None:
        self._args = (method, request, what, policy)
        self.deadline = time.monotonic() + policy.timeout
        self.future: Any = None
        self.retried = False  # call() made further attempts: the answer is not the first one's
        self._answered_at: float | None = None
        self._error: Exception | None = None
        try:
            policy.before_attempt()
            self.future = cast(Any, method).future(request, timeout=policy.timeout)
            self.future.add_done_callback(self._done)
        except Exception as exc:  # raised by result(), where a blocking call would have raised it
            self._error = exc

    def _done(self, future: Any) -> None:
        self._answered_at = time.perf_counter()

    @property
    def answered_at(self) -> float | None:
        """time.perf_counter() when the first attempt was answered; None before, or after a retry."""
        return None if self.retried else self._answered_at

    def result(self) -> Response:
        if self._error is not None:
            raise self._error
        return call(*self._args, sent=self)

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()


def translate(
    exc: grpc.RpcError, code: grpc.StatusCode, what: str, timeout: float, socket_path: Path
) -> AgentError:
    """The project's exception for a gRPC error, its message saying what to do."""
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    if code is grpc.StatusCode.UNAVAILABLE:
        return AgentUnavailableError(
            f"{what}: no agent reachable on {socket_path} ({details}); is the agent running? "
            f"The client retries; check UnixSocketName/AgentSocket if this persists"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return AgentTimeoutError(
            f"{what}: the agent did not answer within {timeout:g} s; it is reachable but slow or "
            f"overloaded: raise RpcTimeoutSeconds (or ClientOptions.load_timeout for LoadModel) or lower the "
            f"frame rate"
        )
    if code is grpc.StatusCode.NOT_FOUND:
        return ModelNotFoundError(f"{what}: {details}")
    if code is grpc.StatusCode.ALREADY_EXISTS:
        return ModelAlreadyLoadedError(f"{what}: {details}")
    if code is grpc.StatusCode.ABORTED:
        return ModelLoadingError(f"{what}: {details}")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        if "larger than max" in details:  # gRPC's own message-size check, on either side
            return InvalidRequestError(
                f"{what}: message too large for the agent or the client ({details}); "
                f"send smaller tensors or raise the agent's --max-message-mb"
            )
        return AgentBusyError(
            f"{what}: the agent refused the call for now ({details}); it has too many calls or bytes in "
            f"flight (its --max-concurrent-rpcs, --max-inflight-mb): retry later, or send fewer or smaller "
            f"requests at once"
        )
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
    ):
        return InvalidRequestError(f"{what}: {details}")
    return AgentError(f"{what}: agent error {code.name}: {details}")
