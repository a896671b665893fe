-- golive: expand
-- Northwind 1.0: the plant floor's work orders.
CREATE TABLE work_orders (
    id bigserial PRIMARY KEY,
    plant text NOT NULL,
    product text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    status text NOT NULL DEFAULT 'open',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX work_orders_plant ON work_orders (plant);
