-- golive: expand
-- Northwind 1.1: a priority per work order (1 = most urgent). Additive: 1.0 code, which does not
-- know the column, keeps reading and writing work orders (new ones get the default).
ALTER TABLE work_orders ADD COLUMN priority smallint NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 5);
CREATE INDEX work_orders_open_by_priority ON work_orders (priority, created_at) WHERE status = 'open';
