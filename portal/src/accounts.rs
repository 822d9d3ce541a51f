//! Accounts for the portal's pages: staff who sign in to the console, end users of
//! user-based licenses who sign in before activating, and the browser sessions of both.
//!
//! - Passwords are hashed with Argon2id (memory-hard; the `argon2` crate's default
//!   parameters, 19 MiB, 2 passes) into PHC strings; the database never holds a password.
//!   A sign-in for a name that does not exist still verifies against a dummy hash, so the
//!   answer takes as long as for a wrong password.
//! - A staff account has a role and optionally the products it is limited to, exactly
//!   as an API token ([`Principal`]); staff are created, re-passworded and disabled by an
//!   admin (`lic-portal staff …`), and every change is audited.
//! - End users are keyed by the user id their licenses carry (`licenses.user_id`); staff
//!   set or reset their passwords (`lic-portal users set-password`, or the console).
//! - A session is a random 256-bit secret in an HTTP-only cookie; the database keeps its
//!   SHA-256 only, its kind (`staff` or `user`), who it is, when it ends, and the
//!   session's CSRF token for its forms. Changing a password or disabling an account
//!   ends the account's sessions.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use zeroize::Zeroizing;

use crate::auth::{self, Principal, Role, random_hex, token_hash};
use crate::db::Db;
use crate::error::PortalError;
use crate::ops::Actor;

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// The longest password accepted (hashing a very long one is work for nothing).
pub const MAX_PASSWORD: usize = 1024;
/// How long a staff session lasts from sign-in.
pub const STAFF_SESSION_SECS: i64 = 8 * 3600;
/// How long an end user's session lasts from sign-in.
pub const USER_SESSION_SECS: i64 = 3600;

/// A staff account, as listed: never its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Staff {
    /// The account's id.
    pub id: String,
    /// The name the person signs in with.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The products they are limited to; `None`: all products.
    pub products: Option<Vec<String>>,
    /// Seconds since the epoch.
    pub created: i64,
    /// When the account was disabled, if it was.
    pub disabled: Option<i64>,
}

impl Staff {
    /// What the account may do, in the API's terms: the same checks as a token's.
    pub fn principal(&self) -> Principal {
        Principal {
            token_id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            products: self.products.clone(),
        }
    }

    /// The actor the audit log records for what this person does in the console.
    pub fn actor(&self) -> Actor {
        Actor(format!("staff:{}", self.name))
    }
}

/// Hash `password` for storage (Argon2id, a random salt), after checking its length.
pub fn hash_password(password: &str) -> Result<String, PortalError> {
    check_password(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PortalError::Storage(format!("cannot hash a password: {e}")))
}

fn check_password(password: &str) -> Result<(), PortalError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(PortalError::Invalid {
            field: "password",
            reason: format!(
                "a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters (this one has {n})"
            ),
        });
    }
    Ok(())
}

/// Whether `password` matches the stored `hash`. A malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spend the time of a verification when there is no account, so that a wrong name
/// answers no faster than a wrong password.
fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"no account has this password", &salt)
            .ok()
            .map(|h| h.to_string())
    });
    if let Some(hash) = dummy {
        let _ = verify_password(hash, password);
    }
}

async fn audit(
    db: &Db,
    now: i64,
    actor: &Actor,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<(), PortalError> {
    let mut conn = db.pool().acquire().await?;
    auth::audit(&mut conn, now, actor, action, subject, detail).await?;
    Ok(())
}

// ----- staff -------------------------------------------------------------------------------

fn staff_row(r: &AnyRow) -> Result<Staff, PortalError> {
    let (role, products) = auth::scope_of(r)?;
    Ok(Staff {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role,
        products,
        created: r.try_get("created")?,
        disabled: r.try_get("disabled")?,
    })
}

const STAFF_COLUMNS: &str = "id, name, role, products, created, disabled";

/// Create a staff account `name` with `role`, limited to `products` (`None`: all).
pub async fn create_staff(
    db: &Db,
    name: &str,
    role: Role,
    products: Option<Vec<String>>,
    password: &str,
    now: i64,
    actor: &Actor,
) -> Result<Staff, PortalError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(PortalError::Invalid {
            field: "name",
            reason: "a staff account needs a name of 1 to 200 printable characters".into(),
        });
    }
    if products.as_ref().is_some_and(Vec::is_empty) {
        return Err(PortalError::Invalid {
            field: "products",
            reason: "an account limited to no product could do nothing; leave the list out \
                     for all products"
                .into(),
        });
    }
    let hash = hash_password(password)?;
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM staff WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    if exists.is_some() {
        return Err(PortalError::AlreadyExists {
            what: "staff account",
            id: name.into(),
        });
    }
    let staff = Staff {
        id: format!("stf_{}", random_hex(8)),
        name: name.into(),
        role,
        products,
        created: now,
        disabled: None,
    };
    let products_json = staff
        .products
        .as_ref()
        .map(|p| serde_json::to_string(p).unwrap_or_default());
    sqlx::query(
        "INSERT INTO staff (id, name, password_hash, role, products, created, disabled) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(&staff.id)
    .bind(&staff.name)
    .bind(&hash)
    .bind(role.name())
    .bind(&products_json)
    .bind(now)
    .execute(db.pool())
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => PortalError::AlreadyExists {
            what: "staff account",
            id: name.into(),
        },
        e => e.into(),
    })?;
    let detail =
        serde_json::json!({"name": staff.name, "role": role.name(), "products": staff.products});
    audit(
        db,
        now,
        actor,
        "staff.create",
        &staff.id,
        &detail.to_string(),
    )
    .await?;
    Ok(staff)
}

