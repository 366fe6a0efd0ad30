"""The one place where engine errors become gRPC status codes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from driver.errors import InvalidArgument, KvError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def grpc_code(error: KvError) -> grpc.StatusCode:
    code: grpc.StatusCode = getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)
    return code


def abort(context: grpc.ServicerContext, error: BaseException) -> NoReturn:
    if isinstance(error, KvError):
        context.abort(grpc_code(error), str(error))
    log.exception("unexpected error serving a CSI call")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})")
    raise AssertionError("unreachable")  # context.abort always raises


def require(value: object, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required")
