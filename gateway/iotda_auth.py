"""IoTDA's MQTT CONNECT authentication: the client id ``{device_id}_0_{0|1}_{YYYYMMDDHH}``, the
device id as user name, and for a secret device the password HMAC-SHA256(key = the hour, message =
the secret), in lowercase hex.

With the flag 1 the hour is checked against the gateway's clock (one hour either side
accepted, for clock skew and the turn of the hour); with 0 only the password is.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from fleetgate.core.errors import CredentialsInvalid

_CLIENT_ID = re.compile(r"(.+)_0_([01])_(\d{10})")
# IoTDA's rule for a secret: 8 to 32 letters, digits, _ and -.
_SECRET = re.compile(r"[A-Za-z0-9_-]{8,32}")
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class IotdaConnect:
    """What an IoTDA client id says."""

    device_id: str
    check_timestamp: bool
    hour: str  # YYYYMMDDHH, UTC


def parse(client_id: str, username: str | None) -> IotdaConnect | None:
    """The IoTDA form of a CONNECT: a client id of the shape above whose device id is the user
    name; None for anything else (ThingsBoard's forms)."""
    if not username or not client_id.startswith(username):
        return None
    match = _CLIENT_ID.fullmatch(client_id)
    if match is None or match.group(1) != username:
        return None
    return IotdaConnect(username, match.group(2) == "1", match.group(3))


def fresh(connect: IotdaConnect, now_ms: int) -> bool:
    """Whether the client id's hour is acceptable now: always with the flag 0, else within an hour."""
    if not connect.check_timestamp:
        return True
    try:
        stamped = time.strptime(connect.hour, "%Y%m%d%H")
    except ValueError:
        return False
    hour_ms = calendar.timegm(stamped) * 1000
    now_hour = now_ms - now_ms % _HOUR_MS
    return abs(now_hour - hour_ms) <= _HOUR_MS


def password(secret: str, hour: str) -> str:
    """What a device with ``secret`` sends as its password in the hour ``hour``."""
    return hmac.new(hour.encode(), secret.encode(), hashlib.sha256).hexdigest()


def password_matches(secret: str, hour: str, given: bytes | None) -> bool:
    """Constant-time comparison of the given password with the expected HMAC."""
    if given is None:
        return False
    return hmac.compare_digest(password(secret, hour).encode(), given)


def lookup(device_id: str) -> str:
    """The credentials lookup of a secret device: its id (not a secret), prefixed like the others."""
    return "i:" + device_id


def validate_secret(secret: str) -> str:
    if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
        raise CredentialsInvalid("secret must be 8 to 32 letters, digits, _ or -")
    return secret
