-- Trust-store changes say what changed, so that each gateway process adds a new anchor by
-- itself instead of re-reading every one: '+c:' and the certificate (base64 DER) of a new
-- X509_CERTIFICATE credential, '+a:' and the PEM of a newly verified device CA, '*' when an
-- anchor went away or changed (the process rebuilds its trust store, once per batch). A
-- NOTIFY payload holds under 8,000 bytes: a bigger certificate is announced as '*'. A change
-- that leaves the anchors as they were (a CA's template, its CRL) announces nothing.
CREATE OR REPLACE FUNCTION notify_device_certificates() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP <> 'INSERT' AND OLD.type = 'X509_CERTIFICATE';
    now_is boolean := TG_OP <> 'DELETE' AND NEW.type = 'X509_CERTIFICATE';
BEGIN
    IF was AND NOT (now_is AND NEW.certificate IS NOT DISTINCT FROM OLD.certificate) THEN
        PERFORM pg_notify('device_certificates', '*');
    ELSIF now_is AND NOT was AND NEW.certificate IS NOT NULL THEN
        PERFORM pg_notify('device_certificates',
            CASE WHEN octet_length(NEW.certificate) < 7900 THEN '+c:' || NEW.certificate ELSE '*' END);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER device_cas_changed ON device_cas;
DROP FUNCTION notify_device_cas();

CREATE FUNCTION notify_device_cas() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP <> 'INSERT' AND OLD.verified;
    now_is boolean := TG_OP <> 'DELETE' AND NEW.verified;
BEGIN
    IF was AND NOT (now_is AND NEW.pem = OLD.pem) THEN
        PERFORM pg_notify('device_certificates', '*');
    ELSIF now_is AND NOT was THEN
        PERFORM pg_notify('device_certificates',
            CASE WHEN octet_length(NEW.pem) < 7900 THEN '+a:' || NEW.pem ELSE '*' END);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER device_cas_changed
    AFTER INSERT OR UPDATE OR DELETE ON device_cas
    FOR EACH ROW EXECUTE FUNCTION notify_device_cas();
