//! The console's licenses: the search (`/console/licenses`), a license's page
//! (`/console/licenses/{license}`: policy, entitlements, status, seats) and, for a
//! user-based license, support's form to set or reset the end user's password.
//!
//! Each page checks what the API route it mirrors checks: reading needs
//! [`Action::Read`] (`GET /api/v1/licenses`, `GET /api/v1/licenses/{id}`); a license of a
//! product outside the account's scope is "not found", in the words of a missing id; a
//! password needs [`Action::SetUserPassword`] and the session's CSRF token.

use askama::Template;
use axum::Router;
use axum::extract::{FromRequest as _, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ConsolePage, Frame, Signed, encode_query};
use crate::accounts;
use crate::auth::Action;
use crate::error::PortalError;
use crate::http::{ApiError, AppState};
use crate::ops::{
    Activation, LicenseFilter, LicenseInfo, LicenseSearch, PageRequest, Policy, Product,
};

/// This module's pages.
pub(super) const PAGES: &[ConsolePage] = &[
    ConsolePage {
        method: "GET",
        path: "/console/licenses",
        needs: Some(Action::Read),
    },
    ConsolePage {
        method: "GET",
        path: "/console/licenses/{license}",
        needs: Some(Action::Read),
    },
    ConsolePage {
        method: "POST",
        path: "/console/licenses/{license}/password",
        needs: Some(Action::SetUserPassword),
    },
];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/licenses", get(search))
        .route("/console/licenses/{license}", get(license_page))
        .route("/console/licenses/{license}/password", post(set_password))
}

/// Licenses a search page shows.
const PAGE_SIZE: i64 = 25;

// ----- shared by the console's license, device and audit pages -----------------------------------

/// A time (seconds since the epoch) as people read it, in UTC.
pub(super) fn when(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// A date (`YYYY-MM-DD`, from a date input) as the start of that day, UTC.
pub(super) fn date_start(field: &'static str, text: &str) -> Result<i64, ApiError> {
    chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
        .ok_or_else(|| {
            ApiError::from(PortalError::Invalid {
                field,
                reason: format!("{text:?} is not a date; give it as YYYY-MM-DD"),
            })
        })
}

/// The form of a POST, its fields all optional text: a body that is not a form is
/// refused as a page (what is wrong, what to do), never with the framework's words.
pub(super) async fn read_form<T: DeserializeOwned>(
    signed: &Signed,
    state: &AppState,
    request: Request,
) -> Result<T, Response> {
    match axum::Form::<T>::from_request(request, &()).await {
        Ok(axum::Form(fields)) => Ok(fields),
        Err(e) => Err(signed.refusal(
            state,
            &ApiError::new(
                e.status(),
                "bad-request",
                e.body_text(),
                "send the form from the console's own page",
            ),
        )),
    }
}

/// The license `id`, if the account sees it; else the same 404 as for a missing one.
pub(super) async fn visible_license(
    signed: &Signed,
    state: &AppState,
    id: &str,
) -> Result<LicenseInfo, Response> {
    let license = state
        .portal
        .license(id)
        .await
        .map_err(|e| signed.refusal(state, &ApiError::from(e)))?;
    signed.sees(state, &license.product, "license", id)?;
    Ok(license)
}

/// The activation `id`, if the account sees it; else the same 404 as for a missing one.
pub(super) async fn visible_activation(
    signed: &Signed,
    state: &AppState,
    id: &str,
) -> Result<Activation, Response> {
    let unknown = || {
        ApiError::from(PortalError::UnknownActivation {
            activation: id.into(),
        })
    };
    let activation = state
        .portal
        .activation(id)
        .await
        .map_err(|e| signed.refusal(state, &ApiError::from(e)))?;
    if signed.staff.principal().sees(&activation.product) {
        Ok(activation)
    } else {
        Err(signed.refusal(state, &unknown()))
    }
}

/// When a license ends, in words: its date, the policy's validity counted from each
/// device's activation, or never.
pub(super) fn expiry(license: &LicenseInfo, policy: &Policy) -> String {
    match (license.expires, policy.validity_days) {
        (Some(t), _) => when(t),
        (None, Some(days)) => format!("{days} days after each device's activation"),
        (None, None) => "never".into(),
    }
}

/// A feature's terms in words: "unlimited", "limit 1000", "limit 1000, overage to 1200",
/// "floating: 3 at once".
pub(super) fn feature_terms(f: &lic_core::format::Feature) -> String {
    let mut parts = Vec::new();
    match f.limit {
        Some(limit) => parts.push(format!("limit {limit}")),
        None => parts.push("unlimited".into()),
    }
    if f.overage {
        parts.push(match f.max_overage {
            Some(m) => format!("overage up to {m} more"),
            None => "overage without end".into(),
        });
    }
    if let Some(n) = f.floating {
        parts.push(format!("floating: {n} at once"));
    }
    parts.join(", ")
}

/// A feature as a page lists it.
pub(super) struct FeatureRow {
    pub(super) name: String,
    pub(super) terms: String,
}

pub(super) fn feature_rows(features: &lic_core::format::Features) -> Vec<FeatureRow> {
    features
        .iter()
        .map(|(name, f)| FeatureRow {
            name: name.clone(),
            terms: feature_terms(f),
        })
        .collect()
}

// ----- the search --------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    customer: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    after: String,
}

