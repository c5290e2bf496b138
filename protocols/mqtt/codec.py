"""MQTT 3.1.1 and 5.0 control packets to and from bytes, strictly.

:class:`Decoder` turns one connection's byte stream into packets and raises
:class:`ProtocolError` (nothing else, whatever the bytes) at the first
violation it can see in a packet alone, with the MQTT 5 reason code for it.
What needs the session's state (the first packet must be a CONNECT, a second
CONNECT, Topic Alias Maximum, Receive Maximum, which side may send what) or
is answered per item instead of by closing (a Topic Filter's syntax: SUBACK
0x8F) is the session's to check; :attr:`Decoder.protocol_level` stays None
until a CONNECT is decoded so it can.

:func:`encode` writes any packet in either version, dropping what 3.1.1
cannot carry (properties, most reason codes). Spec references are to MQTT 5
(OASIS, 2019) unless they say 3.1.1; the normative statement ids
(MQTT-x.y.z-n) are the same in both where they exist in both.

The codec is three modules: :mod:`~protocols.mqtt.wire` (the header and
option bit fields and the reason-code tables both directions share),
:mod:`~protocols.mqtt.decode` and :mod:`~protocols.mqtt.encode`. This one
re-exports their public API, so the rest of the transport imports ``codec``.
"""

from __future__ import annotations

from fleetgate.protocols.mqtt.datatypes import ProtocolError
from fleetgate.protocols.mqtt.decode import Decoder, decode
from fleetgate.protocols.mqtt.encode import PINGRESP, encode, encode_puback, encode_pubcomp, encode_pubrec, encode_pubrel
from fleetgate.protocols.mqtt.wire import MAX_PACKET_SIZE

__all__ = [
    "MAX_PACKET_SIZE", "PINGRESP", "Decoder", "ProtocolError", "decode", "encode", "encode_puback",
    "encode_pubcomp", "encode_pubrec", "encode_pubrel",
]
