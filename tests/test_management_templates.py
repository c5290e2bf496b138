"""/v5/iot/{project_id}/provisioning-templates: IoTDA's bodies, validation, errors, paging, quota."""

from __future__ import annotations

import copy
import re

import pytest

from tests.management_client import assert_error
from tests.template_bodies import SEED_BODY, SEED_BODY_2, body

TIME = re.compile(r"^\d{8}T\d{6}Z$")


async def test_create_answers_201_with_the_seed_shape(api) -> None:
    reply = await api.call("POST", "/provisioning-templates", json=SEED_BODY, )
    assert reply.status == 201, reply
    assert set(reply.body) == {"template_id", "template_name", "description", "template_body", "create_time",
                               "update_time"}
    assert re.fullmatch(r"[0-9a-f]{24}", reply.body["template_id"])
    assert reply.body["template_name"] == "myTemplate" and reply.body["description"] == "myTemplate"
    assert reply.body["template_body"] == SEED_BODY["template_body"]
    assert TIME.match(reply.body["create_time"]) and reply.body["create_time"] == reply.body["update_time"]
    second = await api.call("POST", "/provisioning-templates", json=SEED_BODY_2)
    assert second.status == 201, second
    shown = await api.call("GET", f"/provisioning-templates/{reply.body['template_id']}")
    assert shown.status == 200 and shown.body == reply.body


async def test_instance_id_is_accepted(api) -> None:
    async with api.http.post(f"/v5/iot/{api.tenant.project_id}/provisioning-templates", json=body("inst"),
                             headers={"X-Auth-Token": api.tenant.token, "Instance-Id": "abc"}) as resp:
        assert resp.status == 201


@pytest.mark.parametrize("change, message_part", [
    ({"template_name": "bad name"}, "template_name"),
    ({"template_name": "x" * 129}, "template_name"),
    ({"template_name": ""}, "template_name"),
    ({"template_name": None}, "template_name"),
    ({"description": "has a space"}, "description"),
    ({"description": "x" * 2049}, "description"),
    ({"template_body": None}, "template_body"),
])
async def test_names_and_descriptions_are_checked(api, change, message_part) -> None:
    reply = await api.call("POST", "/provisioning-templates", json={**body(), **change})
    assert_error(reply, 400, "IOTDA.000006")
    assert message_part in reply.body["error_msg"]


async def test_chinese_names_and_the_description_set_are_allowed(api) -> None:
    reply = await api.call("POST", "/provisioning-templates",
                           json={**body("模板_a-1"), "description": "描述_?'#().,&%@!-abc"})
    assert reply.status == 201, reply
    assert len("x" * 128) == 128
    assert (await api.call("POST", "/provisioning-templates", json=body("y" * 128))).status == 201


def _with_body(mutate) -> dict:
    b = body("bad")
    mutate(b["template_body"])
    return b


@pytest.mark.parametrize("mutate, message_part", [
    (lambda t: t["parameters"].update({"iotda::certificate::locality": {"type": "String"}}), "not supported"),
    (lambda t: t["parameters"].update({"iotda::certificate::country": {"type": "Integer"}}), "String"),
    (lambda t: t["resources"]["device"].update({"node_id": {"ref": "iotda::certificate::undeclared"}}), "declared"),
    (lambda t: t["parameters"].pop("iotda::certificate::common_name"), "declared"),
    (lambda t: t["resources"]["device"].pop("node_id"), "node_id is required"),
    (lambda t: t["resources"]["device"].pop("product_id"), "product_id is required"),
    (lambda t: t["resources"]["device"].update({"product_id": "x" * 37}), "product_id"),
    (lambda t: t["resources"]["device"].update({"product_id": "bad id"}), "product_id"),
    (lambda t: t["resources"]["device"].update({"node_id": "static"}), "node_id"),
    (lambda t: t["resources"]["device"].update({"tags": [{"tag_key": "k" * 65, "tag_value": "v"}]}), "tag_key"),
    (lambda t: t["resources"]["device"].update({"tags": [{"tag_key": "k", "tag_value": "v" * 129}]}), "tag_value"),
    (lambda t: t["resources"]["device"].update({"tags": [{"tag_key": "a b", "tag_value": "v"}]}), "tag_key"),
    (lambda t: t["resources"]["device"].update({"tags": [{"tag_key": {"ref": "nope"}, "tag_value": "v"}]}),
     "declared"),
    (lambda t: t["resources"].pop("device"), "device"),
    (lambda t: t["resources"]["policy"].update({"policy_ids": "p"}), "policy_ids"),
])
async def test_template_bodies_are_validated_as_iotda_does(api, mutate, message_part) -> None:
    reply = await api.call("POST", "/provisioning-templates", json=_with_body(mutate))
    assert_error(reply, 400, "IOTDA.000006")
    assert message_part in reply.body["error_msg"], reply.body


