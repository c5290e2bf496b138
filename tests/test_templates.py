"""Unit tests of gateway/templates.py: IoTDA provisioning template bodies validated into a plan,
and the plan rendered from a certificate's subject into the device it makes (spec 1.2, 1.5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fleetgate.core import pki as core_pki
from fleetgate.core import templates
from fleetgate.core.errors import InvalidInput
from fleetgate.core.templates import Plan, Ref, RenderedDevice, RenderError, Static
from tests import pki
from tests.template_bodies import SEED_BODY, SEED_BODY_2

P = "iotda::certificate::"
C, O, OU, DNQ, ST, CN, SN = (P + n for n in ("country", "organization", "organizational_unit",
                                              "distinguished_name_qualifier", "state_name", "common_name",
                                              "serial_number"))
POLICY = "5c90fa7d3c4e4405e8525079"
# A subject carrying all seven parameters, as pki.subject_parameters reads it.
SUBJECT = {C: "CN", O: "Acme", OU: "Meters", DNQ: "q1", ST: "Zhejiang", CN: "meter-1", SN: "s1"}


def seed() -> dict[str, Any]:
    """The seed document's first template body, a copy to change."""
    return copy.deepcopy(SEED_BODY["template_body"])


def with_device(**changes: Any) -> dict[str, Any]:
    body = seed()
    body["resources"]["device"].update(changes)
    return body


def refusal(body: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        templates.compile_body(body)
    return caught.value.message


def render(body: dict[str, Any], subject: dict[str, str] = SUBJECT) -> RenderedDevice:
    return templates.render(templates.compile_body(body), subject)


def render_refusal(body: dict[str, Any], subject: dict[str, str] = SUBJECT) -> tuple[str, str]:
    with pytest.raises(RenderError) as caught:
        render(body, subject)
    assert str(caught.value) == caught.value.detail
    return caught.value.reason, caught.value.detail


# --- compiling the seed document's examples ---------------------------------------------------


def test_the_first_seed_example_compiles_to_references():
    assert templates.compile_body(seed()) == Plan(
        parameters=(C, O, OU, DNQ, ST, CN, SN),
        node_id=Ref(CN),
        product_id=Ref(O),
        device_name=Ref(O),
        device_id=None,
        tags=((Ref(O), Ref(OU)),),
        policy_ids=(POLICY,),
    )


def test_the_second_seed_example_has_a_static_product_and_static_tags():
    plan = templates.compile_body(SEED_BODY_2["template_body"])
    assert plan.product_id == Static("642bf260f2f9030e44210d8d")
    assert plan.tags == ((Static("myTagKey"), Static("myTagValue")),)


def test_only_node_id_and_product_id_are_required():
    body = {"parameters": {CN: {"type": "String"}},
            "resources": {"device": {"node_id": {"ref": CN}, "product_id": "p1"}}}
    assert templates.compile_body(body) == Plan((CN,), Ref(CN), Static("p1"), None, None, (), ())


def test_null_optional_fields_are_as_if_absent():
    body = with_device(device_name=None, device_id=None, tags=None, extra=None)
    body["resources"]["policy"] = None
    plan = templates.compile_body(body)
    assert (plan.device_name, plan.device_id, plan.tags, plan.policy_ids) == (None, None, (), ())


def test_a_device_id_reference_is_kept():
    assert templates.compile_body(with_device(device_id={"ref": SN})).device_id == Ref(SN)


def test_an_empty_policy_list_binds_no_policy():
    body = seed()
    body["resources"]["policy"] = {"policy_ids": []}
    assert templates.compile_body(body).policy_ids == ()


# --- compiling: each rule, with the message naming it --------------------------------------------


def test_every_subject_parameter_is_supported_and_nothing_else():
    assert list(core_pki.SUBJECT_PARAMETERS) == [C, O, OU, DNQ, ST, CN, SN]
    body = seed()
    body["parameters"][P + "locality"] = {"type": "String"}
    assert refusal(body) == (
        f"template_body.parameters: {P}locality is not supported; the parameters are "
        f"{C}, {O}, {OU}, {DNQ}, {ST}, {CN}, {SN}")


@pytest.mark.parametrize("spec", [{"type": "Integer"}, {"type": "String", "default": "x"}, {}, "String", None])
def test_a_parameter_is_a_string_and_nothing_more(spec):
    body = seed()
    body["parameters"][CN] = spec
    assert refusal(body) == f'template_body.parameters.{CN} must be {{"type": "String"}}: only String is supported'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "template_body must be a JSON object"),
        ({"parameters": [], "resources": {}}, "template_body.parameters must be a JSON object"),
        ({"parameters": {}}, "template_body.resources must be a JSON object"),
        ({"resources": {"device": {}, "thing": {}}}, "template_body.resources has unknown fields: thing"),
        ({"resources": {"policy": {}}}, "template_body.resources.device must be a JSON object"),
        ({"resources": {"device": {"node_id": {"ref": CN}, "product_id": "p", "label": "x", "group": "y"}}},
         "template_body.resources.device has unknown fields: group, label"),
        ({"resources": {"device": {"product_id": "p"}}}, "template_body.resources.device.node_id is required"),
        ({"parameters": {CN: {"type": "String"}}, "resources": {"device": {"node_id": {"ref": CN}}}},
         "template_body.resources.device.product_id is required"),
    ],
)
def test_the_shape_of_a_body(body, message):
    assert refusal(body) == message


