"""NATS_FORWARDING (this gateway's, IoTDA has no NATS channel): each notification published to a
subject of a NATS JetStream stream, with ``Nats-Msg-Id`` set to the notification's id, so that
JetStream drops a repeat within the stream's duplicate window.

channel_detail.nats_forwarding: ``servers`` (nats:// or tls:// URLs), ``subject``, and optionally
one of ``user`` with ``password``, ``token`` or ``nkey_seed``; ``tls`` (``{"ca_cert": PEM,
"verify": true}``); ``timeout`` (seconds for JetStream's acknowledgement, default 5);
``batch_size`` (publishes in flight at once, default 100). A publish counts as delivered once
JetStream has acknowledged it, stored in a stream: a subject no stream takes is a failed delivery.

nats-py is the optional ``nats`` extra, imported when the first NATS action delivers.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from fleetgate.core.errors import InvalidInput
from fleetgate.core.forwarding_model import Action, Delivery, DeliveryFailed

log = logging.getLogger(__name__)
_MAX_BATCH = 1000


class NatsChannel:
    name = "NATS_FORWARDING"

    def __init__(self) -> None:
        self._clients: dict[str, tuple[str, Any]] = {}  # action id -> (its detail's key, connection)
        self._connecting: dict[str, asyncio.Lock] = {}

    def validate(self, detail: Mapping[str, Any]) -> Mapping[str, Any]:
        nats_detail = detail.get("nats_forwarding") if "nats_forwarding" in detail else detail
        if not isinstance(nats_detail, Mapping):
            raise InvalidInput("channel_detail.nats_forwarding must be a JSON object")
        servers = nats_detail.get("servers")
        if isinstance(servers, str):
            servers = [servers]
        if (not isinstance(servers, list) or not servers
                or not all(isinstance(s, str) and s.split("://")[0] in ("nats", "tls") for s in servers)):
            raise InvalidInput("nats_forwarding.servers must be nats:// or tls:// URLs")
        subject = nats_detail.get("subject")
        if not isinstance(subject, str) or not subject or any(c in subject for c in " *>\t"):
            raise InvalidInput("nats_forwarding.subject must be a subject without wildcards")
        for name in ("user", "password", "token", "nkey_seed"):
            if nats_detail.get(name) is not None and not isinstance(nats_detail[name], str):
                raise InvalidInput(f"nats_forwarding.{name} must be a string")
        tls = nats_detail.get("tls")
        if tls is not None:
            if not isinstance(tls, Mapping) or not isinstance(tls.get("verify", True), bool):
                raise InvalidInput("nats_forwarding.tls must be {\"ca_cert\": PEM, \"verify\": true or false}")
            if tls.get("ca_cert"):
                try:
                    ssl.create_default_context(cadata=tls["ca_cert"])
                except (ssl.SSLError, TypeError, ValueError):
                    raise InvalidInput("nats_forwarding.tls.ca_cert must be PEM certificates") from None
        timeout = nats_detail.get("timeout", 5)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise InvalidInput("nats_forwarding.timeout must be a number of seconds, at most 120")
        batch = nats_detail.get("batch_size", 100)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= _MAX_BATCH:
            raise InvalidInput(f"nats_forwarding.batch_size must be an integer from 1 to {_MAX_BATCH}")
        return {"servers": servers, "subject": subject, "timeout": timeout, "batch_size": batch,
                **{k: nats_detail[k] for k in ("user", "password", "token", "nkey_seed", "tls")
                   if nats_detail.get(k) is not None}}

    async def deliver(self, action: Action, deliveries: Sequence[Delivery]) -> None:
        from nats.errors import Error as NatsError

        client = await self._client(action)
        js = client.jetstream()
        subject, timeout = action.detail["subject"], float(action.detail.get("timeout") or 5)
        # Published in order on one connection; the acknowledgements are awaited together.
        results = await asyncio.gather(*(
            js.publish(subject, d.payload, timeout=timeout, headers={"Nats-Msg-Id": d.message_id})
            for d in deliveries), return_exceptions=True)
        for result in results:
            if isinstance(result, (NatsError, asyncio.TimeoutError, OSError)):
                raise DeliveryFailed(f"NATS {subject}: {type(result).__name__} {result}")
            if isinstance(result, BaseException):
                raise result

    async def _client(self, action: Action) -> Any:
        import nats
        from nats.errors import Error as NatsError

        key = repr(sorted(action.detail.items()))
        held = self._clients.get(action.id)
        if held is not None and held[0] == key and not held[1].is_closed:
            return held[1]
        lock = self._connecting.setdefault(action.id, asyncio.Lock())
        async with lock:
            held = self._clients.get(action.id)
            if held is not None and held[0] == key and not held[1].is_closed:
                return held[1]
            if held is not None:
                await _close(held[1])
            detail = action.detail
            options: dict[str, Any] = {
                "servers": list(detail["servers"]), "name": f"fleetgate-forwarding-{action.id}",
                # The client reconnects on its own, for ever; a publish meanwhile fails and is retried.
                "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5, "connect_timeout": 2,
                "error_cb": _quiet, "disconnected_cb": _none, "reconnected_cb": _none,
            }
            for name, option in (("user", "user"), ("password", "password"), ("token", "token"),
                                 ("nkey_seed", "nkeys_seed_str")):
                if detail.get(name):
                    options[option] = detail[name]
            tls = detail.get("tls")
            if tls is not None or any(s.startswith("tls://") for s in detail["servers"]):
                context = ssl.create_default_context(cadata=(tls or {}).get("ca_cert") or None)
                if not (tls or {}).get("verify", True):
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                options["tls"] = context
            try:
                client = await nats.connect(**options)
            except (NatsError, OSError, asyncio.TimeoutError) as exc:
                raise DeliveryFailed(f"NATS {detail['servers']}: {type(exc).__name__} {exc}") from exc
            self._clients[action.id] = (key, client)
            return client

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await _close(client)


async def _close(client: Any) -> None:
    try:
        await client.close()
    except Exception as exc:  # closing is best effort: the connection may be gone already
        log.debug("NATS connection not closed cleanly: %r", exc)


async def _quiet(exc: Exception) -> None:
    log.debug("NATS forwarding connection: %r", exc)


async def _none() -> None:
    return None
