import orjson

from tests.support import Tenant


async def test_provision_then_telemetry(http, tenant: Tenant, gateway):
    body = {"deviceName": "smoke-1", "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}
    async with http.post("/api/v1/provision", json=body) as resp:
        assert resp.status == 200
        result = orjson.loads(await resp.read())
    assert result["status"] == "SUCCESS"
    async with http.post(f"/api/v1/{result['credentialsValue']}/telemetry", data=b'{"t":1}') as resp:
        assert resp.status == 200
    count = await gateway.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN devices d ON d.id = t.device_id WHERE d.name = 'smoke-1' AND d.project_id = $1",
        tenant.project_id)
    assert count == 1