/// The staff account `name`.
pub async fn staff(db: &Db, name: &str) -> Result<Staff, PortalError> {
    let row = sqlx::query(&format!(
        "SELECT {STAFF_COLUMNS} FROM staff WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(db.pool())
    .await?
    .ok_or_else(|| PortalError::NotFound {
        what: "staff account",
        id: name.into(),
    })?;
    staff_row(&row)
}

/// Every staff account, by name.
pub async fn list_staff(db: &Db) -> Result<Vec<Staff>, PortalError> {
    let rows = sqlx::query(&format!("SELECT {STAFF_COLUMNS} FROM staff ORDER BY name"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(staff_row).collect()
}

/// Give the staff account `name` a new password (and enable it again if it was
/// disabled); its sessions end.
pub async fn set_staff_password(
    db: &Db,
    name: &str,
    password: &str,
    now: i64,
    actor: &Actor,
) -> Result<Staff, PortalError> {
    let hash = hash_password(password)?;
    let staff = staff(db, name).await?;
    sqlx::query("UPDATE staff SET password_hash = $1, disabled = NULL WHERE id = $2")
        .bind(&hash)
        .bind(&staff.id)
        .execute(db.pool())
        .await?;
    end_sessions_of(db, SessionKind::Staff, &staff.id).await?;
    audit(db, now, actor, "staff.password", &staff.id, "{}").await?;
    Ok(Staff {
        disabled: None,
        ..staff
    })
}

/// Disable the staff account `name`: it can no longer sign in, and its sessions end.
pub async fn disable_staff(
    db: &Db,
    name: &str,
    now: i64,
    actor: &Actor,
) -> Result<Staff, PortalError> {
    let staff = staff(db, name).await?;
    sqlx::query("UPDATE staff SET disabled = $1 WHERE id = $2 AND disabled IS NULL")
        .bind(now)
        .bind(&staff.id)
        .execute(db.pool())
        .await?;
    end_sessions_of(db, SessionKind::Staff, &staff.id).await?;
    audit(db, now, actor, "staff.disable", &staff.id, "{}").await?;
    Ok(Staff {
        disabled: Some(staff.disabled.unwrap_or(now)),
        ..staff
    })
}

/// The enabled staff account `name`, if `password` is its password.
pub async fn staff_sign_in(db: &Db, name: &str, password: &str) -> Result<Staff, PortalError> {
    let row = sqlx::query(&format!(
        "SELECT {STAFF_COLUMNS}, password_hash FROM staff WHERE name = $1"
    ))
    .bind(name.trim())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        verify_nothing(password);
        return Err(PortalError::SignInFailed);
    };
    let hash: String = row.try_get("password_hash")?;
    let staff = staff_row(&row)?;
    if !verify_password(&hash, password) || staff.disabled.is_some() {
        return Err(PortalError::SignInFailed);
    }
    Ok(staff)
}

// ----- end users -----------------------------------------------------------------------------

/// Set (or reset) the password of the end user `user_id`; their sessions end.
pub async fn set_user_password(
    db: &Db,
    user_id: &str,
    password: &str,
    now: i64,
    actor: &Actor,
) -> Result<(), PortalError> {
    let user_id = user_id.trim();
    if user_id.is_empty() {
        return Err(PortalError::Invalid {
            field: "user",
            reason: "name the user (the user id of their license)".into(),
        });
    }
    let hash = hash_password(password)?;
    let updated =
        sqlx::query("UPDATE end_users SET password_hash = $1, updated = $2 WHERE user_id = $3")
            .bind(&hash)
            .bind(now)
            .bind(user_id)
            .execute(db.pool())
            .await?
            .rows_affected();
    if updated == 0 {
        sqlx::query(
            "INSERT INTO end_users (user_id, password_hash, created, updated) VALUES ($1, $2, $3, $3)",
        )
        .bind(user_id)
        .bind(&hash)
        .bind(now)
        .execute(db.pool())
        .await?;
    }
    end_sessions_of(db, SessionKind::User, user_id).await?;
    audit(db, now, actor, "user.password", user_id, "{}").await?;
    Ok(())
}

/// Whether the end user `user_id` has a password (and so can sign in).
pub async fn user_has_password(db: &Db, user_id: &str) -> Result<bool, PortalError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM end_users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(found.is_some())
}

/// `Ok` if `password` is the end user `user_id`'s password.
pub async fn user_sign_in(db: &Db, user_id: &str, password: &str) -> Result<(), PortalError> {
    let hash: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM end_users WHERE user_id = $1")
            .bind(user_id.trim())
            .fetch_optional(db.pool())
            .await?;
    match hash {
        Some(hash) if verify_password(&hash, password) => Ok(()),
        Some(_) => Err(PortalError::SignInFailed),
        None => {
            verify_nothing(password);
            Err(PortalError::SignInFailed)
        }
    }
}

// ----- sessions ------------------------------------------------------------------------------

/// Whose a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A staff account's (subject: its id).
    Staff,
    /// An end user's (subject: the user id).
    User,
}

impl SessionKind {
    fn name(self) -> &'static str {
        match self {
            SessionKind::Staff => "staff",
            SessionKind::User => "user",
        }
    }

    /// How long a session of this kind lasts.
    pub fn lifetime_secs(self) -> i64 {
        match self {
            SessionKind::Staff => STAFF_SESSION_SECS,
            SessionKind::User => USER_SESSION_SECS,
        }
    }
}

