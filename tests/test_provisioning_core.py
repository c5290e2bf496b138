"""Unit tests of gateway/provisioning.py over in-memory fakes of its ports (spec 1.1, 1.6, 2.1, 2.2)."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest

from fleetgate.core import credentials as creds
from fleetgate.core.model import (
    Credentials,
    CredentialsType,
    Device,
    MqttBasic,
    Product,
    ProvisionStrategy,
    StoredCredentials,
)
from fleetgate.core.products import ProductService
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.provisioning_model import ProvisionRequest, ProvisionResult, ProvisionStatus
from tests.fakes import FakeAuditLog, FakeProductStore, FakeProvisioningStore
from tests.pki import pem_body, self_signed_pem

ALLOW, CHECK, DISABLED = (
    ProvisionStrategy.ALLOW_CREATE_NEW_DEVICES,
    ProvisionStrategy.CHECK_PRE_PROVISIONED_DEVICES,
    ProvisionStrategy.DISABLED,
)
TOKEN, BASIC, X509 = CredentialsType.ACCESS_TOKEN, CredentialsType.MQTT_BASIC, CredentialsType.X509_CERTIFICATE
SUCCESS, NOT_FOUND, FAILURE = ProvisionStatus.SUCCESS, ProvisionStatus.NOT_FOUND, ProvisionStatus.FAILURE
ALNUM20 = re.compile(r"[A-Za-z0-9]{20}")


def product(strategy: ProvisionStrategy, key: str, secret: str | None = "secret", *, pid: str = "", project: str = "p1"
            ) -> Product:
    return Product(
        id=pid or f"prod-{key}", project_id=project, name=f"name-{key}", description="", provision_strategy=strategy,
        provision_key=key, provision_secret=secret, send_ack_on_validation_error=False, created_at=0,
    )


@pytest.fixture
def audit() -> FakeAuditLog:
    return FakeAuditLog()


@pytest.fixture
def store(audit: FakeAuditLog) -> FakeProvisioningStore:
    s = FakeProvisioningStore(audit)
    s.add_product(product(ALLOW, "allow"))
    s.add_product(product(CHECK, "check"))
    s.add_product(product(DISABLED, "disabled"))
    s.add_product(product(ALLOW, "nosecret", secret=None))
    s.add_product(product(ALLOW, "other-allow", project="p1"))
    s.add_product(product(ALLOW, "elsewhere", project="p2"))
    return s


@pytest.fixture
def service(store: FakeProvisioningStore, audit: FakeAuditLog) -> ProvisioningService:
    return ProvisioningService(store, audit)


def request(key: str = "allow", secret: str = "secret", **fields) -> ProvisionRequest:
    return ProvisionRequest(provision_key=key, provision_secret=secret, **fields)


def pre_provision(store: FakeProvisioningStore, name: str, credentials: Credentials, product_id: str = "prod-check") -> Device:
    device = Device(id=f"dev-{name}", project_id="p1", product_id=product_id, name=name)
    store.devices[device.id] = device
    store.credentials[device.id] = creds.to_stored(creds.validate(credentials), keep_pending=True)
    return device


# --- NOT_FOUND --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("", "secret"), ("   ", "secret"), ("allow", ""), ("allow", "  "), ("", ""),
        ("unknown", "secret"),
        ("allow", "wrong"), ("allow", "Secret"), ("allow", "secret "),
        ("check", "wrong"),
        ("disabled", "secret"),
        ("nosecret", ""), ("nosecret", "secret"),
        ("allow\x00", "secret"),
    ],
)
async def test_not_found(service, store, audit, key, secret):
    result = await service.provision(request(key, secret, device_name="dev"))
    assert result == ProvisionResult(NOT_FOUND, reason=result.reason)
    assert store.devices == {}
    assert [(r.action, r.outcome, r.project_id, r.device_id) for r in audit.records] == [
        ("PROVISION", "NOT_FOUND", None, None)
    ]


# --- ALLOW_CREATE_NEW_DEVICES -----------------------------------------------------------------


async def test_allow_create_makes_a_provisioned_device_with_a_generated_token(service, store, audit):
    result = await service.provision(request(device_name="dev-1", source="http:1.2.3.4"))
    assert result.status is SUCCESS and result.credentials.type is TOKEN
    assert ALNUM20.fullmatch(result.credentials.value)
    device = store.device_named("dev-1")
    assert result.device == device
    assert (device.project_id, device.product_id, device.gateway) == ("p1", "prod-allow", False)
    assert device.created_at > 0
    # Only a hash is kept, and the device counts as provisioned.
    assert store.credentials[device.id] == StoredCredentials(TOKEN, creds.token_lookup(result.credentials.value))
    assert device.id in store.provisioned
    (record,) = audit.records
    assert (record.project_id, record.action, record.outcome, record.device_id, record.source) == (
        "p1", "PROVISION", "SUCCESS", device.id, "http:1.2.3.4",
    )
    assert record.details == {"device_name": "dev-1", "credentials_type": "ACCESS_TOKEN"}


@pytest.mark.parametrize("name", [None, ""])
async def test_allow_create_without_a_name_generates_one(service, store, name):
    result = await service.provision(request(device_name=name))
    assert result.status is SUCCESS
    assert ALNUM20.fullmatch(result.device.name)
    assert list(store.devices.values()) == [result.device]


@pytest.mark.parametrize(("given", "stored"), [(" dev ", "dev"), ("\tdev\n", "dev"), ("\x00dev\x1f", "dev"),
                                               ("\u00a0dev", "\u00a0dev")])
async def test_the_name_is_trimmed_like_java_string_trim(service, store, given, stored):
    assert (await service.provision(request(device_name=given))).status is SUCCESS
    assert store.device_named(stored)


@pytest.mark.parametrize("name", [" ", "\t\r\n", "\x00", "\x00 \x1f"])
@pytest.mark.parametrize("key", ["allow", "check", "unknown", ""])
async def test_a_blank_name_fails_before_the_key_is_checked(service, store, audit, name, key):
    result = await service.provision(request(key, device_name=name))
    assert result.status is FAILURE
    assert store.devices == {}
    assert audit.records[0].outcome == "FAILURE"


@pytest.mark.parametrize("key", ["allow", "check"])
async def test_a_nul_inside_the_name_fails(service, store, audit, key):
    assert (await service.provision(request(key, device_name="a\x00b"))).status is FAILURE
    assert store.devices == {}
    assert audit.records[0].details["device_name"] == "a\ufffdb"


async def test_a_taken_name_fails_whatever_product_holds_it(service, store, audit):
    assert (await service.provision(request("other-allow", device_name="dev"))).status is SUCCESS
    result = await service.provision(request(device_name="dev"))
    assert result == ProvisionResult(FAILURE, reason="The device is present and could not be provisioned once more!")
    assert len(store.devices) == 1
    assert [r.outcome for r in audit.records] == ["SUCCESS", "FAILURE"]


async def test_names_are_per_project(service, store):
    assert (await service.provision(request("elsewhere", device_name="dev"))).status is SUCCESS
    assert (await service.provision(request(device_name="dev"))).status is SUCCESS
    assert sorted(d.project_id for d in store.devices.values()) == ["p1", "p2"]


async def test_the_gateway_flag_reaches_the_device(service, store):
    await service.provision(request(device_name="gw", gateway=True))
    assert store.device_named("gw").gateway is True


# --- credential types -------------------------------------------------------------------------


async def test_device_chosen_access_token(service, store):
    result = await service.provision(request(device_name="d", token="my-token"))
    assert result.credentials == Credentials(TOKEN, "my-token")
    assert store.credentials[result.device.id].lookup == creds.token_lookup("my-token")


@pytest.mark.parametrize(
    ("fields", "basic", "lookup"),
    [
        ({"client_id": "c", "username": "u", "password": "p"}, MqttBasic("c", "u", "p"), "b:" + creds.sha3_hex("c|u")),
        ({"username": "u", "password": "p"}, MqttBasic(None, "u", "p"), creds.token_lookup("u")),
        ({"client_id": "c"}, MqttBasic("c", None, None), "b:" + creds.sha3_hex("c")),
        ({"client_id": "c", "username": "u"}, MqttBasic("c", "u", None), "b:" + creds.sha3_hex("c|u")),
        ({"client_id": "c", "username": "", "password": ""}, MqttBasic("c", None, None), "b:" + creds.sha3_hex("c")),
    ],
)
async def test_mqtt_basic(service, store, fields, basic, lookup):
    result = await service.provision(request(device_name="d", credentials_type=BASIC, **fields))
    assert result.status is SUCCESS and result.credentials == Credentials(BASIC, basic)
    stored = store.credentials[result.device.id]
    assert (stored.type, stored.lookup, stored.client_id, stored.user_name, stored.pending) == (
        BASIC, lookup, basic.client_id, basic.user_name, None,
    )
    assert (stored.password_hash is None) == (basic.password is None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"password": "p"}, "Both mqtt client id and user name are empty!"),
        ({"client_id": "c", "password": "p"}, "Password cannot be specified along with client id"),
        # A credential field of another type makes the credentials count as supplied.
        ({"token": "t"}, "Both mqtt client id and user name are empty!"),
        ({"client_id": "c\x00"}, "MQTT client id and user name cannot contain U+0000"),
        ({"username": "\x00u"}, "MQTT client id and user name cannot contain U+0000"),
    ],
)
async def test_invalid_mqtt_basic_fails(service, store, fields, reason):
    result = await service.provision(request(device_name="d", credentials_type=BASIC, **fields))
    assert result == ProvisionResult(FAILURE, reason=reason)
    assert store.devices == {}


@pytest.mark.parametrize("kind", [BASIC, X509, CredentialsType.LWM2M_CREDENTIALS])
async def test_a_type_without_any_credential_field_yields_an_access_token(service, kind):
    result = await service.provision(request(device_name="d", credentials_type=kind))
    assert result.status is SUCCESS and result.credentials.type is TOKEN
    assert ALNUM20.fullmatch(result.credentials.value)


async def test_lwm2m_with_credentials_fails(service, store):
    result = await service.provision(request(device_name="d", credentials_type=CredentialsType.LWM2M_CREDENTIALS,
                                             token="t"))
    assert result.status is FAILURE and store.devices == {}


async def test_x509(service, store):
    pem = self_signed_pem()
    result = await service.provision(request(device_name="d", credentials_type=X509, certificate=pem))
    assert result.credentials == Credentials(X509, pem_body(pem))
    stored = store.credentials[result.device.id]
    assert stored == StoredCredentials(X509, creds.certificate_lookup(pem_body(pem)), certificate=pem_body(pem))


async def test_invalid_x509_fails(service, store):
    result = await service.provision(request(device_name="d", credentials_type=X509, certificate="garbage"))
    assert result == ProvisionResult(FAILURE, reason="Invalid X509 certificate!")
    assert store.devices == {}


async def test_colliding_credentials_fail_and_create_nothing(service, store):
    assert (await service.provision(request(device_name="d1", token="same"))).status is SUCCESS
    result = await service.provision(request(device_name="d2", token="same"))
    assert result == ProvisionResult(FAILURE, reason="Specified credentials are already registered!")
    assert [d.name for d in store.devices.values()] == ["d1"]


async def test_a_user_name_collides_with_an_equal_access_token(service, store):
    """ThingsBoard keys both by the bare string, so they share one namespace."""
    assert (await service.provision(request(device_name="d1", token="shared"))).status is SUCCESS
    result = await service.provision(request(device_name="d2", credentials_type=BASIC, username="shared"))
    assert result.status is FAILURE


async def test_concurrent_requests_for_one_name_make_one_device(service, store):
    results = await asyncio.gather(*(service.provision(request(device_name="race")) for _ in range(10)))
    assert sorted(r.status for r in results) == [FAILURE] * 9 + [SUCCESS]
    assert len(store.devices) == 1


# --- CHECK_PRE_PROVISIONED_DEVICES ------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        Credentials(TOKEN, "pre-token"),
        Credentials(BASIC, MqttBasic("c", "u", "p")),
        Credentials(BASIC, MqttBasic(None, "u", None)),
    ],
)
async def test_check_pre_returns_the_existing_credentials_once(service, store, audit, credentials):
    device = pre_provision(store, "pre", credentials)
    result = await service.provision(request("check", device_name=" pre ", token="ignored", credentials_type=TOKEN))
    assert result == ProvisionResult(SUCCESS, credentials, device)
    assert device.id in store.provisioned
    assert store.credentials[device.id].pending is None
    assert audit.records[-1].device_id == device.id and audit.records[-1].project_id == "p1"
    # Strict: a second claim fails, and the credentials are no longer known in clear.
    again = await service.provision(request("check", device_name="pre"))
    assert again.status is FAILURE


@pytest.mark.parametrize("name", ["missing", "", None])
async def test_check_pre_without_the_device_fails(service, store, name):
    pre_provision(store, "pre", Credentials(TOKEN, "pre-token"))
    result = await service.provision(request("check", device_name=name))
    assert result == ProvisionResult(FAILURE, reason="Failed to find pre provisioned device!")


async def test_check_pre_device_of_another_product_fails(service, store):
    device = pre_provision(store, "pre", Credentials(TOKEN, "pre-token"), product_id="prod-allow")
    result = await service.provision(request("check", device_name="pre"))
    assert result.status is FAILURE
    assert device.id not in store.provisioned


async def test_check_pre_device_without_pending_credentials_fails(service, store):
    """A device that was created provisioned (its token is only a hash) cannot be claimed."""
    store.devices["d"] = Device(id="d", project_id="p1", product_id="prod-check", name="pre")
    store.credentials["d"] = creds.to_stored(Credentials(TOKEN, "pre-token"))
    assert (await service.provision(request("check", device_name="pre"))).status is FAILURE


async def test_check_pre_concurrent_claims_succeed_once(service, store):
    pre_provision(store, "pre", Credentials(TOKEN, "pre-token"))
    results = await asyncio.gather(*(service.provision(request("check", device_name="pre")) for _ in range(5)))
    assert sorted(r.status for r in results) == [FAILURE] * 4 + [SUCCESS]


async def test_check_pre_never_creates_a_device(service, store):
    await service.provision(request("check", device_name="new"))
    assert store.devices == {}


# --- audit records ----------------------------------------------------------------------------


async def test_a_new_device_is_audited_in_the_same_store_call(service, store, audit):
    result = await service.provision(request(device_name="dev"))
    assert result.status is SUCCESS
    assert [r.device_id for r in audit.records] == [result.device.id]
    assert audit.separate_calls == 0


async def test_a_claim_is_audited_in_the_same_store_call(service, store, audit):
    device = pre_provision(store, "pre", Credentials(TOKEN, "pre-token"))
    assert (await service.provision(request("check", device_name="pre"))).status is SUCCESS
    assert [(r.outcome, r.device_id) for r in audit.records] == [("SUCCESS", device.id)]
    assert audit.separate_calls == 0


async def test_a_lost_race_for_a_claim_is_audited_as_a_failure(service, store, audit):
    pre_provision(store, "pre", Credentials(TOKEN, "pre-token"))
    results = await asyncio.gather(*(service.provision(request("check", device_name="pre")) for _ in range(3)))
    assert sorted(r.outcome for r in audit.records) == ["FAILURE", "FAILURE", "SUCCESS"]
    assert [r.reason for r in results if r.status is FAILURE] == ["The device has already been provisioned!"] * 2


# --- products cached by provision key ---------------------------------------------------------


async def test_the_product_is_looked_up_once_for_many_devices(service, store):
    for n in range(5):
        assert (await service.provision(request(device_name=f"d{n}"))).status is SUCCESS
    assert store.product_lookups == 1


async def test_the_secret_is_checked_against_the_cached_product(service, store):
    assert (await service.provision(request(device_name="d1"))).status is SUCCESS
    assert (await service.provision(request(secret="wrong", device_name="d2"))).status is NOT_FOUND


async def test_an_unknown_key_is_not_cached(service, store):
    assert (await service.provision(request("new", device_name="d"))).status is NOT_FOUND
    store.add_product(product(ALLOW, "new"))
    assert (await service.provision(request("new", device_name="d"))).status is SUCCESS


async def test_forget_products_applies_a_change_at_once(service, store):
    assert (await service.provision(request(device_name="d1"))).status is SUCCESS
    store.add_product(dataclasses.replace(store.products["prod-allow"], provision_strategy=DISABLED))
    service.forget_products()
    assert (await service.provision(request(device_name="d2"))).status is NOT_FOUND


async def test_entries_expire(store, audit):
    service = ProvisioningService(store, audit, product_cache_seconds=0)
    for n in range(3):
        await service.provision(request(device_name=f"d{n}"))
    assert store.product_lookups == 3


async def test_a_lookup_overlapping_a_change_is_not_cached(service, store, monkeypatch):
    """The lookup may have read the product before the change that cleared the cache."""
    release, looking = asyncio.Event(), asyncio.Event()
    lookup = store.product_by_provision_key

    async def slow_lookup(key: str) -> Product | None:
        found = await lookup(key)
        looking.set()
        await release.wait()
        return found

    monkeypatch.setattr(store, "product_by_provision_key", slow_lookup)
    first = asyncio.create_task(service.provision(request(device_name="d1")))
    await looking.wait()
    store.add_product(dataclasses.replace(store.products["prod-allow"], provision_secret="changed"))
    service.forget_products()
    release.set()
    assert (await first).status is SUCCESS  # it read the product before the change
    assert (await service.provision(request(secret="changed", device_name="d2"))).status is SUCCESS


@pytest.mark.parametrize(
    ("change", "then"),
    [
        (lambda products: products.update("p1", "prod-allow", {"provision_secret": "new-secret"}), NOT_FOUND),
        (lambda products: products.update("p1", "prod-allow", {"provision_strategy": "DISABLED"}), NOT_FOUND),
        (lambda products: products.update("p1", "prod-allow", {"provision_key": "moved"}), NOT_FOUND),
        (lambda products: products.delete("p1", "prod-allow"), NOT_FOUND),
    ],
    ids=["secret", "strategy", "key", "delete"],
)
async def test_product_changes_evict_the_cache(service, store, change, then):
    products = ProductService(FakeProductStore(store), on_change=service.forget_products)
    assert (await service.provision(request(device_name="d1"))).status is SUCCESS
    await change(products)
    assert (await service.provision(request(device_name="d2"))).status is then


async def test_a_key_moved_to_another_product_provisions_there_at_once(service, store):
    products = ProductService(FakeProductStore(store), on_change=service.forget_products)
    assert (await service.provision(request(device_name="d1"))).status is SUCCESS
    await products.update("p1", "prod-allow", {"provision_key": "moved"})
    await products.create("p1", "successor", strategy=ALLOW, provision_key="allow", provision_secret="s2")
    result = await service.provision(request(secret="s2", device_name="d2"))
    assert result.status is SUCCESS and result.device.product_id != "prod-allow"
