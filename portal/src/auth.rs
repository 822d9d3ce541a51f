//! API tokens for vendor and support staff: bearer tokens with a role and, optionally, a
//! set of products they are limited to.
//!
//! A token is `lict_` followed by 32 hex digits of the operating system's random number
//! generator (128 bits). It is shown once, when it is created; the database keeps only its
//! SHA-256, so a copy of the database gives no usable token.

use std::fmt;
use std::str::FromStr;

use rand_core::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::db::Db;
use crate::error::PortalError;
use crate::ops::Actor;

/// Every token starts with this, so that a leaked one is easy to recognise (and to scan
/// for in repositories and logs).
pub const TOKEN_PREFIX: &str = "lict_";

/// What a token may do. Each role may do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything: products, policies, licenses, revocations, keys, tokens.
    Admin,
    /// Reading, the audit log, refresh files and applying uploaded device files.
    Support,
    /// Reading products, policies, licenses, activations and public keys.
    ReadOnly,
}

impl Role {
    /// The name used in JSON, in the database and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Support => "support",
            Role::ReadOnly => "read-only",
        }
    }

    /// The role with this name.
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Admin, Role::Support, Role::ReadOnly]
            .into_iter()
            .find(|r| r.name() == name)
    }

    fn rank(self) -> u8 {
        match self {
            Role::ReadOnly => 0,
            Role::Support => 1,
            Role::Admin => 2,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = PortalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::from_name(s).ok_or_else(|| PortalError::Invalid {
            field: "role",
            reason: format!("'{s}' is not a role; use admin, support or read-only"),
        })
    }
}

/// Something a token may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read products, policies, licenses, activations and public keys.
    Read,
    /// Read the audit log.
    ReadAudit,
    /// Apply an uploaded device file (request, deactivation, usage report).
    Apply,
    /// Issue a refresh file for an activation.
    Refresh,
    /// Create a product.
    CreateProduct,
    /// Create a policy.
    CreatePolicy,
    /// Create a license.
    CreateLicense,
    /// Revoke a license.
    RevokeLicense,
    /// Edit a license (seats, expiry, features, offline use, status).
    EditLicense,
    /// Deactivate an activation on the server.
    Deactivate,
    /// Make a new vendor signing key the active one.
    RotateKey,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Set or reset the password an end user of a user-based license signs in with.
    SetUserPassword,
}

impl Action {
    /// The least role that may do this.
    pub fn least_role(self) -> Role {
        match self {
            Action::Read => Role::ReadOnly,
            Action::ReadAudit | Action::Apply | Action::Refresh | Action::SetUserPassword => {
                Role::Support
            }
            Action::CreateProduct
            | Action::CreatePolicy
            | Action::CreateLicense
            | Action::RevokeLicense
            | Action::EditLicense
            | Action::Deactivate
            | Action::RotateKey
            | Action::ManageTokens => Role::Admin,
        }
    }

    /// Whether this acts on the whole portal rather than on one product, so that only a
    /// token for all products may do it. (A token limited to some products must not make
    /// a token for all of them, nor change the key every product's files are signed with.)
    pub fn is_global(self) -> bool {
        matches!(self, Action::RotateKey | Action::ManageTokens)
    }

    /// For messages: "this token may not …".
    pub fn describe(self) -> &'static str {
        match self {
            Action::Read => "read the portal's data",
            Action::ReadAudit => "read the audit log",
            Action::Apply => "apply device files",
            Action::Refresh => "issue refresh files",
            Action::CreateProduct => "create products",
            Action::CreatePolicy => "create policies",
            Action::CreateLicense => "create licenses",
            Action::RevokeLicense => "revoke licenses",
            Action::EditLicense => "edit licenses",
            Action::Deactivate => "deactivate activations",
            Action::RotateKey => "rotate the vendor key (it needs an admin token for all products)",
            Action::ManageTokens => "manage API tokens (it needs an admin token for all products)",
            Action::SetUserPassword => "set end users' passwords",
        }
    }
}

/// Who is calling the API: the token's holder, as authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id (not the secret).
    pub token_id: String,
    /// The name given to the token when it was created (a person or a system).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// The products the token is limited to; `None`: all products.
    pub products: Option<Vec<String>>,
}

impl Principal {
    /// Whether the token's role (and scope, for global actions) allows `action`.
    pub fn can(&self, action: Action) -> bool {
        self.role.rank() >= action.least_role().rank()
            && (!action.is_global() || self.products.is_none())
    }

