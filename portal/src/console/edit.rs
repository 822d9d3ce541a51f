//! Editing a license in the console (admin), and the refresh files its devices need.
//!
//! - `GET /console/licenses/{license}/edit`: the form, filled in with the license as it
//!   is: seats, fixed expiry, features, license-level totals, offline use, status, and a
//!   reason (required, audited). Needs [`Action::EditLicense`], as `PATCH
//!   /api/v1/licenses/{id}`.
//! - `POST /console/licenses/{license}/edit`: only the values that differ from the
//!   license's are sent to [`crate::ops::Portal::edit_license`] (what the API calls); a
//!   refusal shows the form again with its message, hint and code, the values kept, and
//!   changes nothing. On success: what changed, and the devices the edit leaves out of
//!   date ([`crate::ops::Portal::outdated`]), each with a button for its refresh file,
//!   the edit's reason carried along.
//! - `GET /console/licenses/{license}/outdated`: the same list at any time, a reason to
//!   give per refresh. Needs [`Action::Refresh`].
//! - `POST /console/licenses/{license}/refresh` (`activation`, `reason`): the refresh
//!   file that gives the device what its license grants now
//!   ([`crate::ops::Portal::refresh_to_license`]), as an attachment
//!   `license_refresh.lic`. Needs [`Action::Refresh`], as `POST
//!   /api/v1/activations/{id}/refresh`.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lic_core::format::{Feature, Features};
use serde::Deserialize;

use super::{ConsolePage, Frame, Signed};
use crate::auth::Action;
use crate::error::PortalError;
use crate::http::{ApiError, AppState};
use crate::ops::{LicenseEdit, LicenseInfo, Outdated, Policy};
use crate::web::{self, Refusal};

/// This module's pages.
pub(super) const PAGES: &[ConsolePage] = &[
    ConsolePage {
        method: "GET",
        path: "/console/licenses/{license}/edit",
        needs: Some(Action::EditLicense),
    },
    ConsolePage {
        method: "POST",
        path: "/console/licenses/{license}/edit",
        needs: Some(Action::EditLicense),
    },
    ConsolePage {
        method: "GET",
        path: "/console/licenses/{license}/outdated",
        needs: Some(Action::Refresh),
    },
    ConsolePage {
        method: "POST",
        path: "/console/licenses/{license}/refresh",
        needs: Some(Action::Refresh),
    },
];

/// The name a refresh file is downloaded as.
pub(crate) const REFRESH_FILE: &str = "license_refresh.lic";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/console/licenses/{license}/edit",
            get(edit_form).post(edit_submit),
        )
        .route("/console/licenses/{license}/outdated", get(outdated_page))
        .route("/console/licenses/{license}/refresh", post(refresh_file))
}

// ----- templates -------------------------------------------------------------------------------

/// The form's values, as text (the license's, or what was sent).
#[derive(Debug, Clone, Default)]
struct Values {
    seats: String,
    expires: String,
    features: String,
    total_limits: String,
    status: String,
    allow_offline: String,
    refuse_over_total: bool,
    reason: String,
}

#[derive(Template)]
#[template(path = "console/edit.html")]
struct EditPage<'a> {
    frame: Frame<'a>,
    license: &'a LicenseInfo,
    policy_offline: bool,
    values: Values,
    refusal: Option<Refusal>,
}

/// One changed field, as the page shows it.
struct Change {
    field: String,
    before: String,
    after: String,
}

/// One out-of-date device, as the page shows it.
struct OutdatedRow {
    activation: String,
    device: String,
    serial: i64,
    last_seen: String,
    differs: String,
    issued: String,
    granted: String,
}

#[derive(Template)]
#[template(path = "console/outdated.html")]
struct OutdatedPage<'a> {
    frame: Frame<'a>,
    license: &'a LicenseInfo,
    /// Just edited: what changed (the page's heading says so).
    edited: bool,
    changes: Vec<Change>,
    rows: Vec<OutdatedRow>,
    /// The edit's reason, carried into each refresh; `None`: each form asks for one.
    reason: Option<String>,
    file_name: &'static str,
}

// ----- handlers --------------------------------------------------------------------------------

/// The license `id`, if the account sees it; else the same "not found" as a missing one.
async fn visible_license(
    state: &AppState,
    signed: &Signed,
    id: &str,
) -> Result<(LicenseInfo, Policy), Response> {
    let refused = |e: PortalError| signed.refusal(state, &ApiError::from(e));
    let license = state.portal.license(id).await.map_err(refused)?;
    signed.sees(state, &license.product, "license", id)?;
    let policy = state
        .portal
        .policy(&license.policy)
        .await
        .map_err(refused)?;
    Ok((license, policy))
}

