"""The component's state as the Greengrass core sees it (IPC UpdateState), following what the run loop sees.

The nucleus marks the component RUNNING when its Run script starts. From then on:

- ERRORED, once, when the component has been unable to classify for `ErroredAfterSeconds` in a row: the
  trouble clock starts at the first failure (agent unreachable, no frame from the source, a frame the agent
  could not classify) and stops at the next classified frame. The nucleus answers ERRORED by restarting the
  component (and marks it BROKEN after repeated errors), so short outages, which the run loop rides out on
  its own, are never reported. 0 turns ERRORED reports off.
- RUNNING, once, when a frame is classified again after an ERRORED report.

A failed UpdateState is logged and tried again at the next change of state; it never stops classification.
Outside Greengrass there is no core to tell: the run loop gets no reporter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

RUNNING = "RUNNING"
ERRORED = "ERRORED"

# Sends one state to the core; raises on failure.
StateSender = Callable[[str], None]


class IpcStateSender:
    """UpdateState over Greengrass IPC with awsiotsdk's client, connected on first use."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._client: Any = None

    def __call__(self, state: str) -> None:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
        from awsiot.greengrasscoreipc.model import ReportedLifecycleState

        if self._client is None:
            self._client = GreengrassCoreIPCClientV2()
        try:
            self._client.update_state_async(state=getattr(ReportedLifecycleState, state)).result(
                self._timeout
            )
        except Exception:
            self.close()  # a broken connection is made again next time
            raise

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                client.close()
            except Exception as exc:  # closing a dead connection may fail in awscrt's own ways
                logger.debug("closing the IPC client: %s", exc)


class LifecycleReporter:
    def __init__(
        self, send: StateSender, errored_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._send = send
        self.errored_after = errored_after
        self._clock = clock
        self._trouble_since: float | None = None
        self.reported = RUNNING  # what the core believes; the nucleus set RUNNING when Run started
        self.reports = 0

    def classified(self) -> None:
        """A frame was classified: the trouble is over."""
        self._trouble_since = None
        if self.reported != RUNNING:
            self._report(RUNNING, "classifying again")

    def trouble(self, reason: str) -> None:
        """Something kept a frame from being classified; call again while it lasts."""
        now = self._clock()
        if self._trouble_since is None:
            self._trouble_since = now
        lasted = now - self._trouble_since
        if self.errored_after > 0 and self.reported != ERRORED and lasted >= self.errored_after:
            self._report(ERRORED, f"nothing classified for {lasted:.0f} s: {reason}")

    def _report(self, state: str, why: str) -> None:
        try:
            self._send(state)
        except Exception as exc:  # modeled IPC errors, timeouts and connection failures alike
            logger.warning(
                "could not report %s to the Greengrass core (%s); will try again: %s", state, why, exc
            )
            return
        self.reported = state
        self.reports += 1
        log = logger.error if state == ERRORED else logger.info
        log("reported %s to the Greengrass core: %s", state, why)
