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
_ALPHANUMERIC = string.ascii_letters + string.digits


def new_id() -> str:
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{next(_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def random_alphanumeric(length: int = 20) -> str:
    """ThingsBoard's generated access tokens and device names: 20 letters and digits."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))
