-- A small help desk: customers, their tickets, knowledge-base articles and
-- reply drafts. Created by examples/setup.py; safe to delete and recreate.
CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  plan TEXT NOT NULL CHECK (plan IN ('free', 'pro', 'enterprise')),
  since TEXT NOT NULL
);
CREATE TABLE tickets (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  subject TEXT NOT NULL,
  category TEXT NOT NULL CHECK (category IN ('billing', 'bug', 'how_to', 'account', 'other')),
  priority TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
  status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'pending', 'closed')),
  summary TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE articles (
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  tags TEXT NOT NULL
);
CREATE TABLE drafts (
  id INTEGER PRIMARY KEY,
  ticket_id INTEGER NOT NULL REFERENCES tickets(id),
  body TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT (datetime('now'))
);

INSERT INTO customers (id, email, name, plan, since) VALUES
  (1, 'dana@northwind.example', 'Dana Ruiz', 'pro', '2024-03-11'),
  (2, 'li@contoso.example', 'Li Wei', 'enterprise', '2022-09-01'),
  (3, 'sam@fabrikam.example', 'Sam Okafor', 'free', '2026-10-02');

INSERT INTO tickets (id, customer_id, subject, category, priority, status, summary, created_at) VALUES
  (101, 1, 'CSV export times out', 'bug', 'normal', 'closed', 'Export of 200k rows timed out; fixed by the async export.', '2026-08-14 09:12:00'),
  (102, 2, 'SSO login loop', 'account', 'high', 'open', 'Users bounce between IdP and login page after the IdP certificate rotation.', '2026-11-20 16:40:00');

INSERT INTO articles (id, title, body, tags) VALUES
  (1, 'Resetting your password', 'Go to Settings > Security > Reset password. A reset link is emailed and expires after 30 minutes. Admins can force a reset for a user from the Members page.', 'password reset login account'),
  (2, 'Exporting data to CSV', 'Reports > Export > CSV. Exports over 50,000 rows run in the background and a download link is emailed when ready.', 'export csv report download timeout'),
  (3, 'Changing your plan', 'Owners can change plans under Billing > Plan. Upgrades apply immediately and are prorated; downgrades apply at the next renewal. Refunds are handled by the billing team only.', 'billing plan upgrade downgrade refund invoice'),
  (4, 'SSO troubleshooting', 'A login loop after an IdP certificate rotation means the new certificate was not uploaded. Upload it under Settings > SSO > Certificates, then retry.', 'sso saml login loop certificate idp');
