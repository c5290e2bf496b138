"""The CoAP device transport (ThingsBoard device API, spec 1.5 and 3.5) on aiocoap."""
