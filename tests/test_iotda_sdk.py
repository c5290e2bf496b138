"""The official huaweicloudsdkiotda, unchanged, pointed at the gateway with with_endpoint and
signing with an access key (SDK-HMAC-SHA256): templates and device CAs end to end.

The SDK is blocking; its calls run in a thread while the gateway serves in this event loop."""

from __future__ import annotations

import asyncio
import copy

import pytest

pytest.importorskip("huaweicloudsdkiotda")

from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException  # noqa: E402
from huaweicloudsdkiotda.v5 import (  # noqa: E402
    AddCertificateRequest,
    AddDevice,
    AddDeviceRequest,
    AuthInfo,
    CreateCommandRequest,
    CreateMessageRequest,
    DeviceCommandRequest,
    DeviceMessageRequest,
    DevicePropertiesRequest,
    ShowDeviceShadowRequest,
    UpdatePropertiesRequest,
    CheckCertificateRequest,
    CreateCertificateDTO,
    CreateProvisioningTemplate,
    CreateProvisioningTemplateRequest,
    DeleteCertificateRequest,
    DeleteProvisioningTemplateRequest,
    IoTDAClient,
    ListCertificatesRequest,
    ListProvisioningTemplatesRequest,
    ShowProvisioningTemplateRequest,
    UpdateCertificateDTO,
    UpdateCertificateRequest,
    UpdateProvisioningTemplate,
    UpdateProvisioningTemplateRequest,
    VerifyCertificateDTO,
)

import orjson  # noqa: E402

from tests import pki  # noqa: E402
from tests.iotda_support import connect, report, request_id_of, topic  # noqa: E402
from tests.template_bodies import SEED_BODY  # noqa: E402


def client(endpoint: str, project_id: str, ak: str, sk: str) -> IoTDAClient:
    return (IoTDAClient.new_builder().with_credentials(BasicCredentials(ak, sk, project_id))
            .with_endpoint(endpoint).build())


async def test_the_sdk_drives_templates_and_certificates(gateway, management_url, tenant) -> None:
    ak, sk = await gateway.services.projects.create_access_key(tenant.project_id)
    sdk = client(management_url, tenant.project_id, ak, sk)

    def call(method, request):
        return asyncio.to_thread(getattr(sdk, method), request)

    body = copy.deepcopy(SEED_BODY["template_body"])
    body["resources"]["device"]["product_id"] = tenant.product_id
    created = await call("create_provisioning_template", CreateProvisioningTemplateRequest(
        instance_id="ignored", body=CreateProvisioningTemplate(template_name="sdkTemplate", description="via_sdk",
                                                               template_body=body)))
    assert created.status_code == 201 and created.template_name == "sdkTemplate" and created.template_id
    template_id = created.template_id
    listed = await call("list_provisioning_templates", ListProvisioningTemplatesRequest(template_name="sdkTemplate",
                                                                                         limit=10))
    assert [t.template_id for t in listed.templates] == [template_id] and listed.page.count == 1
    shown = await call("show_provisioning_template", ShowProvisioningTemplateRequest(template_id=template_id))
    assert shown.description == "via_sdk" and shown.create_time == created.create_time
    updated = await call("update_provisioning_template", UpdateProvisioningTemplateRequest(
        template_id=template_id, body=UpdateProvisioningTemplate(description="changed")))
    assert updated.description == "changed"

    ca = pki.ca("SDK CA " + tenant.project_id)
    added = await call("add_certificate", AddCertificateRequest(body=CreateCertificateDTO(content=ca.pem)))
    assert added.status_code == 201 and added.status is False and added.verify_code
    proof = pki.leaf(ca, CN=added.verify_code)
    await call("check_certificate", CheckCertificateRequest(certificate_id=added.certificate_id, action_id="verify",
                                                            body=VerifyCertificateDTO(verify_content=proof.pem)))
    bound = await call("update_certificate", UpdateCertificateRequest(
        certificate_id=added.certificate_id,
        body=UpdateCertificateDTO(provision_enable=True, template_id=template_id)))
    assert bound.status is True and bound.provision_enable is True and bound.template_id == template_id
    certificates = await call("list_certificates", ListCertificatesRequest(limit=10))
    assert [c.certificate_id for c in certificates.certificates] == [added.certificate_id]

    with pytest.raises(ClientRequestException) as refused:
        await call("delete_provisioning_template", DeleteProvisioningTemplateRequest(template_id=template_id))
    assert refused.value.status_code == 400 and refused.value.error_code == "IOTDA.014303"
    await call("delete_certificate", DeleteCertificateRequest(certificate_id=added.certificate_id))
    await call("delete_provisioning_template", DeleteProvisioningTemplateRequest(template_id=template_id))
    with pytest.raises(ClientRequestException) as missing:
        await call("show_provisioning_template", ShowProvisioningTemplateRequest(template_id=template_id))
    assert missing.value.status_code == 404 and missing.value.error_code == "IOTDA.000005"


