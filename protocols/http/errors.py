"""The core's errors as HTTP statuses: the one place this front-end maps them."""

from __future__ import annotations

import math

from fleetgate.core import errors

_STATUS: list[tuple[type[errors.GatewayError], int]] = [
    (errors.PayloadTooLarge, 413),
    (errors.TemplateQuotaExceeded, 400),
    (errors.CaQuotaExceeded, 400),
    (errors.TemplateInUse, 400),
    (errors.InvalidInput, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.QuotaExceeded, 403),
    (errors.TooManyRequests, 429),
    (errors.RpcTimeout, 504),
    (errors.Overloaded, 503),
    (errors.Unavailable, 503),
]


def status_of(exc: errors.GatewayError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def retry_headers(exc: errors.GatewayError) -> dict[str, str]:
    if isinstance(exc, errors.Overloaded | errors.TooManyRequests):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, errors.Unavailable):
        return {"Retry-After": "1"}
    return {}
