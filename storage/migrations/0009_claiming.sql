-- ThingsBoard's device claiming: the customer a device is claimed by (NULL: unclaimed), and
-- each product's switch. A claim in progress is the claimingData server attribute (attribute_kv).
ALTER TABLE devices ADD COLUMN customer text;
CREATE INDEX devices_customer_idx ON devices (project_id, customer) WHERE customer IS NOT NULL;
ALTER TABLE products ADD COLUMN allow_claiming boolean NOT NULL DEFAULT true;
