"""The MQTT front-end's error map: a DISCONNECT never carries a reason only CONNACK may."""

from __future__ import annotations

import pytest

from fleetgate.core import errors
from fleetgate.protocols.mqtt.errors import disconnect_reason
from fleetgate.protocols.mqtt.packets import Reason
from fleetgate.protocols.mqtt.wire import DISCONNECT_REASONS

ERRORS = [cls for cls in vars(errors).values()
          if isinstance(cls, type) and issubclass(cls, errors.GatewayError)]


@pytest.mark.parametrize("error", ERRORS, ids=lambda cls: cls.__name__)
def test_every_core_error_ends_a_connection_with_a_disconnect_reason(error: type[errors.GatewayError]) -> None:
    assert disconnect_reason(error("why")) in DISCONNECT_REASONS


def test_a_gateway_stopping_says_so_and_an_outage_says_busy() -> None:
    # A rolling restart once sent DISCONNECT 0x88, which clients reject as a malformed packet.
    assert disconnect_reason(errors.ShuttingDown("stopping")) == Reason.SERVER_SHUTTING_DOWN
    assert disconnect_reason(errors.Unavailable("database away")) == Reason.SERVER_BUSY
