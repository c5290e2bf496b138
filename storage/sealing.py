"""Secrets that must be given back (a product's provision secret, an AK/SK secret key, the
credentials an operator set for a pre-provisioned device), sealed at rest with AES-256-GCM.

The key is 32 random bytes, hex, in a file (``secrets_key_file``, by default
``secrets.key`` in the data directory, created with mode 0600 at the first start).
Every process and replica sharing a database must share the file. A sealed value
is ``sealed:v1:`` and the URL-safe Base64 of nonce and ciphertext; the column's
name is bound as associated data, so a value cannot be moved to another column.
Values written before sealing existed (no prefix) are read as they are.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetgate.core.errors import Unavailable

PREFIX = "sealed:v1:"
_NONCE = 12


class SealError(Unavailable):
    """A sealed secret cannot be opened: the secrets key is not the one it was sealed with."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, value: str | None, column: str) -> str | None:
        if value is None:
            return None
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, value.encode(), column.encode())
        return PREFIX + base64.urlsafe_b64encode(sealed).decode()

    def open(self, value: str | None, column: str) -> str | None:
        if value is None or not value.startswith(PREFIX):
            return value
        raw = base64.urlsafe_b64decode(value[len(PREFIX):])
        try:
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], column.encode()).decode()
        except InvalidTag:
            raise SealError() from None


def load_key(path: str | os.PathLike[str]) -> bytes:
    """The key in ``path``, made (0600, exclusively: concurrent first starts agree) if missing."""
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    text = file.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{file} must hold a 32-byte key as 64 hex digits")
    return key