async fn edit_form(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::EditLicense) {
        return r;
    }
    let (license, policy) = match visible_license(&state, &signed, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let values = current_values(&license, &policy);
    web::page(
        StatusCode::OK,
        &EditPage {
            frame: signed.frame(&state),
            license: &license,
            policy_offline: policy.allow_offline,
            values,
            refusal: None,
        },
    )
}

/// What the edit form sends (every member as text; a checkbox left out when unticked).
#[derive(Debug, Default, Deserialize)]
struct EditFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    seats: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    features: String,
    #[serde(default)]
    total_limits: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    allow_offline: String,
    #[serde(default)]
    refuse_over_total: Option<String>,
}

async fn edit_submit(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<EditFields>,
) -> Response {
    if let Err(r) = signed.check_csrf(&state, &fields.csrf) {
        return r;
    }
    if let Err(r) = signed.require(&state, Action::EditLicense) {
        return r;
    }
    let (license, policy) = match visible_license(&state, &signed, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let sent = Values {
        seats: fields.seats.trim().into(),
        expires: fields.expires.trim().into(),
        features: fields.features.trim().into(),
        total_limits: fields.total_limits.trim().into(),
        status: fields.status.trim().into(),
        allow_offline: fields.allow_offline.trim().into(),
        refuse_over_total: fields.refuse_over_total.is_some(),
        reason: fields.reason.trim().into(),
    };
    let refused = |e: ApiError| {
        web::page(
            e.status(),
            &EditPage {
                frame: signed.frame(&state),
                license: &license,
                policy_offline: policy.allow_offline,
                values: sent.clone(),
                refusal: Some(Refusal::from(&e)),
            },
        )
    };
    // The reason first, in the words the portal uses for it: an edit without one is
    // refused whatever else the form says.
    if sent.reason.is_empty() {
        return refused(ApiError::from(PortalError::Invalid {
            field: "reason",
            reason: "an edit of a license needs a reason (it is audited)".into(),
        }));
    }
    let edit = match edit_from(&license, &policy, &sent) {
        Ok(edit) => edit,
        Err(e) => return refused(ApiError::from(e)),
    };
    let actor = signed.staff.actor();
    let edited = match state
        .portal
        .edit_license(&id, edit, &sent.reason, &actor)
        .await
    {
        Ok(edited) => edited,
        Err(e) => return refused(ApiError::from(e)),
    };
    let outdated = match state.portal.outdated(&id).await {
        Ok(o) => o,
        Err(e) => return signed.refusal(&state, &ApiError::from(e)),
    };
    let changes = edited
        .changes
        .iter()
        .map(|c| Change {
            field: c.field.clone(),
            before: shown_value(&c.field, &c.before),
            after: shown_value(&c.field, &c.after),
        })
        .collect();
    web::page(
        StatusCode::OK,
        &OutdatedPage {
            frame: signed.frame(&state),
            license: &edited.license,
            edited: true,
            changes,
            rows: outdated.iter().map(outdated_row).collect(),
            reason: Some(sent.reason.clone()),
            file_name: REFRESH_FILE,
        },
    )
}

async fn outdated_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::Refresh) {
        return r;
    }
    let (license, _) = match visible_license(&state, &signed, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let outdated = match state.portal.outdated(&id).await {
        Ok(o) => o,
        Err(e) => return signed.refusal(&state, &ApiError::from(e)),
    };
    web::page(
        StatusCode::OK,
        &OutdatedPage {
            frame: signed.frame(&state),
            license: &license,
            edited: false,
            changes: Vec::new(),
            rows: outdated.iter().map(outdated_row).collect(),
            reason: None,
            file_name: REFRESH_FILE,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
struct RefreshFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    activation: String,
    #[serde(default)]
    reason: String,
}

async fn refresh_file(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<RefreshFields>,
) -> Response {
    if let Err(r) = signed.check_csrf(&state, &fields.csrf) {
        return r;
    }
    if let Err(r) = signed.require(&state, Action::Refresh) {
        return r;
    }
    if let Err(r) = visible_license(&state, &signed, &id).await {
        return r;
    }
    let refused = |e: PortalError| signed.refusal(&state, &ApiError::from(e));
    // An activation of another license is, on this license's page, one that is not there.
    match state.portal.activation(&fields.activation).await {
        Ok(a) if a.license == id => {}
        Ok(_) | Err(PortalError::UnknownActivation { .. }) => {
            return refused(PortalError::UnknownActivation {
                activation: fields.activation.clone(),
            });
        }
        Err(e) => return refused(e),
    }
    let actor = signed.staff.actor();
    match state
        .portal
        .refresh_to_license(&fields.activation, &fields.reason, &actor)
        .await
    {
        Ok(Some(file)) => attachment(REFRESH_FILE, file),
        Ok(None) => signed.refusal(
            &state,
            &ApiError::new(
                StatusCode::CONFLICT,
                "up-to-date",
                format!(
                    "activation {} already has the features and expiry license {id} grants; \
                     no refresh file was made",
                    fields.activation
                ),
                "nothing to do for this device; the list of out-of-date devices shows those \
                 that still need one",
            ),
        ),
        Err(e) => refused(e),
    }
}

/// `body` as a file to save, named `name`.
pub(super) fn attachment(name: &str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

// ----- the form's values -----------------------------------------------------------------------

/// The features a license grants: its own list, else its policy's.
fn effective_features(license: &LicenseInfo, policy: &Policy) -> Features {
    license
        .features
        .clone()
        .unwrap_or_else(|| policy.features.clone())
}

fn current_values(license: &LicenseInfo, policy: &Policy) -> Values {
    Values {
        seats: license.seats.to_string(),
        expires: match (license.expires, policy.validity_days) {
            (Some(t), _) => date(t),
            (None, None) => "never".into(),
            // Each activation's own period applies: nothing fixed to show.
            (None, Some(_)) => String::new(),
        },
        features: feature_specs(&effective_features(license, policy)),
        total_limits: total_specs(&license.total_limits),
        status: license.status.clone(),
        allow_offline: match license.allow_offline {
            Some(true) => "yes".into(),
            Some(false) => "no".into(),
            None => String::new(),
        },
        refuse_over_total: license.refuse_over_total,
        reason: String::new(),
    }
}

/// The edit the form asks for: every value that differs from the license's (nothing
/// else, so that an unchanged field is never written).
fn edit_from(
    license: &LicenseInfo,
    policy: &Policy,
    sent: &Values,
) -> Result<LicenseEdit, PortalError> {
    let mut edit = LicenseEdit::default();
    let seats: i64 = sent.seats.parse().map_err(|_| PortalError::Invalid {
        field: "seats",
        reason: format!("'{}' is not a whole number of seats", sent.seats),
    })?;
    if seats != license.seats {
        edit.seats = Some(seats);
    }
    match sent.expires.as_str() {
        "" => {}
        "never" => {
            if license.expires.is_some() || policy.validity_days.is_some() {
                edit.expires = Some(None);
            }
        }
        text => {
            let t = parse_date(text)?;
            if Some(t) != license.expires {
                edit.expires = Some(Some(t));
            }
        }
    }
    if !sent.features.is_empty() {
        let features = parse_features(&sent.features)?;
        if features != effective_features(license, policy) {
            edit.features = Some(features);
        }
    }
    let totals = parse_totals(&sent.total_limits)?;
    if totals != license.total_limits {
        edit.total_limits = Some(totals);
    }
    if !sent.status.is_empty() && sent.status != license.status {
        edit.status = Some(sent.status.clone());
    }
    let offline = match sent.allow_offline.as_str() {
        "" => None,
        "yes" => Some(true),
        "no" => Some(false),
        other => {
            return Err(PortalError::Invalid {
                field: "allow_offline",
                reason: format!("'{other}': choose yes, no, or as the policy says"),
            });
        }
    };
    if offline.is_some() && offline != license.allow_offline {
        edit.allow_offline = offline;
    }
    if sent.refuse_over_total != license.refuse_over_total {
        edit.refuse_over_total = Some(sent.refuse_over_total);
    }
    Ok(edit)
}

/// YYYY-MM-DD (midnight UTC) or RFC 3339.
fn parse_date(text: &str) -> Result<i64, PortalError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
        .ok_or_else(|| PortalError::Invalid {
            field: "expires",
            reason: format!(
                "'{text}' is not a date: give YYYY-MM-DD (e.g. 2027-12-31), or never for no \
                 fixed expiry"
            ),
        })
}

/// `t` as YYYY-MM-DD.
fn date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Features as the command line writes them: `a b=10 c=5+ d=5+2 e:floating=3`
/// (`none`: no feature).
pub(crate) fn feature_specs(features: &Features) -> String {
    if features.is_empty() {
        return "none".into();
    }
    features
        .iter()
        .map(|(name, f)| {
            let mut spec = match (f.limit, f.overage, f.max_overage) {
                (None, _, _) => name.clone(),
                (Some(limit), true, Some(cap)) => format!("{name}={limit}+{cap}"),
                (Some(limit), true, None) => format!("{name}={limit}+"),
                (Some(limit), false, _) => format!("{name}={limit}"),
            };
            if let Some(n) = f.floating {
                spec.push_str(&format!(":floating={n}"));
            }
            spec
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The features in `text` (specs separated by spaces or commas, as [`feature_specs`]
/// writes them; `none`: no feature).
pub(crate) fn parse_features(text: &str) -> Result<Features, PortalError> {
    let invalid = |reason: String| PortalError::Invalid {
        field: "features",
        reason,
    };
    let mut out = Features::new();
    let specs: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .collect();
    if specs == ["none"] {
        return Ok(out);
    }
    let number = |digits: &str, spec: &str, what: &str| {
        digits.parse::<u64>().map_err(|_| {
            invalid(format!(
                "'{spec}': {what} must be a whole number (NAME, NAME=LIMIT, NAME=LIMIT+, \
                 NAME=LIMIT+CAP, each optionally with :floating=N)"
            ))
        })
    };
    for spec in specs {
        let (base, floating) = match spec.split_once(":floating=") {
            Some((base, n)) => (base, Some(number(n, spec, "the floating uses")?)),
            None => (spec, None),
        };
        let (name, mut feature) = match base.split_once('=') {
            None => (base, Feature::default()),
            Some((name, limit)) => {
                let (digits, overage, cap) = match limit.split_once('+') {
                    Some((d, "")) => (d, true, None),
                    Some((d, cap)) => (d, true, Some(number(cap, spec, "the overage cap")?)),
                    None => (limit, false, None),
                };
                (
                    name,
                    Feature {
                        limit: Some(number(digits, spec, "the limit")?),
                        overage,
                        max_overage: cap,
                        floating: None,
                    },
                )
            }
        };
        if name.is_empty() {
            return Err(invalid(format!("'{spec}' has no feature name")));
        }
        feature.floating = floating;
        if out.insert(name.to_string(), feature).is_some() {
            return Err(invalid(format!("feature '{name}' is given twice")));
        }
    }
    Ok(out)
}

/// License-level totals as `a=100 b=5` (empty: none).
fn total_specs(totals: &BTreeMap<String, u64>) -> String {
    totals
        .iter()
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `NAME=LIMIT …` (empty or `none`: no license-level limit).
fn parse_totals(text: &str) -> Result<BTreeMap<String, u64>, PortalError> {
    let invalid = |reason: String| PortalError::Invalid {
        field: "total_limits",
        reason,
    };
    let mut out = BTreeMap::new();
    let specs: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .collect();
    if specs == ["none"] {
        return Ok(out);
    }
    for spec in specs {
        let (name, limit) = spec
            .split_once('=')
            .ok_or_else(|| invalid(format!("'{spec}': give NAME=LIMIT")))?;
        let limit: u64 = limit
            .parse()
            .map_err(|_| invalid(format!("'{spec}': the limit must be a whole number")))?;
        if name.is_empty() {
            return Err(invalid(format!("'{spec}' has no feature name")));
        }
        if out.insert(name.to_string(), limit).is_some() {
            return Err(invalid(format!("'{name}' is given twice")));
        }
    }
    Ok(out)
}

/// A changed field's value as people read it.
fn shown_value(field: &str, value: &serde_json::Value) -> String {
    match (field, value) {
        ("expires", serde_json::Value::Null) => "never (or the policy's period)".into(),
        (_, serde_json::Value::Null) => "the policy's".into(),
        ("expires", serde_json::Value::Number(n)) => n.as_i64().map_or_else(|| n.to_string(), when),
        ("features", features) => serde_json::from_value::<Features>(features.clone())
            .map(|f| feature_specs(&f))
            .unwrap_or_else(|_| features.to_string()),
        (_, serde_json::Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// `t` as `YYYY-MM-DD HH:MM UTC`.
pub(super) fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn entitled(features: &Features, expires: Option<i64>) -> String {
    format!(
        "features {}; expires {}",
        feature_specs(features),
        expires.map_or_else(|| "never".into(), when)
    )
}

fn outdated_row(o: &Outdated) -> OutdatedRow {
    OutdatedRow {
        activation: o.activation.clone(),
        device: o.device_kid.clone(),
        serial: o.serial,
        last_seen: when(o.last_accessed),
        differs: o.differs.join(", "),
        issued: entitled(&o.issued.features, o.issued.expires),
        granted: entitled(&o.granted.features, o.granted.expires),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_specs_read_back_as_they_were_written() {
        let text = "a b=10 c=5+ d=5+2 e=1:floating=3";
        let features = parse_features(text).unwrap_or_default();
        assert_eq!(features.len(), 5);
        assert_eq!(feature_specs(&features), text);
        assert_eq!(parse_features("none").map(|f| f.len()).ok(), Some(0));
        assert_eq!(feature_specs(&Features::new()), "none");
    }

    #[test]
    fn bad_specs_are_refused_with_the_field() {
        for bad in ["a=x", "=5", "a a", "a=5+y", "a:floating=z"] {
            match parse_features(bad) {
                Err(PortalError::Invalid { field, .. }) => assert_eq!(field, "features"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(parse_totals("a").is_err());
        assert!(parse_totals("a=1 a=2").is_err());
        assert_eq!(parse_totals("").map(|t| t.len()).ok(), Some(0));
        assert!(parse_date("31/12/2027").is_err());
        assert_eq!(parse_date("1970-01-02").ok(), Some(86_400));
    }
}
