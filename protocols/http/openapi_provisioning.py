"""The OpenAPI entries of the provisioning templates and device CA certificates
(protocols.http.openapi merges them into /openapi.json)."""

from __future__ import annotations

from typing import Any

from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import ref as _ref

_TIME = {"type": "string", "description": "UTC, yyyyMMdd'T'HHmmss'Z'", "examples": ["20230810T070547Z"]}
_STRING = {"type": "string"}
_NULLABLE = {"type": ["string", "null"]}
_BOOL = {"type": "boolean"}


# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", "/provisioning-templates", "Create a provisioning template (IoTDA)",
     {"body": "TemplateCreate", "status": 201, "returns": "Template", "errors": (409,),
      "description": "At most max_templates_per_project per project (else 400 IOTDA.014301); names are unique "
                     "(409 IOTDA.014302). allow_certificate_rotation is this gateway's extension."}),
    ("GET", "/provisioning-templates", "List provisioning templates, newest first",
     {"query": ("limit", "marker", "offset", "template_name"), "returns": "TemplateList"}),
    ("GET", "/provisioning-templates/{template_id}", "Show a provisioning template", {"returns": "Template"}),
    ("PUT", "/provisioning-templates/{template_id}", "Change a template's description and body",
     {"body": "TemplateUpdate", "returns": "Template"}),
    ("DELETE", "/provisioning-templates/{template_id}", "Delete a template no CA is bound to",
     {"status": 204, "description": "400 IOTDA.014303 while a device CA certificate is bound to it."}),
    ("POST", "/provisioning-templates/{template_id}/evaluate", "Dry run: the device a certificate would register",
     {"body": "EvaluateRequest", "returns": "EvaluateResponse"}),
    ("POST", "/certificates", "Upload a device CA certificate (IoTDA)",
     {"body": "CertificateUpload", "status": 201, "returns": "Certificate", "errors": (409,)}),
    ("GET", "/certificates", "List device CA certificates, newest first",
     {"query": ("limit", "marker", "offset"), "returns": "CertificateList"}),
    ("GET", "/certificates/{certificate_id}", "Show a device CA certificate", {"returns": "Certificate"}),
    ("PUT", "/certificates/{certificate_id}", "Bind a template and enable provisioning; template_id null unbinds",
     {"body": "CertificateUpdate", "returns": "Certificate"}),
    ("DELETE", "/certificates/{certificate_id}", "Delete a device CA certificate", {"status": 204}),
    ("POST", "/certificates/{certificate_id}/action", "Prove possession of the CA's key (action_id=verify)",
     {"query": ("action_id",), "body": "CertificateVerify",
      "description": "verify_content: a certificate the CA signed whose CN is the verify_code "
                     "(else 400 IOTDA.014305)."}),
    ("PUT", "/certificates/{certificate_id}/crl", "Upload the CA's certificate revocation list",
     {"body": "CrlUpload", "returns": "Certificate"}),
    ("PUT", "/products/{product_id}/x509-chain", "ThingsBoard's X.509 chain strategy for a product",
     {"body": "X509Chain", "returns": "X509ChainState", "errors": (409,),
      "description": "Devices presenting a chain to this certificate are created (device name = group 1 of "
                     "certificate_regex on the CN) or, when a device of that name exists in the product, have "
                     "their certificate rotated."}),
    ("DELETE", "/products/{product_id}/x509-chain", "Remove a product's X.509 chain certificate", {"status": 204}),
)