/// A session just started: the cookie's secret (shown to the browser once) and the
/// session's CSRF token.
pub struct NewSession {
    /// The cookie's value.
    pub secret: Zeroizing<String>,
    /// The token every form of the session carries.
    pub csrf: String,
    /// When it ends (seconds since the epoch).
    pub expires: i64,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("secret", &"<redacted>")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A session found by its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Whose it is.
    pub subject: String,
    /// Its forms' CSRF token.
    pub csrf: String,
    /// When it ends (seconds since the epoch).
    pub expires: i64,
}

/// Start a session of `kind` for `subject`.
pub async fn start_session(
    db: &Db,
    kind: SessionKind,
    subject: &str,
    now: i64,
) -> Result<NewSession, PortalError> {
    let secret = Zeroizing::new(random_hex(32));
    let csrf = random_hex(32);
    let expires = now.saturating_add(kind.lifetime_secs());
    // Sessions that have ended go as new ones start.
    sqlx::query("DELETE FROM web_sessions WHERE expires <= $1")
        .bind(now)
        .execute(db.pool())
        .await?;
    sqlx::query(
        "INSERT INTO web_sessions (id_hash, kind, subject, csrf, created, expires) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash(&secret))
    .bind(kind.name())
    .bind(subject)
    .bind(&csrf)
    .bind(now)
    .bind(expires)
    .execute(db.pool())
    .await?;
    Ok(NewSession {
        secret,
        csrf,
        expires,
    })
}

/// The live session of `kind` whose cookie is `secret`.
pub async fn session(
    db: &Db,
    kind: SessionKind,
    secret: &str,
    now: i64,
) -> Result<Option<Session>, PortalError> {
    let row = sqlx::query(
        "SELECT subject, csrf, expires FROM web_sessions \
         WHERE id_hash = $1 AND kind = $2 AND expires > $3",
    )
    .bind(token_hash(secret))
    .bind(kind.name())
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| -> Result<Session, PortalError> {
        Ok(Session {
            subject: r.try_get("subject")?,
            csrf: r.try_get("csrf")?,
            expires: r.try_get("expires")?,
        })
    })
    .transpose()
}

/// The staff account and session behind a console cookie, if both are live (the
/// account not disabled since).
pub async fn staff_session(
    db: &Db,
    secret: &str,
    now: i64,
) -> Result<Option<(Staff, Session)>, PortalError> {
    let Some(session) = session(db, SessionKind::Staff, secret, now).await? else {
        return Ok(None);
    };
    let row = sqlx::query(&format!(
        "SELECT {STAFF_COLUMNS} FROM staff WHERE id = $1 AND disabled IS NULL"
    ))
    .bind(&session.subject)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| staff_row(&r).map(|staff| (staff, session)))
        .transpose()
}

/// End the session whose cookie is `secret` (signing out).
pub async fn end_session(db: &Db, secret: &str) -> Result<(), PortalError> {
    sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
        .bind(token_hash(secret))
        .execute(db.pool())
        .await?;
    Ok(())
}

async fn end_sessions_of(db: &Db, kind: SessionKind, subject: &str) -> Result<(), PortalError> {
    sqlx::query("DELETE FROM web_sessions WHERE kind = $1 AND subject = $2")
        .bind(kind.name())
        .bind(subject)
        .execute(db.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterY"));
        assert!(!verify_password("not a hash", "correct horse battery"));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(matches!(
            hash_password("short"),
            Err(PortalError::Invalid {
                field: "password",
                ..
            })
        ));
        assert!(hash_password(&"x".repeat(MAX_PASSWORD + 1)).is_err());
    }
}
