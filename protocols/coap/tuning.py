"""How long the gateway holds a confirmable request's ACK while its answer is being prepared.

aiocoap acknowledges a confirmable request with an empty ACK when its answer is not
ready within EMPTY_ACK_DELAY (0.1 s); the answer then goes as a separate confirmable
response, which the device must acknowledge. With stored acknowledgements the answer
waits for a database commit, which under load takes longer than 0.1 s: every request
would then cost three more datagrams (empty ACK, separate response, the device's ACK)
and a retransmission timer. The gateway waits up to ANSWER_WAIT_S (1 s) instead, half
of RFC 7252's shortest ACK_TIMEOUT (2 s), so the device still hears from the gateway
before its first retransmission; only an answer slower than that is separate.

Applied to each request the gateway's message manager receives, by wrapping that
instance's ``_process_request`` (aiocoap reads the request's ``transport_tuning`` there).
"""

from __future__ import annotations

from typing import Any

from aiocoap.numbers.constants import TransportTuning

ANSWER_WAIT_S = 1.0


class GatewayTuning(TransportTuning):
    EMPTY_ACK_DELAY = ANSWER_WAIT_S


def tune_requests(manager: Any, tuning: TransportTuning) -> None:
    """Give every request ``manager`` (aiocoap's message manager) receives ``tuning``."""
    process = getattr(manager, "_process_request", None)
    if not callable(process):
        raise RuntimeError("aiocoap's message manager has no _process_request: unsupported aiocoap version")

    def tuned(request: Any) -> None:
        request.transport_tuning = tuning
        process(request)

    manager._process_request = tuned
