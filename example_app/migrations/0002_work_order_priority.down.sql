-- The priorities set since 1.1 are lost.
DROP INDEX work_orders_open_by_priority;
ALTER TABLE work_orders DROP COLUMN priority;
