-- Data forwarding (gateway/forwarding*.py): IoTDA's routing rules and their actions, and the
-- transactional outbox that feeds them. An outbox row is written in the transaction that stores
-- what it tells of (a telemetry batch, a device created, deleted, or coming online or offline),
-- one row per matching action, and deleted once delivered: nothing committed is missed, and a
-- crash between commit and delivery only repeats a delivery.
CREATE TABLE forwarding_rules (
    id          text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    resource    text NOT NULL,
    event       text NOT NULL,
    app_type    text NOT NULL DEFAULT 'GLOBAL',
    app_id      text,
    select_sql  text,
    where_sql   text,
    active      boolean NOT NULL DEFAULT false,
    created_at  bigint NOT NULL
);
CREATE INDEX forwarding_rules_project_idx ON forwarding_rules (project_id, id);

-- channel_detail as the API took it (HTTP_FORWARDING's url, token...; NATS_FORWARDING's servers...).
CREATE TABLE forwarding_actions (
    id          text PRIMARY KEY,
    rule_id     text NOT NULL REFERENCES forwarding_rules ON DELETE CASCADE,
    project_id  text NOT NULL REFERENCES projects ON DELETE CASCADE,
    channel     text NOT NULL,
    detail      jsonb NOT NULL,
    created_at  bigint NOT NULL
);
CREATE INDEX forwarding_actions_rule_idx ON forwarding_actions (rule_id);
CREATE INDEX forwarding_actions_project_idx ON forwarding_actions (project_id, id);

-- One row holds a batch's notifications for one action and one lane (entries: a JSON array of
-- {"d": device id, "t": event time, "b": body, "h": header (device events; else read at delivery)}),
-- so that forwarding costs the ingest path one more COPY of a few rows a batch. A device's entries
-- are all in one lane of its action (16 lanes): a lane is delivered by one worker at a time, in id
-- order, which keeps each device's notifications in order. No foreign keys: the ingest path writes
-- here; deleting an action deletes its rows. "delivered": entries of the row already delivered, so
-- that a retry resumes after them.
CREATE TABLE forwarding_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id   text COLLATE "C" NOT NULL,
    lane        smallint NOT NULL,
    resource    text NOT NULL,
    event       text NOT NULL,
    entries     text NOT NULL,
    count       integer NOT NULL,
    created_at  bigint NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    delivered   integer NOT NULL DEFAULT 0,
    next_at     bigint NOT NULL DEFAULT 0,
    last_error  text
) WITH (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);
CREATE INDEX forwarding_outbox_lane_idx ON forwarding_outbox (action_id, lane, id);

CREATE TABLE forwarding_dead_letters (
    id          bigint PRIMARY KEY,
    action_id   text COLLATE "C" NOT NULL,
    lane        smallint NOT NULL,
    resource    text NOT NULL,
    event       text NOT NULL,
    entries     text NOT NULL,
    count       integer NOT NULL,
    created_at  bigint NOT NULL,
    attempts    integer NOT NULL,
    delivered   integer NOT NULL,
    last_error  text,
    reason      text NOT NULL,
    dead_at     bigint NOT NULL
);
CREATE INDEX forwarding_dead_letters_action_idx ON forwarding_dead_letters (action_id, id);

-- Who delivers each lane of each action: a worker holds a lane until lease_until; a replica that
-- dies stops renewing, and another takes the lane over once the lease has run out.
CREATE TABLE forwarding_leases (
    action_id   text COLLATE "C" NOT NULL,
    lane        integer NOT NULL,
    owner       text NOT NULL,
    lease_until bigint NOT NULL,
    PRIMARY KEY (action_id, lane)
);

-- Device events for the active rules of the device's project, in the device's own transaction.
CREATE FUNCTION forwarding_device_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d devices;
    res text;
    ev text;
    body jsonb;
    now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        d := OLD; res := 'device'; ev := 'delete';
        body := jsonb_build_object('device_id', d.id);
    ELSIF TG_OP = 'INSERT' THEN
        d := NEW; res := 'device'; ev := 'create';
        body := jsonb_build_object('device_id', d.id, 'device_name', d.name, 'node_id', d.name,
                                   'product_id', d.product_id, 'description', coalesce(d.label, ''),
                                   'node_type', CASE WHEN d.gateway THEN 'GATEWAY' ELSE 'ENDPOINT' END,
                                   'gateway_id', coalesce(d.gateway_id, d.id), 'create_time', d.created_at);
    ELSE
        d := NEW; res := 'device.status'; ev := 'update';
        IF NEW.last_online_time IS DISTINCT FROM OLD.last_online_time
           AND coalesce(NEW.last_online_time > NEW.last_offline_time, true) THEN
            body := jsonb_build_object('status', 'ONLINE', 'last_online_time', NEW.last_online_time);
        ELSE
            body := jsonb_build_object('status', 'OFFLINE', 'last_offline_time', NEW.last_offline_time);
        END IF;
    END IF;
    IF NOT EXISTS (SELECT FROM forwarding_rules r
                   WHERE r.project_id = d.project_id AND r.active AND r.resource = res AND r.event = ev) THEN
        RETURN NULL;
    END IF;
    INSERT INTO forwarding_outbox (action_id, lane, resource, event, entries, count, created_at)
    SELECT a.id, hashtext(d.id) & 15, res, ev,
           jsonb_build_array(jsonb_build_object(
               'd', d.id, 't', now_ms, 'b', body,
               'h', jsonb_build_object('device_id', d.id, 'product_id', d.product_id, 'node_id', d.name,
                                       'gateway_id', coalesce(d.gateway_id, d.id))))::text,
           1, now_ms
    FROM forwarding_rules r JOIN forwarding_actions a ON a.rule_id = r.id
    WHERE r.project_id = d.project_id AND r.active AND r.resource = res AND r.event = ev;
    PERFORM pg_notify('forwarding', '');
    RETURN NULL;
END $$;

CREATE TRIGGER forwarding_device_created AFTER INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION forwarding_device_event();
CREATE TRIGGER forwarding_device_deleted AFTER DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION forwarding_device_event();
-- Status is what presence writes: last_online_time when a device comes online, last_offline_time
-- when it goes offline; activity alone (last_activity_time, online_until) fires nothing.
CREATE TRIGGER forwarding_device_status AFTER UPDATE OF last_online_time, last_offline_time ON devices
    FOR EACH ROW WHEN (OLD.last_online_time IS DISTINCT FROM NEW.last_online_time
                       OR OLD.last_offline_time IS DISTINCT FROM NEW.last_offline_time)
    EXECUTE FUNCTION forwarding_device_event();
