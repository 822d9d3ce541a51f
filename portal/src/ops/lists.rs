//! Lists, a page at a time: products, policies, licenses, activations and the audit log.
//!
//! Every list has a fixed order on a unique key and is read by that key (keyset
//! pagination), never with OFFSET: a page is `WHERE <filters> AND (key) > (cursor's key)
//! ORDER BY key LIMIT n + 1`, which is one range of one index (migration 5 adds them), as
//! fast on the ten-thousandth page as on the first. The cursor (`next`) is the key of a
//! page's last item, opaque to callers: base64url (no padding) of the JSON array
//! `[LIST, KEY…]`, e.g. `["activations", 1767225600, "act_…"]`. A cursor names its list,
//! so one list's cursor given to another is refused; it holds no filter, so a cursor
//! stays a position, whatever the filters given with it (give the same ones to walk one
//! filtered list). Rows added or removed while a caller pages through are simply there or
//! not when their place is read; no row is returned twice or skipped because of them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value as Json;

use super::*;
use crate::sql::bind;

/// The items a page holds when no limit is given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The audit log's default page (as before lists were paged).
pub const AUDIT_DEFAULT_LIMIT: i64 = 50;
/// The most items a page holds.
pub const MAX_LIMIT: i64 = 1000;

/// Which page of a list: at most `limit` items (1 to [`MAX_LIMIT`]; none: the list's
/// default) after the cursor `after` (the `next` of the page before; none or empty: the
/// first page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: Option<i64>,
    pub after: Option<String>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: i64) -> PageRequest {
        PageRequest {
            limit: Some(limit),
            after: None,
        }
    }

    fn limit(&self, default: i64) -> Result<i64, PortalError> {
        let limit = self.limit.unwrap_or(default);
        if (1..=MAX_LIMIT).contains(&limit) {
            Ok(limit)
        } else {
            Err(PortalError::Invalid {
                field: "limit",
                reason: format!(
                    "{limit} is out of range: give 1 to {MAX_LIMIT} items a page (default \
                     {default}), and follow `next` for more"
                ),
            })
        }
    }

    fn after(&self) -> Option<&str> {
        self.after
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
    }
}

/// One page of a list: its items, and the cursor of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Give it as `after` for the next page; `None`: this is the last page.
    pub next: Option<String>,
}

/// Which policies to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFilter {
    /// Only this product's.
    pub product: Option<String>,
}

/// Which licenses to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseFilter {
    pub product: Option<String>,
    /// `active`, `suspended` or `revoked`.
    pub status: Option<String>,
    /// Only the licenses of this customer (exactly as given at creation).
    pub customer: Option<String>,
}

/// Which activations to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationFilter {
    pub product: Option<String>,
    pub license: Option<String>,
    /// `active` or `deactivated`.
    pub state: Option<String>,
    /// Only the activations of this customer's licenses.
    pub customer: Option<String>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only the entries about this object.
    pub subject: Option<String>,
}

/// More to find licenses by, for the console's search (see [`Portal::search_licenses`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseSearch {
    /// What support was told: a license id or its start (`lic_3f2a`), the whole license
    /// key (compared as activation compares it: without case, spaces or dashes), the
    /// key's last four characters (the hint the portal keeps; keys are stored only
    /// hashed), or an end user's id (exactly). A license matching any of them is listed.
    pub text: Option<String>,
}

/// More to filter the audit log by, for the console (see [`Portal::search_audit`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSearch {
    /// Only entries by this actor (exactly: `staff:NAME`, `token:NAME`, `cli`, …).
    pub actor: Option<String>,
    /// Only entries of this action (exactly: `license.refresh`, …).
    pub action: Option<String>,
    /// Only entries at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// Only entries before this time (seconds since the epoch).
    pub until: Option<i64>,
}

/// The longest search text.
pub const MAX_SEARCH: usize = 256;

