-- A small CRM: inbound leads, enrichment data, sales reps and notifications.
-- Created by examples/setup.py; safe to delete and recreate.
CREATE TABLE leads (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  email TEXT NOT NULL,
  company_domain TEXT NOT NULL,
  message TEXT NOT NULL,
  score INTEGER,
  score_reasons TEXT,
  status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'qualified', 'nurture', 'disqualified')),
  assigned_rep INTEGER REFERENCES reps(id)
);
CREATE TABLE companies (
  domain TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  industry TEXT NOT NULL,
  employees INTEGER NOT NULL,
  annual_revenue_usd INTEGER NOT NULL,
  region TEXT NOT NULL CHECK (region IN ('emea', 'americas', 'apac'))
);
CREATE TABLE reps (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  region TEXT NOT NULL,
  open_leads INTEGER NOT NULL DEFAULT 0,
  available INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE notifications (
  id INTEGER PRIMARY KEY,
  rep_id INTEGER NOT NULL REFERENCES reps(id),
  lead_id INTEGER NOT NULL REFERENCES leads(id),
  message TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT (datetime('now'))
);

INSERT INTO companies VALUES
  ('globex.example', 'Globex', 'manufacturing', 1200, 340000000, 'emea'),
  ('initech.example', 'Initech', 'software', 45, 6000000, 'americas'),
  ('hooli.example', 'Hooli', 'internet', 9000, 2100000000, 'americas');

INSERT INTO reps (id, name, region, open_leads, available) VALUES
  (1, 'Ana Costa', 'emea', 4, 1),
  (2, 'Ben Adler', 'emea', 9, 1),
  (3, 'Chloe Park', 'americas', 2, 1),
  (4, 'Dev Shah', 'americas', 1, 0);

INSERT INTO leads (id, name, email, company_domain, message) VALUES
  (12345, 'Marta Nowak', 'marta@globex.example', 'globex.example', 'We are evaluating tools to automate supplier onboarding for 3 plants; looking to roll out next quarter. Can we see a demo?'),
  (12346, 'Tom Reed', 'tom@initech.example', 'initech.example', 'Just curious about pricing for a student project.');
