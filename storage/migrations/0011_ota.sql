-- ThingsBoard's OTA updates: firmware and software packages, stored in blocks of 64 KiB so an
-- upload streams in and a device's chunk reads only the blocks it covers.
CREATE TABLE ota_packages (
    id                 text PRIMARY KEY,
    project_id         text NOT NULL REFERENCES projects ON DELETE CASCADE,
    type               text NOT NULL CHECK (type IN ('FIRMWARE', 'SOFTWARE')),
    title              text NOT NULL,
    version            text NOT NULL,
    size               bigint NOT NULL,
    checksum_algorithm text NOT NULL,
    checksum           text NOT NULL,
    content_type       text NOT NULL,
    file_name          text NOT NULL DEFAULT '',
    created_at         bigint NOT NULL,
    UNIQUE (project_id, type, title, version)
);

CREATE TABLE ota_package_blocks (
    package_id text NOT NULL REFERENCES ota_packages ON DELETE CASCADE,
    seq        integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (package_id, seq)
);
-- Firmware images rarely compress: store them out of line, uncompressed, and skip the attempt.
ALTER TABLE ota_package_blocks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Assignments: a product's package for all its devices, a device's own (which wins). A package
-- cannot be deleted while assigned (RESTRICT).
CREATE TABLE ota_product_packages (
    product_id text NOT NULL REFERENCES products ON DELETE CASCADE,
    type       text NOT NULL CHECK (type IN ('FIRMWARE', 'SOFTWARE')),
    package_id text NOT NULL REFERENCES ota_packages ON DELETE RESTRICT,
    PRIMARY KEY (product_id, type)
);
CREATE INDEX ota_product_packages_package_idx ON ota_product_packages (package_id);

CREATE TABLE ota_device_packages (
    device_id  text NOT NULL REFERENCES devices ON DELETE CASCADE,
    type       text NOT NULL CHECK (type IN ('FIRMWARE', 'SOFTWARE')),
    package_id text NOT NULL REFERENCES ota_packages ON DELETE RESTRICT,
    PRIMARY KEY (device_id, type)
);
CREATE INDEX ota_device_packages_package_idx ON ota_device_packages (package_id);

-- Each device's latest reported progress per type (fw_state, fw_error, current_fw_title,
-- current_fw_version), with the package assigned to it when it reported.
CREATE TABLE ota_device_states (
    device_id       text NOT NULL REFERENCES devices ON DELETE CASCADE,
    type            text NOT NULL CHECK (type IN ('FIRMWARE', 'SOFTWARE')),
    package_id      text REFERENCES ota_packages ON DELETE SET NULL,
    state           text,
    error           text NOT NULL DEFAULT '',
    current_title   text,
    current_version text,
    updated_at      bigint NOT NULL,
    PRIMARY KEY (device_id, type)
);
CREATE INDEX ota_device_states_package_idx ON ota_device_states (package_id, state);