/// The license statuses a filter may name.
pub const LICENSE_STATUSES: [&str; 3] = crate::rules::LICENSE_STATUSES;
/// The activation states a filter may name.
pub const ACTIVATION_STATES: [&str; 2] = ["active", "deactivated"];

/// The longest customer name.
pub const MAX_CUSTOMER: usize = 256;

/// A customer given by a person: 1 to [`MAX_CUSTOMER`] characters, not only spaces.
pub(super) fn check_customer(customer: &str) -> Result<(), PortalError> {
    if customer.trim().is_empty() || customer.len() > MAX_CUSTOMER {
        return Err(PortalError::Invalid {
            field: "customer",
            reason: format!("a customer is 1 to {MAX_CUSTOMER} characters"),
        });
    }
    Ok(())
}

fn one_of(value: &str, allowed: &[&str], field: &'static str) -> Result<(), PortalError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(PortalError::Invalid {
            field,
            reason: format!("{value:?} is not one; give {}", allowed.join(" or ")),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum KeyType {
    Int,
    Text,
}

/// A list's order: its name (in cursors), its key columns, and the direction.
struct Order {
    list: &'static str,
    key: &'static [(&'static str, KeyType)],
    descending: bool,
}

const PRODUCTS: Order = Order {
    list: "products",
    key: &[("code", KeyType::Text)],
    descending: false,
};
const POLICIES: Order = Order {
    list: "policies",
    key: &[("product", KeyType::Text), ("name", KeyType::Text)],
    descending: false,
};
const LICENSES: Order = Order {
    list: "licenses",
    key: &[("created", KeyType::Int), ("id", KeyType::Text)],
    descending: false,
};
const ACTIVATIONS: Order = Order {
    list: "activations",
    key: &[("created", KeyType::Int), ("id", KeyType::Text)],
    descending: true,
};
const AUDIT: Order = Order {
    list: "audit",
    key: &[("at", KeyType::Int), ("id", KeyType::Text)],
    descending: true,
};
const LISTS: [&str; 5] = ["products", "policies", "licenses", "activations", "audit"];

/// What a listed activation shows: not its license file, journal or device key (a page of
/// a thousand would carry a megabyte or two of license files no list shows).
const ACTIVATION_COLUMNS: &str = "id, license, product, device_kid, state, closed_by, serial, \
     journal_seq, fork, reactivations, offline_expiry, last_accessed, created, deactivated, variables, \
     lease_expires, checked_out, pool_seats, \
     (SELECT l.floating FROM licenses l WHERE l.id = activations.license) AS floating";

/// Longest cursor read (the portal's own are well under 200 characters).
const MAX_CURSOR: usize = 2048;

impl Order {
    fn cursor(&self, row: &AnyRow) -> Result<String, PortalError> {
        let mut parts = vec![Json::from(self.list)];
        for (column, kind) in self.key {
            parts.push(match kind {
                KeyType::Int => Json::from(row.try_get::<i64, _>(*column)?),
                KeyType::Text => Json::from(row.try_get::<String, _>(*column)?),
            });
        }
        Ok(URL_SAFE_NO_PAD.encode(Json::Array(parts).to_string()))
    }

    /// The key a cursor holds, checked to be one of this list's.
    fn read(&self, cursor: &str) -> Result<Vec<Val>, PortalError> {
        let foreign = || PortalError::InvalidCursor {
            reason: format!(
                "it is not a cursor this portal gave out for the {} list",
                self.list
            ),
        };
        if cursor.len() > MAX_CURSOR {
            return Err(foreign());
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| foreign())?;
        let parts: Vec<Json> = serde_json::from_slice(&bytes).map_err(|_| foreign())?;
        let Some((list, key)) = parts.split_first() else {
            return Err(foreign());
        };
        match list.as_str() {
            Some(l) if l == self.list => {}
            Some(other) if LISTS.contains(&other) => {
                return Err(PortalError::InvalidCursor {
                    reason: format!(
                        "it is a cursor of the {other} list, given to the {} list",
                        self.list
                    ),
                });
            }
            _ => return Err(foreign()),
        }
        if key.len() != self.key.len() {
            return Err(foreign());
        }
        key.iter()
            .zip(self.key)
            .map(|(v, (_, kind))| match kind {
                KeyType::Int => v.as_i64().map(Val::Int),
                KeyType::Text => v.as_str().map(Val::from),
            })
            .collect::<Option<Vec<Val>>>()
            .ok_or_else(foreign)
    }
}

