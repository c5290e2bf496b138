"""Block-wise uploads (Block1, RFC 7959 section 2.5), reassembled only up to the payload limit.

aiocoap's own Block1 reassembly keeps whatever a client sends; here a body is
refused with 4.13 (and Size1, the limit) as soon as its announced size (Size1)
or what has arrived is over ``max_payload``. Partial bodies are bounded in total
bytes and forgotten after a pause, so clients cannot hold the gateway's memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from aiocoap import Message
from aiocoap.optiontypes import BlockOption

from fleetgate.core.errors import InvalidInput, Overloaded, PayloadTooLarge
from fleetgate.protocols.coap.errors import IncompleteBlocks

Block = BlockOption.BlockwiseTuple
_BERT = 7


@dataclass(frozen=True, slots=True)
class Body:
    """A request's whole payload, and the Block1 option its final answer must carry (if any)."""

    payload: bytes
    block1: Block | None = None


@dataclass(frozen=True, slots=True)
class Continue:
    """A block was taken; the answer is 2.31 Continue with this Block1 option."""

    block1: Block


@dataclass(slots=True)
class _Upload:
    body: bytearray
    expires: float


class Block1Uploads:
    def __init__(self, max_payload: int, budget_bytes: int = 32 * 1024 * 1024, idle_seconds: float = 30.0) -> None:
        self._max_payload = max_payload
        self._budget = budget_bytes
        self._idle = idle_seconds
        self._uploads: OrderedDict[Hashable, _Upload] = OrderedDict()
        self._buffered = 0

    @property
    def in_progress(self) -> int:
        return len(self._uploads)

    def feed(self, request: Message) -> Body | Continue:
        """The complete body, or Continue; raises PayloadTooLarge (4.13), IncompleteBlocks (4.08),
        InvalidInput (4.00) or Overloaded (5.03, too many partial bodies held)."""
        block = request.opt.block1
        payload = request.payload
        if block is None:
            if len(payload) > self._max_payload:
                raise PayloadTooLarge(f"The payload is larger than {self._max_payload} bytes")
            return Body(payload)
        key = (request.remote, request.opt.uri_path, request.opt.uri_query)
        now = time.monotonic()
        self._expire(now)
        size1 = request.opt.size1
        if size1 is not None and size1 > self._max_payload:
            self._drop(key)
            raise PayloadTooLarge(f"The payload is larger than {self._max_payload} bytes")
        if block.size_exponent == _BERT or (block.more and len(payload) != block.size):
            self._drop(key)
            raise InvalidInput("A Block1 block's size does not match its option")
        if block.block_number == 0:
            self._drop(key)
            upload = _Upload(bytearray(), now + self._idle)
        else:
            found = self._uploads.get(key)
            if found is None or len(found.body) != block.block_number * block.size:
                self._drop(key)
                raise IncompleteBlocks("Block1 blocks are missing or out of order")
            upload = found
        if len(upload.body) + len(payload) > self._max_payload:
            self._drop(key)
            raise PayloadTooLarge(f"The payload is larger than {self._max_payload} bytes")
        if not block.more:
            body = bytes(upload.body) + payload if upload.body else payload
            self._drop(key)
            return Body(body, Block(block.block_number, False, block.size_exponent))
        if self._buffered + len(payload) > self._budget:
            self._drop(key)
            raise Overloaded("Too many block-wise uploads in progress")
        upload.body += payload
        upload.expires = now + self._idle
        self._buffered += len(payload)
        self._uploads[key] = upload
        self._uploads.move_to_end(key)
        return Continue(Block(block.block_number, True, block.size_exponent))

    def _drop(self, key: Hashable) -> None:
        upload = self._uploads.pop(key, None)
        if upload is not None:
            self._buffered -= len(upload.body)

    def _expire(self, now: float) -> None:
        """Forget uploads idle for too long; the dict is in order of last activity."""
        while self._uploads:
            key, upload = next(iter(self._uploads.items()))
            if upload.expires > now:
                break
            self._drop(key)
