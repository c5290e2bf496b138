-- Device connectivity (gateway/presence.py): ONLINE while a connection is held by a live
-- process, or until online_until after a request. Times are Unix milliseconds; NULL: never.
-- Columns without a default: adding them rewrites nothing. None is indexed, so the batched
-- activity updates stay HOT (no index entry per update); the status filter is evaluated on
-- the project's devices, which the list reads in any case for its count.
ALTER TABLE devices
    ADD COLUMN online_until       bigint,
    ADD COLUMN last_online_time   bigint,
    ADD COLUMN last_offline_time  bigint,
    ADD COLUMN last_activity_time bigint;

-- Every gateway process on this database, with the lease it renews at each write. A process
-- that dies stops renewing: its connections count for nothing once the lease has run out.
CREATE TABLE gateway_processes (
    id           text PRIMARY KEY,
    lease_until  bigint NOT NULL
);

-- The connections (MQTT sessions, CoAP observations, sub-devices behind a connected gateway)
-- each process holds, one row per device and process. No foreign keys: a batch naming a
-- device deleted meanwhile must still commit; deleting a device deletes its rows.
CREATE TABLE device_connections (
    device_id   text COLLATE "C" NOT NULL,
    process_id  text COLLATE "C" NOT NULL,
    since       bigint NOT NULL,
    PRIMARY KEY (device_id, process_id)
);
CREATE INDEX device_connections_process_idx ON device_connections (process_id);
