-- lic portal schema, version 1.
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Only TEXT and BIGINT
-- columns; times are seconds since the Unix epoch (UTC), audit times milliseconds;
-- flags are 0/1; JSON documents are TEXT; file bytes are stored armored (TEXT).

CREATE TABLE vendor_keys (
    kid TEXT PRIMARY KEY,
    public_pem TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    retired BIGINT
);

CREATE TABLE products (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    product TEXT NOT NULL REFERENCES products (code),
    name TEXT NOT NULL,
    license_type TEXT NOT NULL,
    allow_offline BIGINT NOT NULL,
    seats BIGINT NOT NULL,
    validity_days BIGINT,
    features TEXT NOT NULL,
    match_required TEXT NOT NULL,
    match_max_changed BIGINT NOT NULL,
    clock_tolerance_secs BIGINT NOT NULL,
    max_offline_days BIGINT,
    inactivity_secs BIGINT,
    max_deactivations BIGINT,
    deactivation_period_days BIGINT,
    created BIGINT NOT NULL,
    UNIQUE (product, name)
);

CREATE TABLE licenses (
    id TEXT PRIMARY KEY,
    product TEXT NOT NULL REFERENCES products (code),
    policy TEXT NOT NULL REFERENCES policies (id),
    key_hash TEXT UNIQUE,
    key_hint TEXT,
    user_id TEXT,
    allow_offline BIGINT,
    seats BIGINT NOT NULL,
    seats_used BIGINT NOT NULL DEFAULT 0,
    features TEXT,
    expires BIGINT,
    status TEXT NOT NULL,
    created BIGINT NOT NULL,
    CHECK (seats_used >= 0 AND seats_used <= seats)
);

CREATE UNIQUE INDEX licenses_user ON licenses (product, user_id);

CREATE TABLE activations (
    id TEXT PRIMARY KEY,
    license TEXT NOT NULL REFERENCES licenses (id),
    product TEXT NOT NULL,
    device_key TEXT NOT NULL,
    device_kid TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    serial BIGINT NOT NULL,
    license_file TEXT NOT NULL,
    journal_seq BIGINT NOT NULL,
    journal_head TEXT NOT NULL,
    fork TEXT,
    offline_expiry BIGINT,
    last_accessed BIGINT NOT NULL,
    created BIGINT NOT NULL,
    deactivated BIGINT
);

CREATE INDEX activations_license ON activations (license, state);
CREATE INDEX activations_device ON activations (device_kid);

CREATE TABLE usage_reported (
    activation TEXT NOT NULL REFERENCES activations (id),
    feature TEXT NOT NULL,
    reported BIGINT NOT NULL,
    PRIMARY KEY (activation, feature)
);

CREATE TABLE usage_totals (
    license TEXT NOT NULL REFERENCES licenses (id),
    feature TEXT NOT NULL,
    total BIGINT NOT NULL,
    PRIMARY KEY (license, feature)
);

CREATE TABLE applied_files (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    activation TEXT,
    response TEXT NOT NULL,
    applied BIGINT NOT NULL
);

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT,
    reason TEXT,
    file_hash TEXT,
    detail TEXT
);

CREATE INDEX audit_at ON audit (at);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    products TEXT,
    created BIGINT NOT NULL,
    revoked BIGINT
);
