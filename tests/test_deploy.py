"""The deployment files: Kubernetes manifests valid, compose and Dockerfile naming only
settings, ports and files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from fleetgate import config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
SETTINGS = {env for _, env, _, _ in config.describe()}
DEFAULTS = config.Settings()
# Images compose pulls (no registry is reachable from the tests: these are the official names).
KNOWN_IMAGES = {"postgres:16", "prom/prometheus:v2.53.0", "grafana/grafana:11.1.0", "nats:2.10"}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_k8s() -> list[dict]:
    return [doc for path in MANIFESTS for doc in documents(path)]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_the_kinds_an_operator_needs_are_there() -> None:
    kinds = {doc["kind"] for doc in all_k8s()}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
            "HorizontalPodAutoscaler"} <= kinds
    deployment = next(doc for doc in all_k8s() if doc["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    configmap = next(doc for doc in all_k8s() if doc["kind"] == "ConfigMap")
    assert float(configmap["data"]["GATEWAY_SHUTDOWN_TIMEOUT_SECONDS"]) < grace


def test_services_expose_every_device_port() -> None:
    exposed = {(port["port"], port.get("protocol", "TCP"))
               for doc in all_k8s() if doc["kind"] == "Service" for port in doc["spec"]["ports"]}
    wanted = {(DEFAULTS.mqtt_port, "TCP"), (DEFAULTS.mqtts_port, "TCP"), (DEFAULTS.http_port, "TCP"),
              (DEFAULTS.https_port, "TCP"), (DEFAULTS.coap_port, "UDP")}
    assert wanted <= exposed


def gateway_variables_in_k8s() -> set[str]:
    names: set[str] = set()
    for doc in all_k8s():
        names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            names |= {env["name"] for env in container.get("env", [])}
    return {name for name in names if name.startswith("GATEWAY_")}


def test_compose_names_only_real_settings_images_and_files() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gateway", "postgres", "prometheus"} <= set(services)
    assert services["prometheus"]["profiles"] == ["monitoring"]
    gateway = services["gateway"]
    assert (DEPLOY / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
    for name, service in services.items():
        if "build" not in service:
            assert service["image"] in KNOWN_IMAGES, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), volume
            else:
                assert source in compose["volumes"], volume
    variables = {k for k in gateway["environment"] if k.startswith("GATEWAY_")}
    assert variables and variables <= SETTINGS, variables - SETTINGS
    config.load(environ={k: str(v) for k, v in gateway["environment"].items()})  # values valid too
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in services["postgres"]["volumes"])


def test_k8s_and_dockerfile_name_only_real_settings() -> None:
    k8s = gateway_variables_in_k8s()
    assert k8s and k8s <= SETTINGS, k8s - SETTINGS
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    in_dockerfile = set(re.findall(r"\bGATEWAY_[A-Z_]+", dockerfile))
    assert in_dockerfile <= SETTINGS, in_dockerfile - SETTINGS


def test_the_dockerfile_declares_every_port_a_user_and_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.lstrip().startswith("#") and re.search(r"^ARG PYTHON_IMAGE=", text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    exposed = set(" ".join(re.findall(r"^EXPOSE (.+)$", text, re.M)).split())
    ports = {f"{DEFAULTS.http_port}/tcp", f"{DEFAULTS.https_port}/tcp", f"{DEFAULTS.management_port}/tcp",
             f"{DEFAULTS.mqtt_port}/tcp", f"{DEFAULTS.mqtts_port}/tcp", f"{DEFAULTS.coap_port}/udp"}
    assert exposed == ports
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK .*healthz", text, re.M | re.S)


def test_prometheus_scrapes_the_management_port() -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"gateway:{DEFAULTS.management_port}"]


def test_the_replicas_profile_runs_two_gateways_over_a_nats_cluster() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    nats = {name for name, service in services.items() if service.get("image") == "nats:2.10"}
    assert len(nats) == 3 and all(services[name]["profiles"] == ["replicas"] for name in nats)
    replicas = {name for name, service in services.items()
                if "GATEWAY_NATS_URL" in service.get("environment", {})}
    assert len(replicas) == 2
    for name in replicas:
        environment = services[name]["environment"]
        assert services[name]["profiles"] == ["replicas"] and set(services[name]["depends_on"]) == {"postgres", *nats}
        assert {url.split("//")[1].split(":")[0] for url in environment["GATEWAY_NATS_URL"].split(",")} == nats
        assert set(environment) <= SETTINGS
        config.load(environ={k: str(v) for k, v in environment.items()})
    ports = [port.split(":")[0] for name in replicas for port in services[name]["ports"]]
    assert len(ports) == len(set(ports))  # each replica on its own host ports


def test_k8s_shows_the_nats_setting_and_the_image_has_the_extra() -> None:
    configmap = next(doc for doc in all_k8s() if doc["kind"] == "ConfigMap")
    assert configmap["data"]["GATEWAY_NATS_URL"].startswith("nats://")
    assert '"/src[nats]"' in (DEPLOY / "Dockerfile").read_text()