def test_every_reference_names_a_declared_parameter():
    body = seed()
    del body["parameters"][OU]
    assert refusal(body) == (f"template_body.resources.device.tags[0].tag_value refers to {OU}, "
                             "which is not a declared parameter")
    assert refusal({"resources": {"device": {"node_id": {"ref": CN}, "product_id": "p"}}}) == (
        f"template_body.resources.device.node_id refers to {CN}, which is not a declared parameter")


@pytest.mark.parametrize("field", ["node_id", "device_name", "device_id"])
@pytest.mark.parametrize("value", ["meter-1", {"ref": CN, "default": "x"}, {"ref": 1}, {"Ref": CN}])
def test_node_id_device_name_and_device_id_are_references_only(field, value):
    assert refusal(with_device(**{field: value})) == (
        f'template_body.resources.device.{field} must be a parameter reference {{"ref": "<parameter>"}}')


@pytest.mark.parametrize("product_id", ["x" * 37, "has space", "产品", ""])
def test_a_static_product_id_is_at_most_36_letters_digits_underscores_and_hyphens(product_id):
    assert refusal(with_device(product_id=product_id)) == (
        "template_body.resources.device.product_id must be at most 36 letters, digits, _ and -")


def test_a_static_product_id_of_36_characters_is_accepted():
    assert templates.compile_body(with_device(product_id="a_B-9" + "x" * 31)).product_id == Static("a_B-9" + "x" * 31)


@pytest.mark.parametrize("product_id", [7, ["p"], True])
def test_a_product_id_is_a_string_or_a_reference(product_id):
    assert refusal(with_device(product_id=product_id)) == (
        'template_body.resources.device.product_id must be a string or a parameter reference {"ref": "<parameter>"}')


def test_at_most_ten_tags():
    tag = {"tag_key": "k", "tag_value": "v"}
    assert len(templates.compile_body(with_device(tags=[tag] * 10)).tags) == 10
    assert refusal(with_device(tags=[tag] * 11)) == (
        "template_body.resources.device.tags must be a list of at most 10 tags")
    assert refusal(with_device(tags={"k": "v"})) == (
        "template_body.resources.device.tags must be a list of at most 10 tags")


@pytest.mark.parametrize("tag", [{"tag_key": "k"}, {"tag_key": "k", "tag_value": "v", "x": 1}, ["k", "v"]])
def test_a_tag_is_a_key_and_a_value(tag):
    assert refusal(with_device(tags=[{"tag_key": "a", "tag_value": "b"}, tag])) == (
        "template_body.resources.device.tags[1] must be {tag_key, tag_value}")


