"""Block1 reassembly's limits, on aiocoap messages: the paths the end-to-end tests cannot reach
cheaply (the budget of partial bodies, idle expiry, blocks out of order, a bad block size)."""

from __future__ import annotations

import types

import pytest
from aiocoap import POST, Message
from aiocoap.optiontypes import BlockOption

from fleetgate.core.errors import InvalidInput, Overloaded, PayloadTooLarge
from fleetgate.protocols.coap import blockwise
from fleetgate.protocols.coap.blockwise import Block1Uploads, Body, Continue
from fleetgate.protocols.coap.errors import IncompleteBlocks

Block = BlockOption.BlockwiseTuple
SZX_16 = 0  # 16-byte blocks


def block(number: int, more: bool, payload: bytes, remote: str = "device-a", size1: int | None = None) -> Message:
    message = Message(code=POST, uri_path=("api", "v1", "token", "telemetry"), payload=payload)
    message.opt.block1 = Block(number, more, SZX_16)
    if size1 is not None:
        message.opt.size1 = size1
    message.remote = remote  # only hashed, as the key of the upload
    return message


@pytest.fixture
def clock(monkeypatch):
    now = types.SimpleNamespace(value=1000.0)
    monkeypatch.setattr(blockwise, "time", types.SimpleNamespace(monotonic=lambda: now.value))
    return now


def test_blocks_in_order_make_the_body(clock) -> None:
    uploads = Block1Uploads(max_payload=64)
    assert uploads.feed(block(0, True, b"a" * 16)) == Continue(Block(0, True, SZX_16))
    assert uploads.feed(block(1, True, b"b" * 16)) == Continue(Block(1, True, SZX_16))
    assert uploads.feed(block(2, False, b"c" * 5)) == Body(b"a" * 16 + b"b" * 16 + b"c" * 5, Block(2, False, SZX_16))
    assert uploads.in_progress == 0


def test_a_body_without_block1_over_the_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        Block1Uploads(max_payload=10).feed(Message(code=POST, payload=b"x" * 11))


def test_an_announced_size1_over_the_limit_is_refused_at_the_first_block(clock) -> None:
    with pytest.raises(PayloadTooLarge):
        Block1Uploads(max_payload=64).feed(block(0, True, b"a" * 16, size1=65))


def test_blocks_adding_up_past_the_limit_are_refused_and_forgotten(clock) -> None:
    uploads = Block1Uploads(max_payload=40)
    uploads.feed(block(0, True, b"a" * 16))
    uploads.feed(block(1, True, b"a" * 16))
    with pytest.raises(PayloadTooLarge):
        uploads.feed(block(2, True, b"a" * 16))
    assert uploads.in_progress == 0


def test_a_missing_block_is_4_08(clock) -> None:
    uploads = Block1Uploads(max_payload=64)
    uploads.feed(block(0, True, b"a" * 16))
    with pytest.raises(IncompleteBlocks):
        uploads.feed(block(2, True, b"a" * 16))
    with pytest.raises(IncompleteBlocks):  # the upload was dropped with the error
        uploads.feed(block(1, True, b"a" * 16))


def test_a_block_shorter_than_its_size_is_invalid(clock) -> None:
    with pytest.raises(InvalidInput):
        Block1Uploads(max_payload=64).feed(block(0, True, b"a" * 15))


def test_partial_bodies_are_bounded_in_total(clock) -> None:
    uploads = Block1Uploads(max_payload=64, budget_bytes=32)
    uploads.feed(block(0, True, b"a" * 16, remote="one"))
    uploads.feed(block(0, True, b"a" * 16, remote="two"))
    with pytest.raises(Overloaded):
        uploads.feed(block(0, True, b"a" * 16, remote="three"))
    # A device finishing its upload frees its share; the last block itself is never buffered.
    assert isinstance(uploads.feed(block(1, False, b"end", remote="one")), Body)
    assert isinstance(uploads.feed(block(0, True, b"a" * 16, remote="three")), Continue)


def test_an_idle_upload_is_forgotten(clock) -> None:
    uploads = Block1Uploads(max_payload=64, idle_seconds=30)
    uploads.feed(block(0, True, b"a" * 16, remote="slow"))
    clock.value += 29
    uploads.feed(block(0, True, b"a" * 16, remote="other"))
    assert uploads.in_progress == 2
    clock.value += 2
    uploads.feed(block(1, True, b"a" * 16, remote="other"))
    assert uploads.in_progress == 1
    with pytest.raises(IncompleteBlocks):
        uploads.feed(block(1, True, b"a" * 16, remote="slow"))
