"""The HTTP front-end (aiohttp): ThingsBoard's device API and the IoTDA-shaped management API."""