async def test_a_wrong_secret_key_is_refused(gateway, management_url, tenant) -> None:
    ak, _ = await gateway.services.projects.create_access_key(tenant.project_id)
    sdk = client(management_url, tenant.project_id, ak, "not-the-secret")
    with pytest.raises(ClientRequestException) as refused:
        await asyncio.to_thread(sdk.list_provisioning_templates, ListProvisioningTemplatesRequest())
    assert refused.value.status_code == 401 and refused.value.error_code == "IOTDA.000002"


async def test_the_sdk_drives_an_iotda_device(gateway, management_url, tenant, mqtt_port, clients) -> None:
    """AddDevice, then a device speaking IoTDA's MQTT contract (paho, tests/iotda_support.py) answers
    CreateCommand and UpdateProperties, takes CreateMessage, and shows in ShowDeviceShadow."""
    ak, sk = await gateway.services.projects.create_access_key(tenant.project_id)
    sdk = client(management_url, tenant.project_id, ak, sk)

    def call(method, request):
        return asyncio.to_thread(getattr(sdk, method), request)

    added = await call("add_device", AddDeviceRequest(body=AddDevice(
        node_id="sdk-node", device_name="sdk-node", product_id=tenant.product_id,
        auth_info=AuthInfo(auth_type="SECRET", secret="SdkSecret_0001", secure_access=False))))
    assert added.status_code == 201 and added.device_id == f"{tenant.product_id}_sdk-node"
    assert added.auth_info.auth_type == "SECRET" and added.auth_info.secret == "SdkSecret_0001"
    device_id = added.device_id
    device, reason = await connect(clients, mqtt_port, device_id, "SdkSecret_0001")
    assert reason == 0
    await device.publish(topic(device_id, "properties/report"), report("Meter", {"power": 12.5}))

    commanded = asyncio.create_task(call("create_command", CreateCommandRequest(
        device_id=device_id, body=DeviceCommandRequest(service_id="Meter", command_name="RESET", paras={"n": 1}))))
    message = await device.next_message()
    assert orjson.loads(message.payload)["command_name"] == "RESET"
    await device.publish(topic(device_id, f"commands/response/request_id={request_id_of(message.topic)}"),
                         orjson.dumps({"result_code": 0, "response_name": "RESET", "paras": {"done": True}}))
    response = await commanded
    assert response.command_id == request_id_of(message.topic)
    assert response.response == {"result_code": 0, "response_name": "RESET", "paras": {"done": True}}

    setting = asyncio.create_task(call("update_properties", UpdatePropertiesRequest(
        device_id=device_id, body=DevicePropertiesRequest(services=[
            {"service_id": "Meter", "properties": {"interval": 5}}]))))
    message = await device.next_message()
    assert message.topic.startswith(topic(device_id, "properties/set/request_id="))
    await device.publish(topic(device_id, f"properties/set/response/request_id={request_id_of(message.topic)}"),
                         orjson.dumps({"result_code": 0, "result_desc": "Success"}))
    assert (await setting).response == {"result_code": 0, "result_desc": "Success"}

    sent = await call("create_message", CreateMessageRequest(
        device_id=device_id, body=DeviceMessageRequest(message_id="sdk-m1", name="note", message="hello")))
    assert sent.status_code == 201 and sent.message_id == "sdk-m1" and sent.result.status == "PENDING"
    message = await device.next_message()
    assert message.topic == topic(device_id, "messages/down")
    assert orjson.loads(message.payload)["content"] == "hello"

    shadow = await call("show_device_shadow", ShowDeviceShadowRequest(device_id=device_id))
    assert shadow.device_id == device_id
    (meter,) = shadow.shadow
    assert meter.service_id == "Meter" and meter.reported.properties == {"power": 12.5}
