"""Provisioning template bodies for the tests: IoTDA's two documented examples (seed document
004) and variations of the first."""

from __future__ import annotations

import copy
from typing import Any

PARAMS = ["country", "organization", "organizational_unit", "distinguished_name_qualifier", "state_name",
          "common_name", "serial_number"]

# The seed document's first request example, verbatim.
SEED_BODY = {
    "template_name": "myTemplate",
    "description": "myTemplate",
    "template_body": {
        "parameters": {f"iotda::certificate::{p}": {"type": "String"} for p in PARAMS},
        "resources": {
            "device": {
                "device_name": {"ref": "iotda::certificate::organization"},
                "node_id": {"ref": "iotda::certificate::common_name"},
                "product_id": {"ref": "iotda::certificate::organization"},
                "tags": [{"tag_key": {"ref": "iotda::certificate::organization"},
                          "tag_value": {"ref": "iotda::certificate::organizational_unit"}}],
            },
            "policy": {"policy_ids": ["5c90fa7d3c4e4405e8525079"]},
        },
    },
}
# The seed document's second example: a static product id and static tags.
SEED_BODY_2 = copy.deepcopy(SEED_BODY)
SEED_BODY_2["template_name"] = SEED_BODY_2["description"] = "myTemplate2"
SEED_BODY_2["template_body"]["resources"]["device"]["product_id"] = "642bf260f2f9030e44210d8d"
SEED_BODY_2["template_body"]["resources"]["device"]["tags"] = [{"tag_key": "myTagKey", "tag_value": "myTagValue"}]


def body(name: str = "t1", **device_changes: Any) -> dict[str, Any]:
    """The first example named ``name``, its device resources changed as given."""
    b = copy.deepcopy(SEED_BODY)
    b["template_name"] = name
    b["template_body"]["resources"]["device"].update(device_changes)
    return b
