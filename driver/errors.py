"""The one exception tree of the driver.

Every failure the engine can report is a `KvError`. Each class carries the gRPC status code name
it maps to (the CSI edge turns the name into `grpc.StatusCode` in one place, `driver/csi/status.py`)
and the FlexVolume edge reports `str(error)` as the failure message. Messages name the offending
key, object or endpoint and never contain secret values or tokens.
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


def flex_failure(error: BaseException) -> dict[str, str]:
    """The FlexVolume failure object for an error (the shim prints exactly this)."""
    if isinstance(error, KvError):
        return {"status": "Failure", "message": f"{error.code}: {error}"}
    return {"status": "Failure", "message": f"INTERNAL: unexpected {type(error).__name__}"}