async def test_static_values_at_their_limits_are_accepted(api) -> None:
    b = body("limits", product_id="p" * 36, tags=[{"tag_key": "键" * 64, "tag_value": "v._-" * 32}])
    assert (await api.call("POST", "/provisioning-templates", json=b)).status == 201


async def test_malformed_json_is_iotda_000008(api) -> None:
    assert_error(await api.call("POST", "/provisioning-templates", data=b"{"), 400, "IOTDA.000008")


async def test_names_are_unique_in_a_project(api) -> None:
    assert (await api.call("POST", "/provisioning-templates", json=body("dup"))).status == 201
    assert_error(await api.call("POST", "/provisioning-templates", json=body("dup")), 409, "IOTDA.014302")


async def test_a_project_has_at_most_ten_templates(api) -> None:
    for i in range(10):
        assert (await api.call("POST", "/provisioning-templates", json=body(f"q{i}"))).status == 201
    assert_error(await api.call("POST", "/provisioning-templates", json=body("q10")), 400, "IOTDA.014301",
                 "A project can have at most 10 provisioning templates")


async def test_list_pages_newest_first_with_marker_offset_and_name(api) -> None:
    ids = []
    for i in range(5):
        ids.append((await api.call("POST", "/provisioning-templates", json=body(f"l{i}"))).body["template_id"])
    ids.reverse()
    first = await api.call("GET", "/provisioning-templates", params={"limit": 2})
    assert first.status == 200
    assert [t["template_id"] for t in first.body["templates"]] == ids[:2]
    assert first.body["page"] == {"count": 5, "marker": ids[1]}
    assert set(first.body["templates"][0]) == {"template_id", "template_name", "description", "create_time",
                                               "update_time"}
    second = await api.call("GET", "/provisioning-templates", params={"limit": 2, "marker": ids[1]})
    assert [t["template_id"] for t in second.body["templates"]] == ids[2:4]
    skipped = await api.call("GET", "/provisioning-templates", params={"offset": 3})
    assert [t["template_id"] for t in skipped.body["templates"]] == ids[3:]
    default = await api.call("GET", "/provisioning-templates")
    assert len(default.body["templates"]) == 5
    named = await api.call("GET", "/provisioning-templates", params={"template_name": "l3"})
    assert [t["template_name"] for t in named.body["templates"]] == ["l3"] and named.body["page"]["count"] == 1


@pytest.mark.parametrize("params, code", [
    ({"limit": 0}, "IOTDA.000017"), ({"limit": 51}, "IOTDA.000017"), ({"offset": 501}, "IOTDA.000018"),
    ({"offset": -1}, "IOTDA.000018"), ({"marker": "xyz"}, "IOTDA.000006"),
])
async def test_list_parameters_out_of_range(api, params, code) -> None:
    assert_error(await api.call("GET", "/provisioning-templates", params=params), 400, code)


async def test_update_changes_description_and_body_only(api) -> None:
    created = (await api.call("POST", "/provisioning-templates", json=body("u1"))).body
    new_body = copy.deepcopy(SEED_BODY_2["template_body"])
    reply = await api.call("PUT", f"/provisioning-templates/{created['template_id']}",
                           json={"description": "changed", "template_body": new_body})
    assert reply.status == 200, reply
    assert reply.body["description"] == "changed" and reply.body["template_body"] == new_body
    assert reply.body["template_name"] == "u1" and reply.body["create_time"] == created["create_time"]
    renamed = await api.call("PUT", f"/provisioning-templates/{created['template_id']}", json={"template_name": "x"})
    assert_error(renamed, 400, "IOTDA.000006")
    bad = await api.call("PUT", f"/provisioning-templates/{created['template_id']}",
                         json={"template_body": {"resources": {"device": {}}}})
    assert_error(bad, 400, "IOTDA.000006")


async def test_show_update_delete_unknown_is_404(api) -> None:
    for method in ("GET", "PUT", "DELETE"):
        reply = await api.call(method, "/provisioning-templates/ffffffffffffffffffffff00",
                               json={"description": "x"} if method == "PUT" else None)
        assert_error(reply, 404, "IOTDA.000005")


async def test_delete_answers_204(api) -> None:
    created = (await api.call("POST", "/provisioning-templates", json=body("d1"))).body
    assert (await api.call("DELETE", f"/provisioning-templates/{created['template_id']}")).status == 204
    assert (await api.call("GET", f"/provisioning-templates/{created['template_id']}")).status == 404


async def test_tokens_are_required_and_scoped(api, gateway) -> None:
    assert_error(await api.call("GET", "/provisioning-templates", token=None), 401, "IOTDA.000002")
    from tests.support import new_tenant
    other = await new_tenant(gateway.services)
    assert_error(await api.call("GET", "/provisioning-templates", project_id=other.project_id), 403, "IOTDA.000004")
