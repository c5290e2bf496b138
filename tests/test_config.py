import pytest

from fleetgate import config
from fleetgate.config import ConfigError


def test_defaults_use_embedded_database() -> None:
    settings = config.load(environ={})
    assert settings.embedded_database
    assert (settings.http_port, settings.mqtt_port, settings.mqtts_port, settings.coap_port) == (8080, 1883, 8883, 5683)
    assert settings.ack == "stored"


def test_layers_override_in_order(tmp_path) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text('http_port = 9000\nmqtt_port = 9001\nack = "accepted"\n')
    settings = config.load(toml, environ={"GATEWAY_MQTT_PORT": "9002"}, overrides={"ack": "stored"})
    assert (settings.http_port, settings.mqtt_port, settings.ack) == (9000, 9002, "stored")


def test_gateway_table_and_config_variable(tmp_path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text('[gateway]\ndatabase_url = "postgresql://db/iot"\n')
    settings = config.load(environ={"GATEWAY_CONFIG": str(toml)})
    assert settings.database_url == "postgresql://db/iot"
    assert not settings.embedded_database


def test_port_zero_disables_and_empty_url_means_embedded() -> None:
    settings = config.load(environ={"GATEWAY_COAP_PORT": "0", "GATEWAY_DATABASE_URL": ""})
    assert settings.coap_port == 0
    assert settings.embedded_database


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GATEWAY_HTTP_PORT": "http"}, "setting 'http_port'"),
        ({"GATEWAY_HTTP_PORT": "65536"}, "setting 'http_port': must be at most 65535"),
        ({"GATEWAY_WRITERS": "0"}, "setting 'writers': must be at least 1"),
        ({"GATEWAY_ACK": "later"}, "setting 'ack': must be one of 'stored', 'accepted'"),
        ({"GATEWAY_HTTP_PROT": "1"}, "unknown setting GATEWAY_HTTP_PROT"),
    ],
)
def test_bad_values_name_the_key(environ, message) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(environ=environ)


def test_bad_toml_names_the_key_and_file(tmp_path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("htp_port = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'htp_port'"):
        config.load(toml, environ={})
    toml.write_text("http_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(toml, environ={})
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        config.load(tmp_path / "missing.toml", environ={})


def test_kubernetes_service_links_are_not_settings() -> None:
    settings = config.load(
        environ={"GATEWAY_SERVICE_HOST": "10.0.0.1", "GATEWAY_PORT": "tcp://10.0.0.1:1883",
                 "GATEWAY_PORT_1883_TCP_ADDR": "10.0.0.1"}
    )
    assert settings.http_port == 8080


def test_the_configuration_page_lists_every_setting() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert config.markdown_table() in page, (
        "regenerate docs/configuration.md's table with fleetgate.config.markdown_table()"
    )
