-- Data forwarding of device.message/report: a message a device sends up (IoTDA's
-- sys/messages/up, kept in the device message log) is written to the outbox in the transaction
-- that stores it, for the active rules of the device's project, as device events are (0014).
-- The body is IoTDA's DeviceMessageReport, {"topic", "content"}; "r" is the message's id, the
-- notification's request_id; the header is read at delivery.
CREATE FUNCTION forwarding_message_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    project text;
BEGIN
    SELECT d.project_id INTO project FROM devices d WHERE d.id = NEW.device_id;
    IF NOT EXISTS (SELECT FROM forwarding_rules r
                   WHERE r.project_id = project AND r.active AND r.resource = 'device.message'
                         AND r.event = 'report') THEN
        RETURN NULL;
    END IF;
    INSERT INTO forwarding_outbox (action_id, lane, resource, event, entries, count, created_at)
    SELECT a.id, hashtext(NEW.device_id) & 15, 'device.message', 'report',
           jsonb_build_array(jsonb_build_object(
               'd', NEW.device_id, 't', NEW.created_at, 'r', NEW.id,
               'b', jsonb_build_object('topic', '$oc/devices/' || NEW.device_id || '/sys/messages/up',
                                       'content', NEW.content)))::text,
           1, NEW.created_at
    FROM forwarding_rules r JOIN forwarding_actions a ON a.rule_id = r.id
    WHERE r.project_id = project AND r.active AND r.resource = 'device.message' AND r.event = 'report';
    PERFORM pg_notify('forwarding', '');
    RETURN NULL;
END $$;

CREATE TRIGGER forwarding_message_reported AFTER INSERT ON device_messages
    FOR EACH ROW WHEN (NEW.direction = 'UP') EXECUTE FUNCTION forwarding_message_event();