/// The conditions and arguments of a list's query.
#[derive(Default)]
struct Select {
    conds: Vec<String>,
    args: Vec<Val>,
    /// A column the conditions fix to one value, named first in the ORDER BY (which does
    /// not change the order) so that the planner reads the index that starts with it:
    /// PostgreSQL otherwise may walk the list's whole order and skip rows, when it
    /// misjudges how far away the first match is.
    lead: Option<&'static str>,
}

impl Select {
    /// Bind `v`; its placeholder.
    fn arg(&mut self, v: impl Into<Val>) -> String {
        self.args.push(v.into());
        format!("${}", self.args.len())
    }

    /// `column = v`.
    fn eq(&mut self, column: &'static str, v: &str) {
        let p = self.arg(v);
        self.conds.push(format!("{column} = {p}"));
    }

    /// `column = v`, and read through the index (column, key) unless another filter's
    /// index was chosen before (the most selective filter comes first).
    fn eq_indexed(&mut self, column: &'static str, v: &str) {
        self.eq(column, v);
        self.lead.get_or_insert(column);
    }

    /// Only the rows of the products a token is limited to.
    fn scope(&mut self, column: &str, scope: Option<&[String]>) {
        match scope {
            None => {}
            Some([]) => self.conds.push("1 = 0".into()),
            Some(products) => {
                let ps: Vec<String> = products.iter().map(|p| self.arg(p)).collect();
                self.conds.push(format!("{column} IN ({})", ps.join(", ")));
            }
        }
    }
}

