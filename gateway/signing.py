"""Huawei Cloud's AK/SK request signature, SDK-HMAC-SHA256, verified on the server side.

What the official SDKs (huaweicloudsdkcore's signer) send: ``Authorization:
SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2...>, Signature=<hex>`` and
``X-Sdk-Date: yyyyMMdd'T'HHmmss'Z'``. The signature is HMAC-SHA256 under the secret key
of ``"SDK-HMAC-SHA256\\n" + X-Sdk-Date + "\\n" + hex(SHA-256(canonical request))``,
the canonical request being the method, the URI (each segment percent-encoded, ``~``
kept, ending in ``/``), the query (sorted pairs, encoded the same way), each signed
header as ``name:value`` (lowercase name, trimmed value), the signed header names and
hex(SHA-256(body)) (``X-Sdk-Content-Sha256`` when the client set it).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from fleetgate.core.errors import Unauthorized

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM}\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-fA-F]+)$")
_EMPTY_HASH = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the signature covers, as the front-end received it (the path still percent-encoded)."""

    method: str
    raw_path: str
    query: Sequence[tuple[str, str]]
    headers: Mapping[str, str]  # case-insensitive lookups are the caller's: pass lowercase names
    body: bytes


@dataclass(frozen=True, slots=True)
class Signature:
    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def is_signed(authorization: str | None) -> bool:
    return bool(authorization) and authorization.startswith(ALGORITHM + " ")  # type: ignore[union-attr]


def parse(authorization: str) -> Signature:
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise Unauthorized("The Authorization header is not a valid SDK-HMAC-SHA256 signature")
    return Signature(match[1], tuple(match[2].split(";")), match[3].lower())


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_request(request: SignedRequest, signed_headers: Sequence[str]) -> str:
    segments = [_encode(unquote(s)) for s in request.raw_path.split("/")]
    uri = "/".join(segments)
    if not uri.endswith("/"):
        uri += "/"
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(request.query))
    headers = "".join(f"{name}:{request.headers.get(name, '').strip()}\n" for name in signed_headers)
    payload = request.headers.get("x-sdk-content-sha256") or (
        hashlib.sha256(request.body).hexdigest() if request.body else _EMPTY_HASH)
    return "\n".join((request.method.upper(), uri, query, headers, ";".join(signed_headers), payload))


def string_to_sign(request: SignedRequest, signed_headers: Sequence[str], date: str) -> str:
    digest = hashlib.sha256(canonical_request(request, signed_headers).encode()).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def sign(request: SignedRequest, signed_headers: Sequence[str], date: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), string_to_sign(request, signed_headers, date).encode(),
                    hashlib.sha256).hexdigest()


def verify(request: SignedRequest, signature: Signature, secret_key: str,
           now: datetime.datetime | None = None) -> None:
    """Unauthorized unless the signature is the secret key's, over a date within 15 minutes."""
    date = request.headers.get("x-sdk-date", "")
    try:
        signed_at = datetime.datetime.strptime(date, DATE_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise Unauthorized("X-Sdk-Date is missing or not yyyyMMdd'T'HHmmss'Z'") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise Unauthorized("X-Sdk-Date is more than 15 minutes away from the gateway's clock")
    if "x-sdk-date" not in signature.signed_headers:
        raise Unauthorized("X-Sdk-Date must be signed")
    expected = sign(request, signature.signed_headers, date, secret_key)
    if not hmac.compare_digest(expected, signature.signature):
        raise Unauthorized("The request signature does not match")