def test_static_tags_follow_iotdas_character_sets_and_lengths():
    cjk = "\u4e2d\u6587"
    assert templates.compile_body(with_device(tags=[{"tag_key": "k" * 64, "tag_value": cjk + "._-v" * 31}])).tags
    assert refusal(with_device(tags=[{"tag_key": "k" * 65, "tag_value": "v"}])) == (
        "template_body.resources.device.tags[0].tag_key must be at most 64 characters: "
        "Chinese characters, letters, digits and _.-")
    assert refusal(with_device(tags=[{"tag_key": "k", "tag_value": "v" * 129}])) == (
        "template_body.resources.device.tags[0].tag_value must be at most 128 characters: "
        "Chinese characters, letters, digits and _.-")
    assert refusal(with_device(tags=[{"tag_key": "k", "tag_value": "a b"}])) == (
        "template_body.resources.device.tags[0].tag_value must be at most 128 characters: "
        "Chinese characters, letters, digits and _.-")


@pytest.mark.parametrize(
    "policy",
    [[POLICY], {"policy_ids": [POLICY], "other": 1}, {"policy_ids": POLICY}, {"policy_ids": ["p"] * 11},
     {"policy_ids": ["x" * 65]}, {"policy_ids": ["a b"]}, {"policy_ids": [7]}],
)
def test_policies(policy):
    body = seed()
    body["resources"]["policy"] = policy
    shape = not isinstance(policy, dict) or set(policy) != {"policy_ids"}
    expected = ("template_body.resources.policy must be {policy_ids}" if shape else
                "template_body.resources.policy.policy_ids must be at most 10 ids of "
                "at most 64 letters, digits, _ and -")
    assert refusal(body) == expected


# --- template names and descriptions ------------------------------------------------------------


@pytest.mark.parametrize("name", ["myTemplate", "a", "x" * 128, "t_1-2", "\u6a21\u677f"],
                         ids=["seed", "one", "128", "underscore-hyphen", "chinese"])
def test_template_names_accepted(name):
    assert templates.check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 129, "my template", "a.b", None, 7],
                         ids=["empty", "129", "space", "dot", "null", "number"])
def test_template_names_refused(name):
    with pytest.raises(InvalidInput) as caught:
        templates.check_name(name)
    assert caught.value.message == (
        "template_name must be 1 to 128 characters: Chinese characters, letters, digits, _ and -")


@pytest.mark.parametrize(("description", "kept"), [(None, ""), ("", ""), ("Why?'#().,&%@!-_x", "Why?'#().,&%@!-_x"),
                                                   ("d" * 2048, "d" * 2048)],
                         ids=["null", "empty", "punctuation", "2048"])
def test_descriptions_accepted(description, kept):
    assert templates.check_description(description) == kept


@pytest.mark.parametrize("description", ["has a space", "d" * 2049, "semi;colon", 7],
                         ids=["space", "2049", "semicolon", "number"])
def test_descriptions_refused(description):
    with pytest.raises(InvalidInput) as caught:
        templates.check_description(description)
    assert caught.value.message == ("description must be at most 2048 characters: Chinese characters, letters, "
                                    "digits and _?'#().,&%@!-")


# --- rendering -----------------------------------------------------------------------------------


def test_the_seed_example_renders_the_device_from_the_subject():
    assert render(seed()) == RenderedDevice(
        device_id="Acme_meter-1", device_name="Acme", node_id="meter-1", product_id="Acme",
        tags=(("Acme", "Meters"),), policy_ids=(POLICY,))


def test_rendered_from_a_real_certificates_subject():
    ca = pki.ca("Template CA")
    leaf = pki.leaf(ca, C="CN", O="Acme", OU="Meters", dnQualifier="q1", ST="Zhejiang", CN="meter-1",
                    serialNumber="s1")
    plan = templates.compile_body(SEED_BODY_2["template_body"])
    assert templates.render(plan, core_pki.subject_parameters(leaf.certificate)) == RenderedDevice(
        device_id="642bf260f2f9030e44210d8d_meter-1", device_name="Acme", node_id="meter-1",
        product_id="642bf260f2f9030e44210d8d", tags=(("myTagKey", "myTagValue"),), policy_ids=(POLICY,))


