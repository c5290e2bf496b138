-- Provisioning templates, device CA certificates and the devices they register (IoTDA's
-- self-registration), plus access keys for SDK-HMAC-SHA256 signed management calls.

CREATE TABLE provisioning_templates (
    id              text PRIMARY KEY,
    project_id      text NOT NULL REFERENCES projects ON DELETE CASCADE,
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    body            jsonb NOT NULL,
    allow_rotation  boolean NOT NULL DEFAULT false,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL,
    UNIQUE (project_id, name)
);

-- A CA is registered once across projects: a device's chain must name one project.
-- template_id is RESTRICT: a template bound to a CA cannot be deleted.
-- product_id/cn_pattern/allow_create: ThingsBoard's X.509 chain strategy, where the CA
-- belongs to a product instead of a template.
CREATE TABLE device_cas (
    id                text PRIMARY KEY,
    project_id        text NOT NULL REFERENCES projects ON DELETE CASCADE,
    pem               text NOT NULL,
    fingerprint       text NOT NULL UNIQUE,
    subject           bytea NOT NULL,
    cn_name           text NOT NULL,
    owner             text NOT NULL,
    verified          boolean NOT NULL DEFAULT false,
    verify_code       text NOT NULL,
    provision_enable  boolean NOT NULL DEFAULT false,
    template_id       text REFERENCES provisioning_templates ON DELETE RESTRICT,
    crl_pem           text,
    product_id        text REFERENCES products ON DELETE CASCADE,
    cn_pattern        text,
    allow_create      boolean NOT NULL DEFAULT true,
    not_before        bigint NOT NULL,
    not_after         bigint NOT NULL,
    created_at        bigint NOT NULL
);
CREATE INDEX device_cas_subject_idx ON device_cas (subject);

-- What a template rendered for a device it registered.
CREATE TABLE device_registrations (
    device_id    text PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    project_id   text NOT NULL,
    product_id   text NOT NULL,
    node_id      text NOT NULL,
    template_id  text,
    ca_id        text,
    tags         jsonb NOT NULL DEFAULT '[]',
    policy_ids   jsonb NOT NULL DEFAULT '[]',
    created_at   bigint NOT NULL,
    UNIQUE (project_id, product_id, node_id)
);

-- Device certificates bound to devices by SHA-256 fingerprint; disabling one blocks its device.
CREATE TABLE device_certificates (
    fingerprint  text PRIMARY KEY,
    device_id    text NOT NULL REFERENCES devices ON DELETE CASCADE,
    project_id   text NOT NULL,
    ca_id        text,
    template_id  text,
    enabled      boolean NOT NULL DEFAULT true,
    common_name  text NOT NULL DEFAULT '',
    not_after    bigint NOT NULL,
    created_at   bigint NOT NULL
);
CREATE INDEX device_certificates_device_idx ON device_certificates (device_id);

CREATE TABLE access_keys (
    access_key  text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects ON DELETE CASCADE,
    secret_key  text NOT NULL,
    created_at  bigint NOT NULL
);

-- Verified CAs are TLS trust anchors: the same channel as device certificates.
CREATE FUNCTION notify_device_cas() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('device_certificates', '');
    RETURN NULL;
END $$;

CREATE TRIGGER device_cas_changed
    AFTER INSERT OR UPDATE OR DELETE ON device_cas
    FOR EACH STATEMENT EXECUTE FUNCTION notify_device_cas();
