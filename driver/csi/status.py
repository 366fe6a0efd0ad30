"""The one place where engine errors become gRPC status codes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from azcommon.errors import InvalidArgument, KvError
from azcommon.log import log_unexpected

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def grpc_code(error: KvError) -> grpc.StatusCode:
    code: grpc.StatusCode = getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)
    return code


def abort(context: grpc.ServicerContext, error: BaseException, what: str = "CSI call") -> NoReturn:
    """End the call with the error's code. `what` names the call and volume for the log line
    (engine messages never hold secrets, so they are logged as sent)."""
    if isinstance(error, KvError):
        log.warning("%s failed: %s: %s", what, error.code, error)
        context.abort(grpc_code(error), str(error))
    log_unexpected(log, what, error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})")
    raise AssertionError("unreachable")  # context.abort always raises


def require(value: object, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required")
