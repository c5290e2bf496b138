"""The MQTT front-end: the project's own MQTT 3.1.1 and 5.0 device transport (see design.md)."""
