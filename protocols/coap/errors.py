"""The core's errors as CoAP response codes: the one place this front-end maps them.

Every refusal is counted here too, so no handler can refuse without a metric.
"""

from __future__ import annotations

from aiocoap import Code, Message

from fleetgate.core import errors, metrics

PROTOCOL = "coap"

_CODES: list[tuple[type[errors.GatewayError], Code]] = [
    (errors.PayloadTooLarge, Code.REQUEST_ENTITY_TOO_LARGE),
    (errors.InvalidInput, Code.BAD_REQUEST),
    (errors.Unauthorized, Code.UNAUTHORIZED),
    (errors.Forbidden, Code.FORBIDDEN),
    (errors.NotFound, Code.NOT_FOUND),
    (errors.Conflict, Code.CONFLICT),
    (errors.QuotaExceeded, Code.FORBIDDEN),
    (errors.TooManyRequests, Code.TOO_MANY_REQUESTS),
    (errors.RpcTimeout, Code.GATEWAY_TIMEOUT),
    (errors.Overloaded, Code.SERVICE_UNAVAILABLE),
    (errors.Unavailable, Code.SERVICE_UNAVAILABLE),
]


class IncompleteBlocks(errors.InvalidInput):
    """A Block1 upload's blocks did not arrive in order, or its start was not seen."""


def code_of(exc: errors.GatewayError) -> Code:
    if isinstance(exc, errors.MethodNotAllowed):
        return Code.METHOD_NOT_ALLOWED
    if isinstance(exc, IncompleteBlocks):
        return Code.REQUEST_ENTITY_INCOMPLETE
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return Code.INTERNAL_SERVER_ERROR


def refused(exc: errors.GatewayError, max_payload: int, *, reason: bool = True) -> Message:
    """The answer to a refused request: its code, the reason as text (not with ``reason=False``;
    4.01 never has one, as on ThingsBoard), Size1 on 4.13 and Max-Age on 5.03 (when to
    retry). Counted in the metrics."""
    _count(exc)
    code = code_of(exc)
    payload = exc.message.encode() if reason and code is not Code.UNAUTHORIZED else b""
    response = Message(code=code, payload=payload)
    if payload:
        response.opt.content_format = 0  # text/plain; charset=utf-8
    if code is Code.REQUEST_ENTITY_TOO_LARGE:
        response.opt.size1 = max_payload
    elif isinstance(exc, errors.Overloaded | errors.TooManyRequests):
        response.opt.max_age = max(1, round(exc.retry_after))
    elif isinstance(exc, errors.Unavailable):
        response.opt.max_age = 1
    return response


def _count(exc: errors.GatewayError) -> None:
    if isinstance(exc, errors.TooManyRequests):
        metrics.LIMIT_REFUSALS.labels(PROTOCOL, type(exc).__name__).inc()
    elif isinstance(exc, errors.PayloadTooLarge):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "oversize").inc()
    elif isinstance(exc, errors.UnknownAddress):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "unknown_path").inc()
    elif isinstance(exc, errors.MethodNotAllowed):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "method").inc()
    elif isinstance(exc, IncompleteBlocks):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "blocks").inc()
    elif isinstance(exc, errors.MalformedPayload):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "malformed").inc()
    elif isinstance(exc, errors.InvalidInput):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "invalid").inc()
    elif isinstance(exc, errors.Unauthorized):
        metrics.AUTH_FAILURES.labels(PROTOCOL).inc()