struct Row {
    id: String,
    product: String,
    who: String,
    customer: String,
    status: String,
    seats: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "console/licenses.html")]
struct SearchPage<'a> {
    frame: Frame<'a>,
    q: &'a str,
    customer: &'a str,
    product: &'a str,
    status: &'a str,
    products: Vec<Product>,
    statuses: &'static [&'static str],
    rows: Vec<Row>,
    next: Option<String>,
    searched: bool,
    refusal: Option<crate::web::Refusal>,
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

async fn search(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<SearchQuery>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::Read) {
        return r;
    }
    let principal = signed.staff.principal();
    let scope = principal.products.as_deref();
    let products = match state
        .portal
        .list_products(scope, &PageRequest::first(crate::ops::MAX_LIMIT))
        .await
    {
        Ok(p) => p.items,
        Err(e) => return signed.refusal(&state, &ApiError::from(e)),
    };
    let filter = LicenseFilter {
        product: some(&q.product),
        status: some(&q.status),
        customer: some(&q.customer),
    };
    let text = LicenseSearch { text: some(&q.q) };
    let page = PageRequest {
        limit: Some(PAGE_SIZE),
        after: some(&q.after),
    };
    let (rows, next, refusal, status) = match state
        .portal
        .search_licenses(&filter, &text, scope, &page)
        .await
    {
        Ok(found) => {
            let rows = found
                .items
                .into_iter()
                .map(|l| Row {
                    who: match (&l.user_id, &l.key_hint) {
                        (Some(user), _) => format!("user {user}"),
                        (None, Some(hint)) => format!("key …{hint}"),
                        (None, None) => String::new(),
                    },
                    customer: l.customer.clone().unwrap_or_default(),
                    seats: format!("{} of {}", l.seats_used, l.seats),
                    expires: l.expires.map(when).unwrap_or_else(|| "never".into()),
                    id: l.id,
                    product: l.product,
                    status: l.status,
                })
                .collect();
            let next = found.next.map(|cursor| {
                format!(
                    "/console/licenses?q={}&customer={}&product={}&status={}&after={}",
                    encode_query(&q.q),
                    encode_query(&q.customer),
                    encode_query(&q.product),
                    encode_query(&q.status),
                    encode_query(&cursor)
                )
            });
            (rows, next, None, StatusCode::OK)
        }
        Err(e) => {
            let e = ApiError::from(e);
            let status = e.status();
            (
                Vec::new(),
                None,
                Some(crate::web::Refusal::from(&e)),
                status,
            )
        }
    };
    crate::web::page(
        status,
        &SearchPage {
            frame: signed.frame(&state),
            q: &q.q,
            customer: &q.customer,
            product: &q.product,
            status: &q.status,
            products,
            statuses: &crate::ops::LICENSE_STATUSES,
            rows,
            next,
            searched: some(&q.q).is_some()
                || some(&q.customer).is_some()
                || some(&q.product).is_some()
                || some(&q.status).is_some(),
            refusal,
        },
    )
}

