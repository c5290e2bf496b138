"""huaweicloudsdkiotda, unchanged, manages forwarding rules: a device.property/report rule and its
HTTP action created, listed, deactivated and deleted (signing with an access key, as
tests/test_iotda_sdk.py does; the SDK's calls run in a thread)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("huaweicloudsdkiotda")

from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkiotda.v5 import (  # noqa: E402
    AddActionReq,
    AddRuleReq,
    ChannelDetail,
    CreateRoutingRuleRequest,
    CreateRuleActionRequest,
    DeleteRoutingRuleRequest,
    DeleteRuleActionRequest,
    HttpForwarding,
    IoTDAClient,
    ListRoutingRulesRequest,
    ListRuleActionsRequest,
    RoutingRuleSubject,
    ShowRoutingRuleRequest,
    UpdateRoutingRuleRequest,
    UpdateRuleReq,
)


async def test_the_sdk_manages_rules_and_actions(gateway, management_url, tenant) -> None:
    ak, sk = await gateway.services.projects.create_access_key(tenant.project_id)
    sdk = (IoTDAClient.new_builder().with_credentials(BasicCredentials(ak, sk, tenant.project_id))
           .with_endpoint(management_url).build())

    def call(method, request):
        return asyncio.to_thread(getattr(sdk, method), request)

    rule = await call("create_routing_rule", CreateRoutingRuleRequest(body=AddRuleReq(
        rule_name="sdkRule", description="via sdk", subject=RoutingRuleSubject(resource="device.property",
                                                                               event="report"),
        app_type="GLOBAL", where="notify_data.body.services[0].properties.temperature > 30")))
    assert rule.status_code == 201 and rule.rule_id and rule.rule_name == "sdkRule"
    assert (rule.subject.resource, rule.subject.event, rule.active) == ("device.property", "report", False)
    action = await call("create_rule_action", CreateRuleActionRequest(body=AddActionReq(
        rule_id=rule.rule_id, channel="HTTP_FORWARDING",
        channel_detail=ChannelDetail(http_forwarding=HttpForwarding(url="https://app.example.com/push")))))
    assert action.status_code == 201 and action.rule_id == rule.rule_id and action.channel == "HTTP_FORWARDING"
    assert action.channel_detail.http_forwarding.url == "https://app.example.com/push"

    active = await call("update_routing_rule", UpdateRoutingRuleRequest(rule_id=rule.rule_id,
                                                                        body=UpdateRuleReq(active=True)))
    assert active.active is True
    rules = await call("list_routing_rules", ListRoutingRulesRequest(resource="device.property", active=True))
    assert [r.rule_id for r in rules.rules] == [rule.rule_id] and rules.count == 1
    actions = await call("list_rule_actions", ListRuleActionsRequest(rule_id=rule.rule_id))
    assert [a.action_id for a in actions.actions] == [action.action_id] and actions.count == 1

    inactive = await call("update_routing_rule", UpdateRoutingRuleRequest(rule_id=rule.rule_id,
                                                                          body=UpdateRuleReq(active=False)))
    assert inactive.active is False
    shown = await call("show_routing_rule", ShowRoutingRuleRequest(rule_id=rule.rule_id))
    assert shown.active is False and shown.where == rule.where
    assert (await call("list_routing_rules", ListRoutingRulesRequest(active=True))).count == 0

    deleted = await call("delete_rule_action", DeleteRuleActionRequest(action_id=action.action_id))
    assert deleted.status_code == 204
    deleted = await call("delete_routing_rule", DeleteRoutingRuleRequest(rule_id=rule.rule_id))
    assert deleted.status_code == 204
    assert (await call("list_routing_rules", ListRoutingRulesRequest())).count == 0
    assert (await call("list_rule_actions", ListRuleActionsRequest())).count == 0
