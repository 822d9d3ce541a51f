-- Accounts for the portal's pages (docs/vendor-guide.md#the-console).
--
-- Staff: vendor and support people who sign in to the console with a name and a
-- password; a role and optionally the products they are limited to, exactly as an API
-- token's (`products`: a JSON list, NULL for all products).
CREATE TABLE staff (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    products TEXT,
    created BIGINT NOT NULL,
    disabled BIGINT
);
-- End users of user-based licenses (licenses.user_id): they sign in on the self-service
-- pages before a request naming them may take a seat. Staff set and reset passwords.
CREATE TABLE end_users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
-- Signed-in browsers. `id_hash`: the SHA-256 of the cookie's secret (a copy of the
-- database gives no usable session); `kind`: 'staff' (subject: staff.id) or 'user'
-- (subject: end_users.user_id); `csrf`: the session's form token.
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX web_sessions_subject ON web_sessions (kind, subject);
