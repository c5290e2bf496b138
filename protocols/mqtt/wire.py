"""MQTT's wire format in tables: the bits and bytes :mod:`decode` reads and :mod:`encode` writes.

The fixed header's type and flags, the Connect Flags and Subscription Options
as masks and shifts, the reason codes each packet may carry, and 3.1.1's
CONNACK return codes mapped to and from MQTT 5's reasons. Spec references are
to MQTT 5 (OASIS, 2019) unless they say 3.1.1.
"""

from __future__ import annotations

from fleetgate.protocols.mqtt.datatypes import MAX_VARINT
from fleetgate.protocols.mqtt.packets import PacketType, Reason

MAX_PACKET_SIZE = 1 + 4 + MAX_VARINT
"""The largest packet MQTT can frame: a fixed header byte, a four-byte Remaining Length and its value."""

# Fixed header (2.1): the packet type in the high nibble, flags in the low one.
TYPE_SHIFT = 4
FLAGS = 0x0F
PUBLISH = int(PacketType.PUBLISH)
DUP = 0x08
QOS = 0x06
QOS_SHIFT = 1
RETAIN = 0x01
INVALID_QOS = 3
# MQTT-2.1.3-1: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, every other type but PUBLISH 0.
_REQUIRED_FLAGS = {PacketType.PUBREL: 0b0010, PacketType.SUBSCRIBE: 0b0010, PacketType.UNSUBSCRIBE: 0b0010}
FIXED_FLAGS = tuple(_REQUIRED_FLAGS.get(PacketType(t), 0) if t else 0 for t in range(16))

# Connect Flags (3.1.2.3).
USERNAME = 0x80
PASSWORD = 0x40
WILL_RETAIN = 0x20
WILL_QOS = 0x18
WILL_QOS_SHIFT = 3
WILL_FLAG = 0x04
CLEAN_START = 0x02
CONNECT_RESERVED = 0x01

SESSION_PRESENT = 0x01  # Connect Acknowledge Flags (3.2.2.1); bits 7-1 are reserved

# Subscription Options (3.8.3.1).
MAX_QOS = 0x03
NO_LOCAL = 0x04
RETAIN_AS_PUBLISHED = 0x08
RETAIN_HANDLING = 0x30
RETAIN_HANDLING_SHIFT = 4
OPTIONS_RESERVED_5 = 0xC0
OPTIONS_RESERVED_311 = 0xFC  # 3.1.1 3.8.3.1: only the requested QoS
SHARED_PREFIX = "$share/"

SUBACK_FAILURE_311 = 0x80


def _reasons(*codes: int) -> dict[int, Reason]:
    return {code: Reason(code) for code in codes}


# The reason codes each packet may carry (2.4, Table 2-6), keyed by code for a validating lookup.
CONNACK_REASONS = _reasons(
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
)
PUBACK_REASONS = _reasons(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)  # also PUBREC
PUBREL_REASONS = _reasons(0x00, 0x92)  # also PUBCOMP
SUBACK_REASONS = _reasons(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
SUBACK_REASONS_311 = _reasons(0x00, 0x01, 0x02, SUBACK_FAILURE_311)
UNSUBACK_REASONS = _reasons(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
DISCONNECT_REASONS = _reasons(
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
)
AUTH_REASONS = _reasons(0x00, 0x18, 0x19)

# 3.1.1 CONNACK return codes (3.1.1 3.2.2.3) and the MQTT 5 reasons they stand for.
CONNACK_FROM_311 = {
    0: Reason.SUCCESS,
    1: Reason.UNSUPPORTED_PROTOCOL_VERSION,
    2: Reason.CLIENT_IDENTIFIER_NOT_VALID,
    3: Reason.SERVER_UNAVAILABLE,
    4: Reason.BAD_USER_NAME_OR_PASSWORD,
    5: Reason.NOT_AUTHORIZED,
}
SERVER_UNAVAILABLE_311 = 3
NOT_AUTHORIZED_311 = 5
# A 3.1.1 client can only be told "server unavailable" (try again later) or "not authorized" (don't),
# and, as ThingsBoard's transport answers 3.1.x clients (ReturnCodeResolver), bad credentials are
# "not authorized" too: return code 4 is decoded but never sent.
CONNACK_TO_311 = {reason: code for code, reason in CONNACK_FROM_311.items()} | {
    Reason.BAD_USER_NAME_OR_PASSWORD: NOT_AUTHORIZED_311,
} | dict.fromkeys(
    (
        Reason.SERVER_BUSY, Reason.UNSPECIFIED_ERROR, Reason.IMPLEMENTATION_SPECIFIC_ERROR,
        Reason.SERVER_SHUTTING_DOWN, Reason.USE_ANOTHER_SERVER, Reason.SERVER_MOVED,
        Reason.CONNECTION_RATE_EXCEEDED, Reason.QUOTA_EXCEEDED,
    ),
    SERVER_UNAVAILABLE_311,
)
