-- Label selectors become index conditions: equality and `in` requirements turn into
-- `labels @> ...`, and `exists` into `labels ?& ...`. jsonb_path_ops serves only the
-- first, so the index is rebuilt with the default jsonb_ops, which serves both.
-- Without fastupdate: a bulk import would otherwise leave its entries in the pending
-- list (30,000 registrations fill 300 pages of it) until a vacuum, and every scan of the
-- index reads the whole list, which also makes the planner shun the index. Registrations
-- are written one at a time, so updating the index in place costs them little.
DROP INDEX external_services_labels_idx;
CREATE INDEX external_services_labels_idx ON external_services USING gin (labels)
    WITH (fastupdate = off);
