-- Per-project telemetry time-to-live, in days; NULL: the gateway's telemetry_ttl_days setting.
-- 0 keeps the project's telemetry forever.
ALTER TABLE projects ADD COLUMN telemetry_ttl_days integer CHECK (telemetry_ttl_days >= 0);
-- Audit retention deletes by time across projects.
CREATE INDEX audit_log_ts_idx ON audit_log (ts);
