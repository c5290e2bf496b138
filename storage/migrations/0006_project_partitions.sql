-- Issue 7: each project's telemetry in partitions of its own, so that a project's
-- time-to-live is enforced by dropping whole partitions (storage/retention.py), not by
-- deleting rows out of months shared with other projects.
--
-- ts_kv is LIST-partitioned by project number, each project's partition ts_kv_p{no}
-- RANGE-partitioned by month of ts: ts_kv_p{no}_{YYYY}_{MM}. The writer makes both
-- levels as rows arrive (storage/partitions.py).

-- A compact number for the partition key: a project id is text, and ts_kv holds it once
-- a row. Identity values are never reused, so a number names one project forever.
ALTER TABLE projects ADD COLUMN no integer GENERATED ALWAYS AS IDENTITY UNIQUE;

ALTER TABLE ts_kv RENAME TO ts_kv_0005;
ALTER TABLE ts_kv_0005 RENAME CONSTRAINT ts_kv_pkey TO ts_kv_0005_pkey;

-- A partitioned table's primary key holds every partition key column; project_no
-- last, so the index still serves the (device_id, key, ts) lookups of the readers
-- and of ON CONFLICT, and within one project's partition it is the same value anyway.
CREATE TABLE ts_kv (
    device_id   text COLLATE "C" NOT NULL,
    key         integer NOT NULL,
    ts          bigint NOT NULL,
    project_no  integer NOT NULL,
    bool_v      boolean,
    long_v      bigint,
    dbl_v       double precision,
    str_v       text,
    json_v      jsonb,
    PRIMARY KEY (device_id, key, ts, project_no)
) PARTITION BY LIST (project_no);

-- Each old monthly partition's rows go to the same month of their projects: the new
-- partitions take the old one's bounds as they are (exact months, made by the writer).
-- Rows of devices no longer registered are left behind: deleting a device deletes its
-- rows, these are what a batch queued for it stored after it was deleted.
DO $$
DECLARE
    old record;
    project integer;
BEGIN
    FOR old IN
        SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'ts_kv_0005'::regclass
        ORDER BY c.relname
    LOOP
        FOR project IN EXECUTE format(
            'SELECT DISTINCT p.no FROM (SELECT DISTINCT device_id FROM %I) t
             JOIN devices d ON d.id = t.device_id JOIN projects p ON p.id = d.project_id', old.name)
        LOOP
            EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF ts_kv FOR VALUES IN (%s) PARTITION BY RANGE (ts)',
                           'ts_kv_p' || project, project);
            -- ts_kv_YYYY_MM -> ts_kv_p{no}_YYYY_MM
            EXECUTE format('CREATE TABLE %I PARTITION OF %I %s',
                           'ts_kv_p' || project || '_' || substr(old.name, length('ts_kv_') + 1),
                           'ts_kv_p' || project, old.bound);
        END LOOP;
        EXECUTE format(
            'INSERT INTO ts_kv (device_id, key, ts, project_no, bool_v, long_v, dbl_v, str_v, json_v)
             SELECT t.device_id, t.key, t.ts, p.no, t.bool_v, t.long_v, t.dbl_v, t.str_v, t.json_v
             FROM %I t JOIN devices d ON d.id = t.device_id JOIN projects p ON p.id = d.project_id', old.name);
    END LOOP;
END $$;

DROP TABLE ts_kv_0005;
