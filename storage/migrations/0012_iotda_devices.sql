-- Huawei IoTDA's device side: secret devices, the device message log, and the device shadow.

-- SECRET: an IoTDA device whose MQTT password is an HMAC of its secret, keyed by the hour, so the
-- secret itself must be given back: it is sealed (storage/sealing.py), never hashed. Its lookup
-- is "i:" + the device id, which the CONNECT's user name carries.
ALTER TABLE device_credentials DROP CONSTRAINT device_credentials_type_check;
ALTER TABLE device_credentials ADD CONSTRAINT device_credentials_type_check
    CHECK (type IN ('ACCESS_TOKEN', 'MQTT_BASIC', 'X509_CERTIFICATE', 'SECRET'));
ALTER TABLE device_credentials ADD COLUMN secret text;

-- Messages between a device and its operators: UP (sys/messages/up), EVENT (sys/events/up)
-- and DOWN (CreateMessage), with a down message's delivery status.
CREATE TABLE device_messages (
    id           text NOT NULL,
    device_id    text NOT NULL REFERENCES devices ON DELETE CASCADE,
    direction    text NOT NULL CHECK (direction IN ('UP', 'DOWN', 'EVENT')),
    name         text,
    kind         text,  -- an event's service_id/event_type
    content      jsonb,
    status       text NOT NULL,
    error        jsonb,
    created_at   bigint NOT NULL,
    finished_at  bigint,
    PRIMARY KEY (device_id, id)
);
CREATE INDEX device_messages_listing_idx ON device_messages (device_id, direction, created_at DESC);
-- Retention deletes by age (device_message_retention_days).
CREATE INDEX device_messages_age_idx ON device_messages (created_at);

-- Which IoTDA service each reported property belongs to: telemetry is keyed by the property's
-- name alone, and this rebuilds the IoTDA shape (the shadow's reported properties).
CREATE TABLE device_property_services (
    device_id   text COLLATE "C" NOT NULL REFERENCES devices ON DELETE CASCADE,
    key         text NOT NULL,
    service_id  text NOT NULL,
    PRIMARY KEY (device_id, key)
);

-- The shadow's desired properties, per service, as the operator last set them.
CREATE TABLE device_shadow_desired (
    device_id   text NOT NULL REFERENCES devices ON DELETE CASCADE,
    service_id  text NOT NULL,
    properties  jsonb NOT NULL,
    event_time  bigint NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (device_id, service_id)
);
