"""Errors as HTTP responses: one handler maps service errors to RFC 9457 problem bodies."""

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service import metrics
from service.errors import ServiceError, StoreUnavailable

AnyRequest = Request[Any, Any, Any]
PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document; `errors` lists what failed validation, where it applies."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    errors: list[dict[str, Any]] | None = None


def problem_body(status: int, title: str, detail: str) -> bytes:
    """The encoded problem document, for answers built outside Litestar's responses."""
    return msgspec.json.encode(Problem(title, status, detail))


def problem(
    status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> Response[Problem]:
    metrics.HTTP_REQUESTS.labels(str(status)).inc()
    return Response(
        Problem(title, status, detail, errors=errors), status_code=status, media_type=PROBLEM_JSON
    )


def service_error_handler(_: AnyRequest, exc: Exception) -> Response[object]:
    if isinstance(exc, StoreUnavailable):
        metrics.STORE_UNAVAILABLE.inc()
        return problem(503, "Service Unavailable", str(exc))  # type: ignore[return-value]
    assert isinstance(exc, ServiceError)
    return problem(500, "Internal Server Error", str(exc))  # type: ignore[return-value]


def http_error_handler(_: AnyRequest, exc: Exception) -> Response[object]:
    assert isinstance(exc, HTTPException)
    errors = exc.extra if isinstance(exc.extra, list) and exc.extra else None
    return problem(exc.status_code, HTTPStatus(exc.status_code).phrase, exc.detail, errors)  # type: ignore[return-value]


EXCEPTION_HANDLERS = {ServiceError: service_error_handler, HTTPException: http_error_handler}
