-- Device certificates are TLS trust anchors: every gateway process listening on
-- this channel reloads them when an X.509 credential is added, changed or removed.
CREATE FUNCTION notify_device_certificates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP <> 'INSERT' AND OLD.type = 'X509_CERTIFICATE')
       OR (TG_OP <> 'DELETE' AND NEW.type = 'X509_CERTIFICATE') THEN
        PERFORM pg_notify('device_certificates', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER device_certificates_changed
    AFTER INSERT OR UPDATE OR DELETE ON device_credentials
    FOR EACH ROW EXECUTE FUNCTION notify_device_certificates();
