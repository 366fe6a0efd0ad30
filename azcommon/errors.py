"""The one exception tree, shared by the node plugin and pod identity.

Every failure a component reports is a `KvError`. Each class carries the gRPC status code name it
maps to; each edge maps the tree in one place: gRPC codes in `driver/csi/status.py`, FlexVolume
failures in `driver/flexbridge.py`, and HTTP answers in each HTTP front door of its own. Messages
name the offending key, object or endpoint and never contain secret values or tokens.
"""

from __future__ import annotations

from typing import ClassVar


class KvError(Exception):
    """Base of every error the driver reports to a caller."""

    code: ClassVar[str] = "INTERNAL"
    # Non-final errors make kubelet keep the target directory and retry (CSI spec, kubelet's
    # notion of an "uncertain" mount).
    final: ClassVar[bool] = True


class InvalidArgument(KvError):
    code = "INVALID_ARGUMENT"


class Unauthenticated(KvError):
    code = "UNAUTHENTICATED"


class PermissionDenied(KvError):
    code = "PERMISSION_DENIED"


class NotFound(KvError):
    code = "NOT_FOUND"


class FailedPrecondition(KvError):
    code = "FAILED_PRECONDITION"


class Unavailable(KvError):
    code = "UNAVAILABLE"
    final = False


class ResourceExhausted(KvError):
    code = "RESOURCE_EXHAUSTED"
    final = False


class Aborted(KvError):
    code = "ABORTED"
    final = False


class DeadlineExceeded(KvError):
    code = "DEADLINE_EXCEEDED"
    final = False


class Internal(KvError):
    code = "INTERNAL"