// ----- a license ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/license.html")]
struct LicensePage<'a> {
    frame: Frame<'a>,
    license: LicenseInfo,
    policy: Policy,
    license_type: String,
    features: Vec<FeatureRow>,
    limits: Vec<(String, String)>,
    expires: String,
    created: String,
    offline: &'static str,
    may_set_password: bool,
    password_set: bool,
    refusal: Option<crate::web::Refusal>,
    active_devices: usize,
}

#[derive(Debug, Default, Deserialize)]
struct LicenseQuery {
    #[serde(default)]
    password: String,
}

async fn license_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<LicenseQuery>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::Read) {
        return r;
    }
    render_license(&state, &signed, &id, q.password == "set", None).await
}

async fn render_license(
    state: &AppState,
    signed: &Signed,
    id: &str,
    password_set: bool,
    refusal: Option<&ApiError>,
) -> Response {
    let license = match visible_license(signed, state, id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let policy = match state.portal.policy(&license.policy).await {
        Ok(p) => p,
        Err(e) => return signed.refusal(state, &ApiError::from(e)),
    };
    let scope = signed.staff.products.as_deref();
    let active_devices = match state.portal.activations(Some(id), scope).await {
        Ok(list) => list.iter().filter(|a| a.state == "active").count(),
        Err(e) => return signed.refusal(state, &ApiError::from(e)),
    };
    let features = feature_rows(license.features.as_ref().unwrap_or(&policy.features));
    let limits = license
        .total_limits
        .iter()
        .map(|(name, limit)| {
            let used = license.usage.get(name).copied().unwrap_or(0);
            (name.clone(), format!("{used} of {limit} used"))
        })
        .collect();
    let offline = if license.allow_offline.unwrap_or(policy.allow_offline) {
        "allowed"
    } else {
        "not allowed"
    };
    let status = refusal.map_or(StatusCode::OK, ApiError::status);
    crate::web::page(
        status,
        &LicensePage {
            frame: signed.frame(state),
            license_type: serde_json::to_value(policy.license_type)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            features,
            limits,
            expires: expiry(&license, &policy),
            created: when(license.created),
            offline,
            may_set_password: license.user_id.is_some()
                && signed.staff.principal().can(Action::SetUserPassword),
            password_set,
            refusal: refusal.map(crate::web::Refusal::from),
            active_devices,
            license,
            policy,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
struct PasswordFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn set_password(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    // The role first, as the API's gate does, before the body is read; the CSRF token
    // before anything is done.
    if let Err(r) = signed.require(&state, Action::SetUserPassword) {
        return r;
    }
    let fields: PasswordFields = match read_form(&signed, &state, request).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = signed.check_csrf(&state, &fields.csrf) {
        return r;
    }
    let license = match visible_license(&signed, &state, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Err(e) = set_user_password(&signed, &state, &license, fields).await {
        return render_license(&state, &signed, &id, false, Some(&e)).await;
    }
    Redirect::to(&format!(
        "/console/licenses/{}?password=set",
        encode_query(&license.id)
    ))
    .into_response()
}

async fn set_user_password(
    signed: &Signed,
    state: &AppState,
    license: &LicenseInfo,
    fields: PasswordFields,
) -> Result<(), ApiError> {
    let password = zeroize::Zeroizing::new(fields.password);
    let confirm = zeroize::Zeroizing::new(fields.confirm);
    let Some(user) = license.user_id.as_deref() else {
        return Err(PortalError::Invalid {
            field: "license",
            reason: "this license is activated with a license key, not by an end user who \
                     signs in: it has no password"
                .into(),
        }
        .into());
    };
    if *password != *confirm {
        return Err(PortalError::Invalid {
            field: "confirm",
            reason: "the two passwords differ; type the same password twice".into(),
        }
        .into());
    }
    let now = chrono::Utc::now().timestamp();
    accounts::set_user_password(
        state.portal.db(),
        user,
        &password,
        now,
        &signed.staff.actor(),
    )
    .await?;
    Ok(())
}
