"""The stored acknowledgement over CoAP: 2.01 once the message's rows have committed.

aiocoap answers a confirmable request with an empty ACK when no response is
ready within its EMPTY_ACK_DELAY; the 2.01 then follows as a separate response,
which is how CoAP intends a slow answer to go.
"""

from __future__ import annotations

import logging

from aiocoap import Code, Message
from aiocoap.optiontypes import BlockOption
from aiocoap.pipe import Pipe

from fleetgate.core.errors import GatewayError
from fleetgate.protocols.coap.errors import refused

log = logging.getLogger(__name__)


class PipeReceipt:
    """A gateway.ingest.Receipt answering one request's pipe; only the first call counts."""

    __slots__ = ("_pipe", "_block1", "_max_payload")

    def __init__(self, pipe: Pipe, block1: BlockOption.BlockwiseTuple | None, max_payload: int) -> None:
        self._pipe: Pipe | None = pipe
        self._block1 = block1
        self._max_payload = max_payload

    def stored(self) -> None:
        self._answer(Message(code=Code.CREATED))

    def failed(self, error: BaseException) -> None:
        if isinstance(error, GatewayError):
            self._answer(refused(error, self._max_payload))
        else:
            log.error("storing a CoAP message failed", exc_info=error)
            self._answer(Message(code=Code.INTERNAL_SERVER_ERROR, payload=b"The message could not be stored"))

    def _answer(self, response: Message) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            if self._block1 is not None:
                response.opt.block1 = self._block1
            pipe.add_response(response, is_last=True)