def test_the_device_id_is_product_underscore_node_unless_the_template_names_it():
    assert render(with_device(product_id="prod")).device_id == "prod_meter-1"
    assert render(with_device(product_id="prod", device_id={"ref": SN})).device_id == "s1"


def test_the_device_name_is_the_node_id_unless_the_template_names_it():
    body = with_device(product_id="prod")
    del body["resources"]["device"]["device_name"]
    assert render(body).device_name == "meter-1"


def test_a_device_name_may_hold_what_an_id_may_not():
    subject = dict(SUBJECT, **{OU: "Meters & Pumps, \u4e2d\u6587"})
    assert render(with_device(product_id="prod", device_name={"ref": OU}, tags=[]), subject).device_name == (
        "Meters & Pumps, \u4e2d\u6587")


@pytest.mark.parametrize(("missing", "abbreviation"),
                         [(C, "C"), (ST, "ST"), (DNQ, "dnQualifier"), (SN, "serialNumber")])
def test_every_declared_parameter_must_be_in_the_subject_even_one_never_referenced(missing, abbreviation):
    subject = {k: v for k, v in SUBJECT.items() if k != missing}
    assert render_refusal(seed(), subject) == (
        "MISSING_PARAMETER", f"the certificate has no {missing} (subject {abbreviation})")


def test_an_empty_subject_attribute_counts_as_missing():
    assert render_refusal(seed(), dict(SUBJECT, **{OU: ""})) == (
        "MISSING_PARAMETER", f"the certificate has no {OU} (subject OU)")


def test_undeclared_subject_fields_are_ignored():
    body = {"parameters": {CN: {"type": "String"}},
            "resources": {"device": {"node_id": {"ref": CN}, "product_id": "p"}}}
    assert templates.render(templates.compile_body(body), {CN: "n1"}) == RenderedDevice("p_n1", "n1", "n1", "p", (), ())


@pytest.mark.parametrize(
    ("changes", "subject_changes", "detail"),
    [
        ({}, {CN: "meter 1"}, "the rendered node_id 'meter 1' is not at most 64 letters, digits, _ and -"),
        ({}, {CN: "n" * 65}, f"the rendered node_id '{'n' * 65}' is not at most 64 letters, digits, _ and -"),
        ({}, {O: "Acme Inc"}, "the rendered product_id 'Acme Inc' is not at most 36 letters, digits, _ and -"),
        ({"device_id": {"ref": SN}}, {SN: "s.1"},
         "the rendered device_id 's.1' is not at most 128 letters, digits, _ and -"),
        ({"product_id": "p", "device_id": {"ref": SN}}, {SN: "s" * 129},
         f"the rendered device_id '{'s' * 129}' is not at most 128 letters, digits, _ and -"),
        ({"product_id": "p"}, {O: "a\tb"}, "the rendered device_name must be 1 to 256 characters"),
        ({"product_id": "p", "tags": [{"tag_key": {"ref": OU}, "tag_value": "v"}]}, {OU: "a b"},
         "the rendered tag_key 'a b' is not at most 64 characters: Chinese characters, letters, digits and _.-"),
        ({"product_id": "p", "tags": [{"tag_key": "k", "tag_value": {"ref": OU}}]}, {OU: "v" * 129},
         f"the rendered tag_value '{'v' * 129}' is not at most 128 characters: "
         "Chinese characters, letters, digits and _.-"),
    ],
    ids=["node-id-space", "node-id-long", "product-id", "device-id-dot", "device-id-long", "device-name-control",
         "tag-key", "tag-value"],
)
def test_a_rendered_value_invalid_for_a_device_is_refused(changes, subject_changes, detail):
    assert render_refusal(with_device(**changes), dict(SUBJECT, **subject_changes)) == ("INVALID_VALUE", detail)


def test_a_device_name_of_256_characters_is_the_longest():
    body = with_device(product_id="p", device_name={"ref": OU}, tags=[])
    assert len(render(body, dict(SUBJECT, **{OU: "n" * 256})).device_name) == 256
    assert render_refusal(body, dict(SUBJECT, **{OU: "n" * 257})) == (
        "INVALID_VALUE", "the rendered device_name must be 1 to 256 characters")
