"""Long-running operations, as ARM runs a VM or scale-set update.

A PATCH is accepted at once (200 with the resource, `provisioningState: Updating`, and an
`Azure-AsyncOperation` URL); the change takes effect when the operation's time is up. The
official SDKs poll that URL (`InProgress` -> `Succeeded`) and then GET the resource.

Operations on one resource run one after the other, as Azure serialises updates of a VM or a
scale set: a PATCH accepted while another is running ends `duration` after that one ends. There
are no timers: an operation is finished lazily, by whoever looks at it or its resource after
its end time (`OperationLog.settle`)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEEP_FINISHED = 10_000  # finished operations kept for late pollers, oldest dropped first


@dataclass
class Operation:
    """One accepted update: when it ends, `apply` makes its change effective."""

    id: str
    resource_key: tuple[str, str, str, str]
    subscription: str
    started: float  # wall clock, for startTime/endTime
    ends_at: float  # monotonic
    apply: Callable[[], None]
    status: str = "InProgress"
    ended: float | None = None

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "startTime": _iso(self.started),
            "status": self.status,
            "name": self.id,
        }
        if self.ended is not None:
            body["endTime"] = _iso(self.ended)
        return body

    def remaining(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat().replace("+00:00", "Z")


class OperationLog:
    """Every operation by id; the caller holds the compute lock around every call."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}
        self._running: list[Operation] = []  # in end-time order per resource

    def start(
        self,
        resource_key: tuple[str, str, str, str],
        subscription: str,
        not_before: float,
        duration: float,
        apply: Callable[[], None],
    ) -> Operation:
        """Queue an operation after `not_before` (the resource's last queued end)."""
        self.settle()
        now = time.monotonic()
        operation = Operation(
            id=str(uuid.uuid4()),
            resource_key=resource_key,
            subscription=subscription,
            started=time.time(),
            ends_at=max(now, not_before) + max(0.0, duration),
            apply=apply,
        )
        self._ops[operation.id] = operation
        self._running.append(operation)
        self.settle()
        return operation

    def settle(self) -> None:
        """Finish, in order, every operation whose time is up."""
        if not self._running:
            return
        now = time.monotonic()
        still: list[Operation] = []
        for operation in sorted(self._running, key=lambda o: o.ends_at):
            if operation.ends_at <= now:
                operation.apply()
                operation.status = "Succeeded"
                operation.ended = time.time()
            else:
                still.append(operation)
        self._running = still
        if len(self._ops) > KEEP_FINISHED:
            for op_id in [i for i, o in self._ops.items() if o.ended is not None][:1000]:
                del self._ops[op_id]

    def get(self, op_id: str) -> Operation | None:
        self.settle()
        return self._ops.get(op_id.lower())

    def busy(self, resource_key: tuple[str, str, str, str]) -> bool:
        self.settle()
        return any(o.resource_key == resource_key for o in self._running)