    /// Whether the token may see (and, with the role for it, change) `product`.
    pub fn sees(&self, product: &str) -> bool {
        self.products
            .as_ref()
            .is_none_or(|products| products.iter().any(|p| p == product))
    }

    /// `Ok` if [`Principal::can`] do `action`, else [`PortalError::Forbidden`].
    pub fn require(&self, action: Action) -> Result<(), PortalError> {
        if self.can(action) {
            Ok(())
        } else {
            Err(PortalError::Forbidden {
                action: action.describe().into(),
            })
        }
    }

    /// The actor the audit log records for what this token does.
    pub fn actor(&self) -> Actor {
        Actor(format!("token:{}", self.name))
    }
}

/// A token as listed: never its secret, nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The token's id, e.g. for revoking it.
    pub id: String,
    /// Who or what uses it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// `None`: all products.
    pub products: Option<Vec<String>>,
    /// Seconds since the epoch.
    pub created: i64,
    /// When it was revoked (seconds since the epoch), if it was.
    pub revoked: Option<i64>,
}

/// `bytes` random bytes of the system's generator, in hex (the bytes are wiped after).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand_core::OsRng.fill_bytes(&mut buf);
    hex::encode(&*buf)
}

/// The SHA-256 (hex) under which a secret (a token, a session) is stored and looked up.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The role and product scope of a row of `tokens` or `staff` (columns `role`,
/// `products`: a JSON list, NULL for all products).
pub(crate) fn scope_of(r: &AnyRow) -> Result<(Role, Option<Vec<String>>), PortalError> {
    let role: String = r.try_get("role")?;
    let products: Option<String> = r.try_get("products")?;
    let role = Role::from_name(&role).ok_or_else(|| PortalError::Invalid {
        field: "role",
        reason: format!("the database holds an unknown role '{role}'"),
    })?;
    let products = products
        .map(|p| {
            serde_json::from_str(&p).map_err(|e| PortalError::Invalid {
                field: "products",
                reason: e.to_string(),
            })
        })
        .transpose()?;
    Ok((role, products))
}

fn token_info(r: &AnyRow) -> Result<TokenInfo, PortalError> {
    let (role, products) = scope_of(r)?;
    Ok(TokenInfo {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role,
        products,
        created: r.try_get("created")?,
        revoked: r.try_get("revoked")?,
    })
}

/// Write an audit entry on `tx` (a transaction, or a connection of the pool).
pub(crate) async fn audit(
    tx: &mut sqlx::AnyConnection,
    now: i64,
    actor: &Actor,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (id, at, actor, action, subject, reason, file_hash, detail) \
         VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)",
    )
    .bind(format!("aud_{}", random_hex(10)))
    .bind(now.saturating_mul(1000))
    .bind(&actor.0)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Create a token (audited as done by [`Actor::cli`]). Returns its id and the secret
/// token, which is shown this once and stored only hashed.
pub async fn create_token(
    db: &Db,
    name: &str,
    role: Role,
    products: Option<Vec<String>>,
    now: i64,
) -> Result<(String, String), PortalError> {
    create_token_as(db, name, role, products, now, &Actor::cli()).await
}

/// [`create_token`], audited as done by `actor`.
pub async fn create_token_as(
    db: &Db,
    name: &str,
    role: Role,
    products: Option<Vec<String>>,
    now: i64,
    actor: &Actor,
) -> Result<(String, String), PortalError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(PortalError::Invalid {
            field: "name",
            reason: "a token needs a name (who or what uses it)".into(),
        });
    }
    if products.as_ref().is_some_and(Vec::is_empty) {
        return Err(PortalError::Invalid {
            field: "products",
            reason: "give at least one product, or none at all for every product".into(),
        });
    }
    let id = format!("tok_{}", random_hex(10));
    let token = format!("{TOKEN_PREFIX}{}", random_hex(16));
    let products_json = products
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| PortalError::Invalid {
            field: "products",
            reason: e.to_string(),
        })?;
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, name, role, products, created, revoked) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(&id)
    .bind(token_hash(&token))
    .bind(name)
    .bind(role.name())
    .bind(&products_json)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let scope = products.map_or_else(|| "all products".to_string(), |p| p.join(", "));
    audit(
        &mut tx,
        now,
        actor,
        "token.create",
        &id,
        &format!("{name}: {role} for {scope}"),
    )
    .await?;
    tx.commit().await?;
    Ok((id, token))
}

