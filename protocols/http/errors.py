"""The core's errors as HTTP statuses: the one place this front-end maps them.

Every refusal of the device API is counted here too (``refused``), so no handler
can refuse without a metric.
"""

from __future__ import annotations

import math

from fleetgate.core import errors, metrics
from fleetgate.protocols.http.wire import Reply

PROTOCOL = "http"

_STATUS: list[tuple[type[errors.GatewayError], int]] = [
    (errors.PayloadTooLarge, 413),
    (errors.TemplateQuotaExceeded, 400),
    (errors.CaQuotaExceeded, 400),
    (errors.TemplateInUse, 400),
    (errors.InvalidInput, 400),
    (errors.CertificateRefused, 403),  # ThingsBoard: a certificate that names no device is forbidden
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.MethodNotAllowed, 405),
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
    """Retry-After for what may succeed later, Allow for a method the resource does not take."""
    if isinstance(exc, errors.Overloaded | errors.TooManyRequests):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, errors.Unavailable):
        return {"Retry-After": "1"}
    if isinstance(exc, errors.MethodNotAllowed):
        return {"Allow": ", ".join(exc.allowed)}
    return {}


def refused(exc: errors.GatewayError) -> Reply:
    """A core error as the device API answers it: a status and a plain-text reason; 401 has no body."""
    if isinstance(exc, errors.PayloadTooLarge):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "oversize").inc()
    elif isinstance(exc, errors.InvalidInput):
        kind = "malformed" if isinstance(exc, errors.MalformedPayload) else "invalid"
        metrics.BAD_REQUESTS.labels(PROTOCOL, kind).inc()
    elif isinstance(exc, errors.Unauthorized):
        metrics.AUTH_FAILURES.labels(PROTOCOL).inc()
    elif isinstance(exc, errors.TooManyRequests):
        metrics.LIMIT_REFUSALS.labels(PROTOCOL, type(exc).__name__).inc()
    status = status_of(exc)
    headers = tuple(retry_headers(exc).items())
    return Reply(status, headers=headers) if status == 401 else Reply.text(status, exc.message, headers)
