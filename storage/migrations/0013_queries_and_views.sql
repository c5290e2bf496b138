-- Getting data out (docs/queries.md, docs/sql.md).
--
-- Fleet queries page a project's devices by id, newest first, optionally of one product:
-- these indexes read a page in order instead of sorting the project's devices.
CREATE INDEX IF NOT EXISTS devices_project_page_idx ON devices (project_id, id);
CREATE INDEX IF NOT EXISTS devices_product_page_idx ON devices (project_id, product_id, id);

-- The public SQL interface: three views in a schema of their own, documented and tested
-- (tests/test_sql_views.py). The tables under them may change; these columns do not. Only
-- added columns may follow, at the end. Times are given both as timestamptz and as Unix ms.
CREATE SCHEMA IF NOT EXISTS iot;

-- Devices with their status as of now, by the rule of fleetgate.core.presence (the management
-- API's): ONLINE while a live gateway process holds a connection of the device, or while its
-- last request's lease runs.
CREATE VIEW iot.devices AS
SELECT d.id AS device_id,
       d.name AS device_name,
       d.label,
       d.project_id,
       d.product_id,
       pr.name AS product_name,
       d.gateway,
       d.gateway_id,
       CASE WHEN coalesce(d.online_until > now_ms.v, false)
                 OR EXISTS (SELECT 1 FROM device_connections s JOIN gateway_processes g ON g.id = s.process_id
                            WHERE s.device_id = d.id COLLATE "C" AND g.lease_until > now_ms.v)
            THEN 'ONLINE' ELSE 'OFFLINE' END AS status,
       d.last_online_time AS last_online_ms,
       to_timestamp(d.last_online_time / 1000.0::double precision) AS last_online,
       d.last_activity_time AS last_activity_ms,
       to_timestamp(d.last_activity_time / 1000.0::double precision) AS last_activity,
       d.created_at AS created_ms,
       to_timestamp(d.created_at / 1000.0::double precision) AS created
FROM devices d
JOIN products pr ON pr.id = d.product_id
CROSS JOIN (SELECT (extract(epoch FROM now()) * 1000)::bigint AS v) now_ms;

-- Every stored data point. value_type is ThingsBoard's (BOOLEAN, LONG, DOUBLE, STRING, JSON);
-- value_number is the value as a double where it is a number (booleans 0 and 1), else NULL;
-- value_text is every value as text. Filter on device_id, key and ts_ms: the query then reads
-- only that device's rows of that key and time range, by ts_kv's primary key.
--
-- Planned from the device: its id compared as ts_kv compares ids (COLLATE "C"), so that the
-- device is found by its primary key and ts_kv's rows by theirs; its project number as a scalar
-- subquery, so that only that project's partitions are searched (one probe, not a join row by row).
CREATE VIEW iot.telemetry AS
SELECT d.id AS device_id,
       d.name AS device_name,
       d.project_id,
       d.product_id,
       k.key,
       t.ts AS ts_ms,
       to_timestamp(t.ts / 1000.0::double precision) AS ts,
       CASE WHEN t.bool_v IS NOT NULL THEN 'BOOLEAN' WHEN t.long_v IS NOT NULL THEN 'LONG'
            WHEN t.dbl_v IS NOT NULL THEN 'DOUBLE' WHEN t.str_v IS NOT NULL THEN 'STRING' ELSE 'JSON' END AS value_type,
       coalesce(t.dbl_v, t.long_v::double precision, t.bool_v::int::double precision) AS value_number,
       t.bool_v AS value_boolean,
       t.long_v AS value_long,
       t.dbl_v AS value_double,
       t.str_v AS value_string,
       t.json_v AS value_json,
       coalesce(t.str_v, t.long_v::text, t.dbl_v::text, t.bool_v::text, t.json_v::text) AS value_text
FROM devices d
JOIN ts_kv t ON t.device_id = d.id COLLATE "C"
            AND t.project_no = (SELECT p.no FROM projects p WHERE p.id = d.project_id)
JOIN key_dictionary k ON k.key_id = t.key;

-- Each device's latest value of each of its keys: the newest timestamp wins (ThingsBoard's rule).
-- Keys are found by a loose index scan of ts_kv's primary key, one probe a key.
CREATE VIEW iot.latest AS
SELECT d.id AS device_id,
       d.name AS device_name,
       d.project_id,
       d.product_id,
       k.key,
       l.ts AS ts_ms,
       to_timestamp(l.ts / 1000.0::double precision) AS ts,
       CASE WHEN l.bool_v IS NOT NULL THEN 'BOOLEAN' WHEN l.long_v IS NOT NULL THEN 'LONG'
            WHEN l.dbl_v IS NOT NULL THEN 'DOUBLE' WHEN l.str_v IS NOT NULL THEN 'STRING' ELSE 'JSON' END AS value_type,
       coalesce(l.dbl_v, l.long_v::double precision, l.bool_v::int::double precision) AS value_number,
       l.bool_v AS value_boolean,
       l.long_v AS value_long,
       l.dbl_v AS value_double,
       l.str_v AS value_string,
       l.json_v AS value_json,
       coalesce(l.str_v, l.long_v::text, l.dbl_v::text, l.bool_v::text, l.json_v::text) AS value_text
FROM devices d
JOIN projects p ON p.id = d.project_id
CROSS JOIN LATERAL (
    WITH RECURSIVE device_keys(key) AS (
        (SELECT t.key FROM ts_kv t WHERE t.project_no = p.no AND t.device_id = d.id COLLATE "C"
         ORDER BY t.key LIMIT 1)
        UNION ALL
        SELECT (SELECT t.key FROM ts_kv t
                WHERE t.project_no = p.no AND t.device_id = d.id COLLATE "C" AND t.key > dk.key
                ORDER BY t.key LIMIT 1)
        FROM device_keys dk WHERE dk.key IS NOT NULL)
    SELECT key FROM device_keys WHERE key IS NOT NULL) dk
JOIN key_dictionary k ON k.key_id = dk.key
CROSS JOIN LATERAL (
    SELECT t.ts, t.bool_v, t.long_v, t.dbl_v, t.str_v, t.json_v FROM ts_kv t
    WHERE t.project_no = p.no AND t.device_id = d.id COLLATE "C" AND t.key = dk.key
    ORDER BY t.ts DESC LIMIT 1) l;
