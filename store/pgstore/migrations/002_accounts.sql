-- Several Movidesk accounts in one service: each event goes to the account
-- of its call, and each account's sender reads only its own events.
ALTER TABLE events ADD COLUMN account text NOT NULL DEFAULT 'default';
DROP INDEX events_due;
CREATE INDEX events_due ON events (account, class, next_ns, seq) WHERE state = 'pending';
