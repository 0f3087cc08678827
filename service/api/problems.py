"""Errors as HTTP responses: one handler maps service errors to RFC 9457 problem bodies."""

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service.errors import STORE_CANNOT_ANSWER, ServiceError
from service.observability import metrics

AnyRequest = Request[Any, Any, Any]
PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document; `errors` lists what failed validation, where it applies.
    `type` is always written: it has no default, so `omit_defaults` keeps it."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


# RFC 9457 §4.2.1: the problem is what the status code says, with no further semantics.
ABOUT_BLANK = "about:blank"


def problem_body(status: int, title: str, detail: str) -> bytes:
    """The encoded problem document, for answers built outside Litestar's responses."""
    return msgspec.json.encode(Problem(ABOUT_BLANK, title, status, detail))


def problem(
    status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> Response[Problem]:
    return Response(
        Problem(ABOUT_BLANK, title, status, detail, errors=errors),
        status_code=status,
        media_type=PROBLEM_JSON,
    )


def service_error_handler(_: AnyRequest, exc: Exception) -> Response[object]:
    if isinstance(exc, STORE_CANNOT_ANSWER):
        metrics.STORE_UNAVAILABLE.inc()
        return problem(503, "Service Unavailable", str(exc))  # type: ignore[return-value]
    assert isinstance(exc, ServiceError)
    return problem(500, "Internal Server Error", str(exc))  # type: ignore[return-value]


def http_error_handler(_: AnyRequest, exc: Exception) -> Response[object]:
    assert isinstance(exc, HTTPException)
    errors = exc.extra if isinstance(exc.extra, list) and exc.extra else None
    return problem(exc.status_code, HTTPStatus(exc.status_code).phrase, exc.detail, errors)  # type: ignore[return-value]


EXCEPTION_HANDLERS = {ServiceError: service_error_handler, HTTPException: http_error_handler}
