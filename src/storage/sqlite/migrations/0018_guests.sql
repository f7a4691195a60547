-- Guest accounts (client-server API, "Guest Access"): registered with
-- `kind=guest`, limited to the endpoints the spec lists, and upgraded to
-- full accounts in place (the flag cleared, a password set).
ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;
