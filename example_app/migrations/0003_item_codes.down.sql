-- Item codes stay upper case: the original spelling of each product is not kept.
ALTER TABLE work_orders RENAME COLUMN item_code TO product;
