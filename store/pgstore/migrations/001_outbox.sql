-- The outbox on PostgreSQL: what the bbolt file holds, as tables that
-- several instances share. Times are Unix nanoseconds, as the outbox's clock
-- gives them; the records are the JSON the bbolt file stores.

-- events: the requests on their way to Movidesk. seq order is submission
-- order, which is each call's delivery order.
CREATE TABLE events (
	seq        bigserial PRIMARY KEY,
	call       text     NOT NULL, -- base call id: the key of per-call order
	class      smallint NOT NULL, -- 0 a transfer, 1 anything else: transfers go first; 2 and 3 the same of a backfill, after them (store.Record.Rank)
	state      text     NOT NULL, -- 'pending' or 'failed'
	next_ns    bigint   NOT NULL, -- when a pending event is due
	created_ns bigint   NOT NULL,
	record     jsonb    NOT NULL
);
CREATE INDEX events_by_call ON events (call, seq);
CREATE INDEX events_due ON events (class, next_ns, seq) WHERE state = 'pending';

-- calls: the call state machine's records.
CREATE TABLE calls (
	base        text    PRIMARY KEY,
	open        boolean NOT NULL,
	deadline_ns bigint  NOT NULL, -- opened when open, last updated when closed: the reaper's index
	record      jsonb   NOT NULL
);
CREATE INDEX calls_by_deadline ON calls (open, deadline_ns);

-- marks: how far each importer (the fallback spool) got.
CREATE TABLE marks (
	key   text  PRIMARY KEY,
	value bytea NOT NULL
);

-- limiter_sends: one row a request sent, by rate-limit account; every
-- instance counts them all before sending.
CREATE TABLE limiter_sends (
	id      bigserial PRIMARY KEY,
	account text   NOT NULL,
	at_ns   bigint NOT NULL
);
CREATE INDEX limiter_sends_by_time ON limiter_sends (account, at_ns);