impl Portal {
    /// One page of `table` (its columns `columns_read`) in `order` with the conditions of
    /// `sel`: the rows, and the cursor after the last one if more follow.
    async fn page_rows(
        &self,
        (table, columns_read): (&str, &str),
        order: &Order,
        mut sel: Select,
        page: &PageRequest,
        default_limit: i64,
    ) -> Result<(Vec<AnyRow>, Option<String>), PortalError> {
        let limit = page.limit(default_limit)?;
        let columns: Vec<&str> = order.key.iter().map(|(c, _)| *c).collect();
        if let Some(after) = page.after() {
            let key = order.read(after)?;
            let ps: Vec<String> = key.into_iter().map(|v| sel.arg(v)).collect();
            let op = if order.descending { "<" } else { ">" };
            sel.conds
                .push(format!("({}) {op} ({})", columns.join(", "), ps.join(", ")));
        }
        let dir = if order.descending { " DESC" } else { "" };
        let order_by: Vec<String> = sel
            .lead
            .iter()
            .chain(&columns)
            .map(|c| format!("{c}{dir}"))
            .collect();
        let filter = if sel.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", sel.conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {columns_read} FROM {table}{filter} ORDER BY {} LIMIT {}",
            order_by.join(", "),
            limit + 1
        );
        let mut rows = bind(sqlx::query(&sql), sel.args)
            .fetch_all(self.db.pool())
            .await?;
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = match rows.last() {
            Some(last) if more => Some(order.cursor(last)?),
            _ => None,
        };
        Ok((rows, next))
    }

    /// Rows of `sql` (which ends in `IN (`) for `ids`.
    async fn rows_in(
        &self,
        sql: &str,
        ids: &[String],
        tail: &str,
    ) -> Result<Vec<AnyRow>, PortalError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ps: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!("{sql}{}){tail}", ps.join(", "));
        let args = ids.iter().map(Val::from).collect();
        Ok(bind(sqlx::query(&sql), args)
            .fetch_all(self.db.pool())
            .await?)
    }

    /// Refuse a product filter naming a product that does not exist, or that the token
    /// does not see (the same "not found").
    async fn check_product_filter(
        &self,
        product: &str,
        scope: Option<&[String]>,
    ) -> Result<(), PortalError> {
        if scope.is_some_and(|s| !s.iter().any(|p| p == product)) {
            return Err(PortalError::NotFound {
                what: "product",
                id: product.into(),
            });
        }
        self.product(product).await.map(|_| ())
    }

    /// A page of products, by code.
    pub async fn list_products(
        &self,
        scope: Option<&[String]>,
        page: &PageRequest,
    ) -> Result<Page<Product>, PortalError> {
        let mut sel = Select::default();
        sel.scope("code", scope);
        let (rows, next) = self
            .page_rows(("products", "*"), &PRODUCTS, sel, page, DEFAULT_LIMIT)
            .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(Product {
                    code: r.try_get("code")?,
                    name: r.try_get("name")?,
                    created: r.try_get("created")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Page { items, next })
    }

    /// A page of policies, by product and name.
    pub async fn list_policies(
        &self,
        filter: &PolicyFilter,
        scope: Option<&[String]>,
        page: &PageRequest,
    ) -> Result<Page<Policy>, PortalError> {
        let mut sel = Select::default();
        if let Some(p) = &filter.product {
            self.check_product_filter(p, scope).await?;
            sel.eq("product", p);
        }
        sel.scope("product", scope);
        let (rows, next) = self
            .page_rows(("policies", "*"), &POLICIES, sel, page, DEFAULT_LIMIT)
            .await?;
        let items = rows.iter().map(policy_row).collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    /// A page of licenses, oldest first (by creation time, then id).
    pub async fn list_licenses(
        &self,
        filter: &LicenseFilter,
        scope: Option<&[String]>,
        page: &PageRequest,
    ) -> Result<Page<LicenseInfo>, PortalError> {
        self.search_licenses(filter, &LicenseSearch::default(), scope, page)
            .await
    }

    /// [`Portal::list_licenses`], also matching `search` (the console's search box).
    pub async fn search_licenses(
        &self,
        filter: &LicenseFilter,
        search: &LicenseSearch,
        scope: Option<&[String]>,
        page: &PageRequest,
    ) -> Result<Page<LicenseInfo>, PortalError> {
        let mut sel = Select::default();
        if let Some(text) = search.text.as_deref().map(str::trim) {
            if text.is_empty() || text.len() > MAX_SEARCH || text.chars().any(char::is_control) {
                return Err(PortalError::Invalid {
                    field: "search",
                    reason: format!(
                        "search for 1 to {MAX_SEARCH} printable characters: a license id or \
                         its start, a license key or its last four characters, or a user id"
                    ),
                });
            }
            let mut any = Vec::new();
            // A prefix of the id, compared as text (no LIKE: its wildcards are in ids).
            let p = sel.arg(text);
            any.push(format!("substr(id, 1, {}) = {p}", text.len()));
            let p = sel.arg(key_hash(text));
            any.push(format!("key_hash = {p}"));
            let hint: String = text
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_uppercase())
                .collect();
            if hint.len() == 4 {
                let p = sel.arg(hint);
                any.push(format!("key_hint = {p}"));
            }
            let p = sel.arg(text);
            any.push(format!("user_id = {p}"));
            sel.conds.push(format!("({})", any.join(" OR ")));
        }
        if let Some(c) = &filter.customer {
            check_customer(c)?;
            sel.eq_indexed("customer", c);
        }
        if let Some(p) = &filter.product {
            self.check_product_filter(p, scope).await?;
            sel.eq_indexed("product", p);
        }
        if let Some(s) = &filter.status {
            one_of(s, &LICENSE_STATUSES, "status")?;
            sel.eq_indexed("status", s);
        }
        sel.scope("product", scope);
        let (rows, next) = self
            .page_rows(("licenses", "*"), &LICENSES, sel, page, DEFAULT_LIMIT)
            .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        // The page's usage in one query.
        let mut usage: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for u in self
            .rows_in(
                "SELECT license, feature, total FROM usage_totals WHERE license IN (",
                &ids,
                "",
            )
            .await?
        {
            usage
                .entry(u.try_get("license")?)
                .or_default()
                .insert(u.try_get("feature")?, u.try_get("total")?);
        }
        let items = rows
            .iter()
            .zip(&ids)
            .map(|(r, id)| Self::license_info_with(r, usage.remove(id).unwrap_or_default()))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    /// A page of activations, newest first (by creation time, then id, descending).
    pub async fn list_activations(
        &self,
        filter: &ActivationFilter,
        scope: Option<&[String]>,
        page: &PageRequest,
    ) -> Result<Page<Activation>, PortalError> {
        let mut sel = Select::default();
        if let Some(l) = &filter.license {
            let product: Option<String> =
                sqlx::query_scalar("SELECT product FROM licenses WHERE id = $1")
                    .bind(l)
                    .fetch_optional(self.db.pool())
                    .await?;
            if !product.is_some_and(|p| scope.is_none_or(|s| s.contains(&p))) {
                return Err(PortalError::NotFound {
                    what: "license",
                    id: l.clone(),
                });
            }
            sel.eq_indexed("license", l);
        }
        if let Some(p) = &filter.product {
            self.check_product_filter(p, scope).await?;
            sel.eq_indexed("product", p);
        }
        if let Some(s) = &filter.state {
            one_of(s, &ACTIVATION_STATES, "state")?;
            sel.eq_indexed("state", s);
        }
        if let Some(c) = &filter.customer {
            check_customer(c)?;
            let p = sel.arg(c);
            sel.conds.push(format!(
                "license IN (SELECT l.id FROM licenses l WHERE l.customer = {p})"
            ));
        }
        sel.scope("product", scope);
        let (rows, next) = self
            .page_rows(
                ("activations", ACTIVATION_COLUMNS),
                &ACTIVATIONS,
                sel,
                page,
                DEFAULT_LIMIT,
            )
            .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut usage: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for u in self
            .rows_in(
                "SELECT activation, feature, reported FROM usage_reported WHERE activation IN (",
                &ids,
                "",
            )
            .await?
        {
            usage
                .entry(u.try_get("activation")?)
                .or_default()
                .insert(u.try_get("feature")?, u.try_get("reported")?);
        }
        let mut flags: BTreeMap<String, Vec<Flag>> = BTreeMap::new();
        for f in self
            .rows_in(
                "SELECT * FROM activation_flags WHERE activation IN (",
                &ids,
                " ORDER BY at, kind, file_hash",
            )
            .await?
        {
            let (activation, flag) = Flag::from_row(&f)?;
            flags.entry(activation).or_default().push(flag);
        }
        let now = self.now().timestamp();
        let mut instances: BTreeMap<String, u64> = BTreeMap::new();
        for i in self
            .rows_in(
                "SELECT activation, expires FROM lease_instances WHERE activation IN (",
                &ids,
                "",
            )
            .await?
        {
            if i.try_get::<i64, _>("expires")? > now {
                *instances.entry(i.try_get("activation")?).or_default() += 1;
            }
        }
        let items = rows
            .iter()
            .zip(&ids)
            .map(|(r, id)| {
                Self::activation_from(
                    r,
                    usage.remove(id).unwrap_or_default(),
                    flags.remove(id).unwrap_or_default(),
                    now,
                    instances.get(id).copied().unwrap_or(0),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    /// A page of the audit log, newest first (by time, then id, descending). Who may read
    /// which entries is the caller's to check (the API: a token limited to some products
    /// names a subject of its products).
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, PortalError> {
        self.search_audit(filter, &AuditSearch::default(), page)
            .await
    }

    /// [`Portal::list_audit`], also filtered by `search` (actor, action, time range).
    pub async fn search_audit(
        &self,
        filter: &AuditFilter,
        search: &AuditSearch,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, PortalError> {
        let mut sel = Select::default();
        if let Some(s) = &filter.subject {
            sel.eq_indexed("subject", s);
        }
        if let Some(a) = &search.actor {
            sel.eq("actor", a);
        }
        if let Some(a) = &search.action {
            sel.eq("action", a);
        }
        // The log's times are milliseconds.
        if let Some(t) = search.since {
            let p = sel.arg(Val::Int(t.saturating_mul(1000)));
            sel.conds.push(format!("at >= {p}"));
        }
        if let Some(t) = search.until {
            let p = sel.arg(Val::Int(t.saturating_mul(1000)));
            sel.conds.push(format!("at < {p}"));
        }
        let (rows, next) = self
            .page_rows(("audit", "*"), &AUDIT, sel, page, AUDIT_DEFAULT_LIMIT)
            .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    reason: r.try_get("reason")?,
                    file_hash: r.try_get("file_hash")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Page { items, next })
    }
}

/// Every item of a list, page after page: `every!(page => CALL)` runs `CALL` (which reads
/// the [`PageRequest`] `page`) until the last page (for small lists and tests; people and
/// scripts page with `next`). A macro, not a function taking an async closure: the
/// futures stay `Send`.
macro_rules! every {
    ($page:ident => $call:expr) => {{
        let mut out = Vec::new();
        let mut $page = PageRequest::first(MAX_LIMIT);
        loop {
            let p = $call?;
            out.extend(p.items);
            match p.next {
                Some(next) => $page.after = Some(next),
                None => break Ok(out),
            }
        }
    }};
}
pub(super) use every;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_its_list_and_is_read_back() {
        let encoded = URL_SAFE_NO_PAD.encode(r#"["activations",1767225600,"act_1"]"#);
        assert_eq!(
            ACTIVATIONS.read(&encoded).unwrap(),
            vec![Val::Int(1_767_225_600), Val::from("act_1")]
        );
        let err = LICENSES.read(&encoded).unwrap_err();
        assert_eq!(err.code(), "invalid-cursor");
        assert!(
            err.to_string()
                .contains("of the activations list, given to the licenses list"),
            "{err}"
        );
        for bad in [
            "",
            "!!!",
            "bm90IGpzb24", // "not json"
            &URL_SAFE_NO_PAD.encode("[]"),
            &URL_SAFE_NO_PAD.encode(r#"["activations",1]"#),
            &URL_SAFE_NO_PAD.encode(r#"["activations","x","act_1"]"#),
            &URL_SAFE_NO_PAD.encode(r#"["elsewhere",1,"a"]"#),
            &"A".repeat(MAX_CURSOR + 4),
        ] {
            let err = ACTIVATIONS.read(bad).unwrap_err();
            assert_eq!(err.code(), "invalid-cursor", "{bad}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn a_limit_is_one_to_the_maximum() {
        assert_eq!(PageRequest::default().limit(DEFAULT_LIMIT).unwrap(), 100);
        assert_eq!(PageRequest::first(1).limit(DEFAULT_LIMIT).unwrap(), 1);
        assert_eq!(PageRequest::first(MAX_LIMIT).limit(5).unwrap(), MAX_LIMIT);
        for bad in [0, -1, MAX_LIMIT + 1, i64::MAX] {
            let err = PageRequest::first(bad).limit(DEFAULT_LIMIT).unwrap_err();
            assert!(err.to_string().contains("give 1 to 1000"), "{err}");
        }
    }
}
