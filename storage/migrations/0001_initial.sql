-- Tenants and their management tokens (stored as SHA-256 hashes).
CREATE TABLE projects (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  bigint NOT NULL
);

CREATE TABLE management_tokens (
    token_hash  text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects ON DELETE CASCADE,
    description text NOT NULL DEFAULT '',
    created_at  bigint NOT NULL
);

-- A product is a ThingsBoard device profile: it owns the provisioning settings.
-- Provision keys are unique across projects: a device request carries only the key.
CREATE TABLE products (
    id                           text PRIMARY KEY,
    project_id                   text NOT NULL REFERENCES projects ON DELETE CASCADE,
    name                         text NOT NULL,
    description                  text NOT NULL DEFAULT '',
    provision_strategy           text NOT NULL DEFAULT 'DISABLED'
        CHECK (provision_strategy IN ('ALLOW_CREATE_NEW_DEVICES', 'CHECK_PRE_PROVISIONED_DEVICES', 'DISABLED')),
    provision_key                text UNIQUE,
    provision_secret             text,
    send_ack_on_validation_error boolean NOT NULL DEFAULT false,
    created_at                   bigint NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE devices (
    id          text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects ON DELETE CASCADE,
    product_id  text NOT NULL REFERENCES products ON DELETE RESTRICT,
    name        text NOT NULL,
    label       text,
    gateway     boolean NOT NULL DEFAULT false,
    created_at  bigint NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX devices_product_idx ON devices (product_id);

-- lookup: "t:"+sha256(token or user name), "b:"+sha3(client id[|user name]),
-- "x:"+sha3(certificate body). pending: the clear credentials an operator set
-- for a pre-provisioned device, erased at its first successful provisioning.
CREATE TABLE device_credentials (
    device_id      text PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    type           text NOT NULL CHECK (type IN ('ACCESS_TOKEN', 'MQTT_BASIC', 'X509_CERTIFICATE')),
    lookup         text NOT NULL UNIQUE,
    password_hash  text,
    client_id      text,
    user_name      text,
    certificate    text,
    pending        jsonb
);

-- No foreign keys on the data tables: a batch queued for a device that is
-- deleted meanwhile must still commit; deleting a device deletes its rows.
-- Ids compare as bytes (COLLATE "C"): locale-aware comparison in the busiest
-- indexes buys nothing for an id and costs on every insert.
CREATE TABLE attribute_kv (
    device_id       text COLLATE "C" NOT NULL,
    scope           text NOT NULL CHECK (scope IN ('CLIENT_SCOPE', 'SHARED_SCOPE', 'SERVER_SCOPE')),
    key             text NOT NULL,
    last_update_ts  bigint NOT NULL,
    bool_v          boolean,
    long_v          bigint,
    dbl_v           double precision,
    str_v           text,
    json_v          jsonb,
    PRIMARY KEY (device_id, scope, key)
);

CREATE TABLE key_dictionary (
    key     text PRIMARY KEY,
    key_id  integer GENERATED ALWAYS AS IDENTITY UNIQUE
);

-- ThingsBoard's ts_kv, partitioned by month of ts (Unix milliseconds);
-- the writer creates partitions as rows arrive, retention drops them.
CREATE TABLE ts_kv (
    device_id  text COLLATE "C" NOT NULL,
    key        integer NOT NULL,
    ts         bigint NOT NULL,
    bool_v     boolean,
    long_v     bigint,
    dbl_v      double precision,
    str_v      text,
    json_v     jsonb,
    PRIMARY KEY (device_id, key, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE ts_kv_latest (
    device_id  text COLLATE "C" NOT NULL,
    key        integer NOT NULL,
    ts         bigint NOT NULL,
    bool_v     boolean,
    long_v     bigint,
    dbl_v      double precision,
    str_v      text,
    json_v     jsonb,
    PRIMARY KEY (device_id, key)
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts          bigint NOT NULL,
    project_id  text,
    action      text NOT NULL,
    outcome     text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    device_id   text,
    source      text NOT NULL DEFAULT '',
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_project_ts_idx ON audit_log (project_id, ts);
