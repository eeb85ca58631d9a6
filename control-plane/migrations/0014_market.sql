-- The marketplace (issue 24): a double-entry credits ledger, offers of node
-- time, sealed bids, leases, autobuy rules, idempotency keys. Portable SQL,
-- as in 0001: TEXT and BIGINT columns only; times are unix seconds from the
-- database's clock; every window is half-open [start_at, end_at); amounts
-- are integer milli-credits. The overlap rules that PostgreSQL can hold
-- itself (exclusion constraints) are added by `db::market::install_postgres`
-- after the migrations, since SQLite has no such syntax; on SQLite the same
-- checks run inside the one writer transaction.

-- Ids of the market's objects: one counter row per kind, taken with
-- UPDATE ... RETURNING inside the inserting transaction.
CREATE TABLE market_counters (
    name TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);
INSERT INTO market_counters (name, next) VALUES
    ('offer', 0), ('bid', 0), ('lease', 0), ('transfer', 0), ('hold', 0), ('autobuy', 0);

-- Accounts: per project `available`, `escrow` (the sum of its open holds)
-- and `revenue`; the system's `mint` (the only account that goes negative:
-- minus everything ever minted) and `fees` belong to project '@system',
-- which no project name can be. The ledger sums to zero by construction.
CREATE TABLE ledger_accounts (
    project TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('available', 'escrow', 'revenue', 'mint', 'fees')),
    balance BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project, kind),
    CHECK (kind = 'mint' OR balance >= 0)
);
INSERT INTO ledger_accounts (project, kind, balance) VALUES ('@system', 'mint', 0), ('@system', 'fees', 0);

-- Append-only transfers: `amount` leaves the debit account and enters the
-- credit account. Never updated or deleted; a correction is a reversing transfer.
CREATE TABLE ledger_transfers (
    id BIGINT PRIMARY KEY,
    debit_project TEXT NOT NULL,
    debit_kind TEXT NOT NULL,
    credit_project TEXT NOT NULL,
    credit_kind TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    -- mint | transfer | hold | release | payment | fee | reversal
    kind TEXT NOT NULL,
    -- What it is for: `bid 7`, `lease 3`, `autobuy 2`, `transfer 12` (a reversal).
    reference TEXT NOT NULL,
    actor TEXT NOT NULL,
    memo TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (debit_project, debit_kind) REFERENCES ledger_accounts (project, kind),
    FOREIGN KEY (credit_project, credit_kind) REFERENCES ledger_accounts (project, kind)
);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_project);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_project);

-- Escrow holds: money moved from `available` to `escrow` for a bid, a lease
-- or an autobuy budget; `amount` is what is still held. A hold is closed
-- exactly once (its remainder paid or released).
CREATE TABLE ledger_holds (
    id BIGINT PRIMARY KEY,
    project TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    reference TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_holds_project ON ledger_holds (project, status);

-- Offers: an owner project's nodes for [start_at, end_at).
CREATE TABLE market_offers (
    id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    reserve_mph BIGINT NOT NULL CHECK (reserve_mph > 0),
    buy_now_mph BIGINT CHECK (buy_now_mph IS NULL OR buy_now_mph >= reserve_mph),
    -- Sealed bids are taken until then; NULL: buy-now only.
    closes_at BIGINT,
    -- JSON array of project names that may buy; [] = every project.
    audience TEXT NOT NULL,
    interruptible BIGINT NOT NULL CHECK (interruptible IN (0, 1)),
    notice_secs BIGINT NOT NULL CHECK (notice_secs >= 0),
    -- none | discard | zero: the wipe between two leases.
    wipe TEXT NOT NULL,
    -- JSON: the resources of one unit (every node of a pool is alike).
    resources TEXT NOT NULL,
    -- open | settled (auction done) | withdrawn
    state TEXT NOT NULL CHECK (state IN ('open', 'settled', 'withdrawn')),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CHECK (start_at < end_at)
);

-- The nodes of an offer, with the offer's window copied so one constraint
-- can see it: one owner never offers one node twice for overlapping time.
CREATE TABLE market_offer_nodes (
    offer BIGINT NOT NULL REFERENCES market_offers (id),
    node TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    live BIGINT NOT NULL CHECK (live IN (0, 1)),
    PRIMARY KEY (offer, node)
);
CREATE INDEX market_offer_nodes_node ON market_offer_nodes (node, live);

-- Sealed bids on an auctioned offer; `hold` keeps quantity x max price x
-- hours in escrow until the auction settles or the bid is withdrawn.
CREATE TABLE market_bids (
    id BIGINT PRIMARY KEY,
    offer BIGINT NOT NULL REFERENCES market_offers (id),
    project TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    max_mph BIGINT NOT NULL CHECK (max_mph > 0),
    all_or_nothing BIGINT NOT NULL CHECK (all_or_nothing IN (0, 1)),
    hold BIGINT NOT NULL REFERENCES ledger_holds (id),
    -- open | won | lost | withdrawn
    state TEXT NOT NULL CHECK (state IN ('open', 'won', 'lost', 'withdrawn')),
    won BIGINT NOT NULL DEFAULT 0,
    price_mph BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX market_bids_offer ON market_bids (offer, state);

-- Leases of one node each. `busy_until` = end_at + the cleaning gap: the
-- next lease of the node may start no earlier. `live` is 0 once terminal.
CREATE TABLE market_leases (
    id BIGINT PRIMARY KEY,
    offer BIGINT NOT NULL REFERENCES market_offers (id),
    node TEXT NOT NULL,
    owner TEXT NOT NULL,
    lessee TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    busy_until BIGINT NOT NULL,
    price_mph BIGINT NOT NULL CHECK (price_mph > 0),
    hold BIGINT NOT NULL REFERENCES ledger_holds (id),
    interruptible BIGINT NOT NULL,
    notice_secs BIGINT NOT NULL,
    wipe TEXT NOT NULL,
    -- scheduled | granting | active | notice | revoking | ended | cancelled | recalled | failed
    state TEXT NOT NULL CHECK (state IN
        ('scheduled', 'granting', 'active', 'notice', 'revoking', 'ended', 'cancelled', 'recalled', 'failed')),
    live BIGINT NOT NULL CHECK (live IN (0, 1)),
    recalled BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    bid BIGINT,
    autobuy BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (start_at < end_at AND end_at <= busy_until),
    CHECK ((live = 1) = (state IN ('scheduled', 'granting', 'active', 'notice', 'revoking')))
);
CREATE INDEX market_leases_node ON market_leases (node, live);
CREATE INDEX market_leases_state ON market_leases (state);

-- Autobuy rules: keep `target` nodes matching `filter` leased, buying now
-- at most at `max_mph`, spending at most `daily_budget` a day (a hold).
CREATE TABLE market_autobuy (
    id BIGINT PRIMARY KEY,
    project TEXT NOT NULL,
    filter TEXT NOT NULL,
    target BIGINT NOT NULL CHECK (target > 0),
    max_mph BIGINT NOT NULL CHECK (max_mph > 0),
    daily_budget BIGINT NOT NULL CHECK (daily_budget > 0),
    hours BIGINT NOT NULL CHECK (hours > 0),
    -- The hold of the current day's budget (NULL until first used) and its day (unix day number).
    hold BIGINT REFERENCES ledger_holds (id),
    budget_day BIGINT NOT NULL DEFAULT 0,
    enabled BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    reason TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Idempotency keys of mutating market and ledger requests: the first
-- answer, returned again to a repeat with the same key and request.
CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, idem_key)
);
