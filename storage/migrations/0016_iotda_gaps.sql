-- Huawei IoTDA's device side, completed: messages down cached for their ttl, secure access,
-- and node ids.

-- A message down to a device that is not connected waits PENDING until it connects, at most
-- until expires_at (CreateMessage's ttl; then it is TIMEOUT). claimed_at: when a process took
-- it to send it, so that two processes holding the device do not both send it.
ALTER TABLE device_messages ADD COLUMN expires_at bigint, ADD COLUMN claimed_at bigint;
CREATE INDEX device_messages_pending_idx ON device_messages (device_id, created_at) WHERE status = 'PENDING';

-- AddDevice's auth_info.secure_access: a secret device that may connect over TLS only.
ALTER TABLE device_credentials ADD COLUMN secure_access boolean NOT NULL DEFAULT false;

-- AddDevice's node_id (IoTDA's physical identifier, an IMEI or MAC address): unique within the
-- product. A device registered by a template keeps its node id in device_registrations.
ALTER TABLE devices ADD COLUMN node_id text;
CREATE UNIQUE INDEX devices_product_node_idx ON devices (product_id, node_id) WHERE node_id IS NOT NULL;
