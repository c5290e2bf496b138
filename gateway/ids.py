"""Resource identifiers in IoTDA's shape: 24 hex digits, ordered by creation time.

The first 8 digits are the creation second and the rest a per-process counter
seeded at random, so sorting ids descending lists resources newest first, as
IoTDA's marker pagination expects.
"""

import os
import secrets
import string
import time
from itertools import count

_counter = count(int.from_bytes(os.urandom(5), "big"))
_ALPHANUMERIC = (string.ascii_letters + string.digits).encode()
# Random bytes map onto the 62 letters and digits by b % 62, which is uniform only
# below 248 (4 x 62): the 8 bytes above are dropped (rejection sampling).
_UNIFORM_BELOW = 4 * len(_ALPHANUMERIC)
_TO_ALPHANUMERIC = bytes(_ALPHANUMERIC[b % len(_ALPHANUMERIC)] for b in range(256))
_REJECTED = bytes(range(_UNIFORM_BELOW, 256))


def new_id() -> str:
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{next(_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def random_alphanumeric(length: int = 20) -> str:
    """ThingsBoard's generated access tokens and device names: 20 letters and digits.

    One read of the system's CSPRNG, mapped in C by bytes.translate, instead of a
    SystemRandom call per character; a few spare bytes cover the rejected ones.
    """
    drawn = b""
    while len(drawn) < length:
        drawn += secrets.token_bytes(length + 8).translate(_TO_ALPHANUMERIC, _REJECTED)
    return drawn[:length].decode()
