DROP TABLE work_orders;
