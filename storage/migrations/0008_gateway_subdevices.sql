-- ThingsBoard's gateway API: a sub-device records the gateway that last connected it.
ALTER TABLE devices ADD COLUMN gateway_id text REFERENCES devices ON DELETE SET NULL;
CREATE INDEX devices_gateway_idx ON devices (gateway_id) WHERE gateway_id IS NOT NULL;
