-- A few orders for the order-status example. Created by examples/setup.py;
-- safe to delete and recreate.
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  status TEXT NOT NULL CHECK (status IN ('processing', 'shipped', 'delivered', 'cancelled')),
  carrier TEXT,
  shipped_on TEXT
);
INSERT INTO orders (id, status, carrier, shipped_on) VALUES
  (1041, 'delivered', 'DHL', '2026-11-28'),
  (1042, 'shipped', 'UPS', '2026-12-03'),
  (1043, 'processing', NULL, NULL),
  (1044, 'cancelled', NULL, NULL);
