"""HTTP_FORWARDING: each notification POSTed as IoTDA's push JSON to the action's URL.

channel_detail.http_forwarding: ``url`` (http or https), and optionally ``signature_enable`` with
``token``, the shared secret: the body is then signed, ``X-Hub-Signature-256: sha256=<hex>``
(HMAC-SHA256 of the exact body with the token as the key), for the receiver to check. This
gateway's additions: ``timeout`` (seconds, default 5), ``verify_tls`` (default true: the server's
certificate is checked against the system's trust store, or ``ca_cert``, a PEM, when given) and
``batch_size`` (default 1, IoTDA's one notification a request; above 1, a JSON array of up to that
many). A response other than 2xx, a timeout or a refused connection is a failed delivery. Every
request carries ``X-Message-Id`` (the first notification's, for a batch): a receiver that sees one
again has been sent a repeat (the at-least-once window).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from fleetgate.core.errors import InvalidInput
from fleetgate.core.forwarding_model import Action, Delivery, DeliveryFailed

SIGNATURE_HEADER = "X-Hub-Signature-256"
_MAX_BATCH = 1000


def sign(token: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


class HttpChannel:
    name = "HTTP_FORWARDING"

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext | bool] = {}

    def validate(self, detail: Mapping[str, Any]) -> Mapping[str, Any]:
        http = detail.get("http_forwarding") if "http_forwarding" in detail else detail
        if not isinstance(http, Mapping):
            raise InvalidInput("channel_detail.http_forwarding must be a JSON object")
        url = http.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise InvalidInput("channel_detail.http_forwarding.url must be an http or https URL")
        signed = http.get("signature_enable", False)
        token = http.get("token")
        if not isinstance(signed, bool) or (token is not None and not isinstance(token, str)):
            raise InvalidInput("signature_enable must be true or false, and token a string")
        if signed and not token:
            raise InvalidInput("signature_enable needs a token, the secret the body is signed with")
        timeout = http.get("timeout", 5)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise InvalidInput("timeout must be a number of seconds, at most 120")
        verify = http.get("verify_tls", True)
        if not isinstance(verify, bool):
            raise InvalidInput("verify_tls must be true or false")
        batch = http.get("batch_size", 1)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= _MAX_BATCH:
            raise InvalidInput(f"batch_size must be an integer from 1 to {_MAX_BATCH}")
        ca = http.get("ca_cert")
        if ca is not None:
            try:
                ssl.create_default_context(cadata=ca)
            except (ssl.SSLError, TypeError, ValueError):
                raise InvalidInput("ca_cert must be PEM certificates") from None
        return {"url": url, "signature_enable": signed, "token": token, "timeout": timeout, "verify_tls": verify,
                "batch_size": batch, "ca_cert": ca,
                **{k: http[k] for k in ("cert_id", "cn_name", "sni_enable") if k in http}}

    async def deliver(self, action: Action, deliveries: Sequence[Delivery]) -> None:
        detail = action.detail
        if int(detail.get("batch_size") or 1) > 1:
            await self._post(action, b"[" + b",".join(d.payload for d in deliveries) + b"]", deliveries[0])
        else:
            for delivery in deliveries:
                await self._post(action, delivery.payload, delivery)

    async def _post(self, action: Action, body: bytes, first: Delivery) -> None:
        detail = action.detail
        headers = {"Content-Type": "application/json", "X-Message-Id": first.message_id}
        if detail.get("signature_enable") and detail.get("token"):
            headers[SIGNATURE_HEADER] = sign(detail["token"], body)
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        try:
            async with self._session.post(
                detail["url"], data=body, headers=headers, ssl=self._ssl(action),
                timeout=aiohttp.ClientTimeout(total=float(detail.get("timeout") or 5)),
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"{detail['url']} answered {response.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryFailed(f"{detail['url']}: {type(exc).__name__} {exc}") from exc

    def _ssl(self, action: Action) -> ssl.SSLContext | bool:
        detail = action.detail
        if not detail.get("verify_tls", True):
            return False
        ca = detail.get("ca_cert")
        if not ca:
            return True
        context = self._contexts.get(ca)
        if context is None:
            context = self._contexts[ca] = ssl.create_default_context(cadata=ca)
        return context

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
