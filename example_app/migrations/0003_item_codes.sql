-- golive: contract
-- Northwind 1.2: work orders name the ERP's item code instead of a free-text product. Destructive
-- for older code: 1.1 reads and writes `product`, which no longer exists.
ALTER TABLE work_orders RENAME COLUMN product TO item_code;
UPDATE work_orders SET item_code = upper(item_code);
