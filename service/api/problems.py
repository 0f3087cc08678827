"""Errors as HTTP responses: one handler maps service errors to RFC 9457 problem bodies."""

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service import metrics
from service.errors import ServiceError, StoreUnavailable

AnyRequest = Request[Any, Any, Any]
PROBLEM_JSON = "application/problem+json"


def _document(status: int, title: str, detail: str) -> dict[str, object]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


def problem_body(status: int, title: str, detail: str) -> bytes:
    """The encoded problem document, for answers built outside Litestar's responses."""
    return msgspec.json.encode(_document(status, title, detail))


def problem(status: int, title: str, detail: str) -> Response[dict[str, object]]:
    metrics.HTTP_REQUESTS.labels(str(status)).inc()
    return Response(_document(status, title, detail), status_code=status, media_type=PROBLEM_JSON)


def service_error_handler(_: AnyRequest, exc: Exception) -> Response[object]:
    if isinstance(exc, StoreUnavailable):
        return problem(503, "Service Unavailable", str(exc))  # type: ignore[return-value]
    assert isinstance(exc, ServiceError)
    return problem(500, "Internal Server Error", str(exc))  # type: ignore[return-value]


def http_error_handler(_: AnyRequest, exc: Exception) -> Response[object]:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, type(exc).__name__, exc.detail)  # type: ignore[return-value]


EXCEPTION_HANDLERS = {ServiceError: service_error_handler, HTTPException: http_error_handler}
