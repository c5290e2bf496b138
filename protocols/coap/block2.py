"""Block2 (RFC 7959) for answers larger than one CoAP message: OTA package chunks.

The client names the block it wants (number and size); without a Block2 option an answer
that fits in one block goes whole, and a larger one goes as block 0 of 1024 bytes, telling
the client there is more (a server may start a blockwise transfer on its own, RFC 7959 2.4).
Each block is cut from the chunk the device asked for, which the core reads from its cache.
"""

from __future__ import annotations

from aiocoap import Code, Message
from aiocoap.optiontypes import BlockOption

from fleetgate.core.errors import InvalidInput

OCTET_STREAM = 42  # CoAP Content-Format application/octet-stream
_LARGEST = 6  # size exponent of 1024-byte blocks (7 is BERT, for CoAP over TCP only)


class BlockOutOfRange(InvalidInput):
    """The Block2 number asked for is past the end of the answer."""


def continuation(request: Message) -> bool:
    """Whether the request asks for a block after the first: the rest of an answer already counted."""
    wanted = request.opt.block2
    return wanted is not None and wanted.block_number > 0


def block2_answer(request: Message, payload: bytes) -> Message:
    wanted = request.opt.block2
    exponent = min(wanted.size_exponent, _LARGEST) if wanted is not None else _LARGEST
    size = 2 ** (exponent + 4)
    if wanted is None and len(payload) <= size:
        return _content(payload)
    number = wanted.block_number if wanted is not None else 0
    start = number * size
    if start >= len(payload) and number > 0:
        raise BlockOutOfRange(f"Block {number} of {size} bytes is past the end of the {len(payload)}-byte answer")
    response = _content(payload[start:start + size])
    response.opt.block2 = BlockOption.BlockwiseTuple(number, start + size < len(payload), exponent)
    return response


def _content(payload: bytes) -> Message:
    response = Message(code=Code.CONTENT, payload=payload)
    response.opt.content_format = OCTET_STREAM
    return response