/// Who holds `bearer` (the token after `Authorization: Bearer `). An unknown or revoked
/// token is [`PortalError::Unauthenticated`], with no hint which of the two it was.
///
/// The token is found by the unique index on its SHA-256. No constant-time comparison is
/// needed: the lookup compares hashes of a 128-bit random secret, and learning how much of
/// a hash matched (through timing) tells nothing about a token whose hash it would be.
pub async fn authenticate(db: &Db, bearer: &str) -> Result<Principal, PortalError> {
    let bearer = bearer.trim();
    // Not a token this portal made: no need to ask the database.
    if !bearer.starts_with(TOKEN_PREFIX) || bearer.len() > 128 {
        return Err(PortalError::Unauthenticated);
    }
    let row = sqlx::query(
        "SELECT id, name, role, products, created, revoked FROM tokens WHERE token_hash = $1",
    )
    .bind(token_hash(bearer))
    .fetch_optional(db.pool())
    .await?
    .ok_or(PortalError::Unauthenticated)?;
    let info = token_info(&row)?;
    if info.revoked.is_some() {
        return Err(PortalError::Unauthenticated);
    }
    Ok(Principal {
        token_id: info.id,
        name: info.name,
        role: info.role,
        products: info.products,
    })
}

/// One token, by id.
pub async fn token(db: &Db, id: &str) -> Result<TokenInfo, PortalError> {
    let row =
        sqlx::query("SELECT id, name, role, products, created, revoked FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?
            .ok_or_else(|| PortalError::NotFound {
                what: "token",
                id: id.into(),
            })?;
    token_info(&row)
}

/// Revoke a token (audited as done by [`Actor::cli`]): it stops working at once.
/// Revoking a revoked token changes nothing.
pub async fn revoke_token(db: &Db, id: &str, now: i64) -> Result<TokenInfo, PortalError> {
    revoke_token_as(db, id, now, &Actor::cli()).await
}

/// [`revoke_token`], audited as done by `actor`.
pub async fn revoke_token_as(
    db: &Db,
    id: &str,
    now: i64,
    actor: &Actor,
) -> Result<TokenInfo, PortalError> {
    let mut tx = db.begin_write().await?;
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(PortalError::NotFound {
            what: "token",
            id: id.into(),
        });
    }
    let done = sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 1 {
        audit(&mut tx, now, actor, "token.revoke", id, "").await?;
    }
    tx.commit().await?;
    token(db, id).await
}

/// Every token, oldest first: ids, names, roles and scopes — never secrets or hashes.
pub async fn list_tokens(db: &Db) -> Result<Vec<TokenInfo>, PortalError> {
    let rows = sqlx::query(
        "SELECT id, name, role, products, created, revoked FROM tokens ORDER BY created, id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(token_info).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, products: Option<&[&str]>) -> Principal {
        Principal {
            token_id: "tok_1".into(),
            name: "t".into(),
            role,
            products: products.map(|p| p.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn roles_include_the_roles_below_them() {
        let read = principal(Role::ReadOnly, None);
        let support = principal(Role::Support, None);
        let admin = principal(Role::Admin, None);
        assert!(read.can(Action::Read) && !read.can(Action::ReadAudit));
        assert!(support.can(Action::Refresh) && !support.can(Action::CreateLicense));
        assert!(admin.can(Action::ManageTokens) && admin.can(Action::Read));
    }

    #[test]
    fn a_scoped_token_sees_its_products_and_no_global_action() {
        let scoped = principal(Role::Admin, Some(&["a"]));
        assert!(scoped.sees("a") && !scoped.sees("b"));
        assert!(scoped.can(Action::CreateLicense));
        assert!(!scoped.can(Action::ManageTokens) && !scoped.can(Action::RotateKey));
        assert!(principal(Role::ReadOnly, None).sees("anything"));
    }

    #[test]
    fn role_names_round_trip() {
        for role in [Role::Admin, Role::Support, Role::ReadOnly] {
            assert_eq!(role.name().parse::<Role>().ok(), Some(role));
            assert_eq!(
                serde_json::to_string(&role).ok(),
                Some(format!("\"{}\"", role.name()))
            );
        }
        assert!("root".parse::<Role>().is_err());
    }
}