_PARAMETER = _object("type", type={"type": "string", "enum": ["String"]})
_VALUE_OR_REF = {"oneOf": [_STRING, _object("ref", ref=_STRING)]}
SCHEMAS: dict[str, Any] = {
    "TemplateBody": _object(
        "resources",
        parameters={"type": "object", "additionalProperties": _PARAMETER},
        resources=_object("device", device=_object(
            "node_id", "product_id", device_name=_object("ref", ref=_STRING), device_id=_object("ref", ref=_STRING),
            node_id=_object("ref", ref=_STRING), product_id=_VALUE_OR_REF,
            tags={"type": "array", "items": _object("tag_key", "tag_value", tag_key=_VALUE_OR_REF,
                                                    tag_value=_VALUE_OR_REF)}),
            policy=_object(policy_ids={"type": "array", "items": _STRING})),
    ),
    "TemplateCreate": _object("template_name", "template_body", template_name={"type": "string", "maxLength": 128},
                              description={"type": "string", "maxLength": 2048},
                              template_body=_ref("TemplateBody"), allow_certificate_rotation=_BOOL),
    "TemplateUpdate": _object(description={"type": "string", "maxLength": 2048}, template_body=_ref("TemplateBody"),
                              allow_certificate_rotation=_BOOL),
    "Template": _object("template_id", "template_name", "description", "template_body", "create_time",
                        "update_time", template_id=_STRING, template_name=_STRING, description=_STRING,
                        template_body=_ref("TemplateBody"), create_time=_TIME, update_time=_TIME),
    "TemplateList": _object("templates", "page", templates={"type": "array", "items": _object(
        template_id=_STRING, template_name=_STRING, description=_STRING, create_time=_TIME, update_time=_TIME)},
        page=_ref("Page")),
    "EvaluateRequest": _object("certificate", certificate={"type": "string", "description": "A device certificate, PEM"}),
    "EvaluateResponse": _object("allowed", allowed=_BOOL, action={"type": "string", "enum": ["CREATED", "ROTATED"]},
                                reason=_STRING, detail=_STRING, device={"type": "object"}, certificate_id=_STRING,
                                fingerprint=_STRING),
    "CertificateUpload": _object("content", content={"type": "string", "description": "The CA certificate, PEM"},
                                 app_id=_STRING),
    "CertificateUpdate": _object(provision_enable=_BOOL, template_id=_NULLABLE, ocsp_enable=_BOOL,
                                 ocsp_ssl_enable=_BOOL, ocsp_server_ca_id=_NULLABLE),
    "CertificateVerify": _object("verify_content", verify_content=_STRING),
    "CrlUpload": _object("crl", crl={"type": "string", "description": "A CRL signed by the CA, PEM"}),
    "Certificate": _object(
        "certificate_id", "cn_name", "owner", "status", "verify_code", "provision_enable", "template_id",
        "create_date", "effective_date", "expiry_date",
        certificate_id=_STRING, cn_name=_STRING, owner=_STRING,
        status={"type": "boolean", "description": "Verified"}, verify_code=_STRING, provision_enable=_BOOL,
        template_id=_NULLABLE, ocsp_enable=_BOOL, ocsp_server_ca_id=_NULLABLE, ocsp_ssl_enable=_BOOL,
        create_date=_TIME, effective_date=_TIME, expiry_date=_TIME, crl_uploaded=_BOOL),
    "X509Chain": _object("certificate", certificate=_STRING,
                         certificate_regex={"type": "string", "default": "(.*)"},
                         allow_create_new_devices={"type": "boolean", "default": True}),
    "X509ChainState": _object(product_id=_STRING, certificate_id=_STRING, cn_name=_STRING,
                              certificate_regex=_STRING, allow_create_new_devices=_BOOL, expiry_date=_TIME),
    "CertificateList": _object("certificates", "page", certificates={"type": "array", "items": _ref("Certificate")},
                               page=_ref("Page")),
}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": _STRING}


PARAMETERS: dict[str, Any] = {
    "template_id": _path("template_id", "A provisioning template of the project"),
    "certificate_id": _path("certificate_id", "A device CA certificate of the project"),
    "template_name": {"name": "template_name", "in": "query", "required": False, "schema": _STRING,
                      "description": "Only the template with this name"},
    "action_id": {"name": "action_id", "in": "query", "required": True, "schema": {"type": "string", "enum": ["verify"]},
                  "description": "verify"},
}
