-- ThingsBoard's persistent RPC: an operator's call kept until the device takes it, with its state
-- (QUEUED, SENT, DELIVERED, SUCCESSFUL, TIMEOUT, EXPIRED, FAILED) and the device's response.
CREATE TABLE rpc_calls (
    id              text PRIMARY KEY,
    device_id       text NOT NULL REFERENCES devices ON DELETE CASCADE,
    method          text NOT NULL,
    params          jsonb,
    oneway          boolean NOT NULL,
    timeout_ms      integer NOT NULL,
    expiration_time bigint NOT NULL,
    retries         integer NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    status          text NOT NULL,
    response        jsonb,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX rpc_calls_device_idx ON rpc_calls (device_id, id);
-- A device that starts listening looks up its oldest queued call.
CREATE INDEX rpc_calls_queued_idx ON rpc_calls (device_id, id) WHERE status = 'QUEUED';
