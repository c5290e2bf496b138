"""fleetgate: an asyncio IoT gateway (ThingsBoard's and Huawei IoTDA's device APIs, PostgreSQL storage).

The package's layers: ``fleetgate.core`` (protocol-neutral), ``fleetgate.protocols`` (the
front-ends), ``fleetgate.storage`` (PostgreSQL), ``fleetgate.simulator`` (the device simulator and
``bench``); the modules directly in this package are the composition root that wires them.
"""
