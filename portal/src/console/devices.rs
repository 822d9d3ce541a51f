//! The console's devices: a license's devices tab (`/console/licenses/{license}/devices`),
//! a device's page (`/console/activations/{activation}`: details, journal, warnings), and
//! on it support's refresh file and admin's server-side deactivation.
//!
//! As the API routes they mirror: reading needs [`Action::Read`]; a refresh file
//! (`POST /api/v1/activations/{id}/refresh`) needs [`Action::Refresh`] and a reason; a
//! deactivation on the server (`POST /api/v1/activations/{id}/deactivate`) needs
//! [`Action::Deactivate`] and a reason, and is refused before the seat's Offline Expiry
//! Date. An activation of a product outside the account's scope is unknown, in the words
//! of a missing one. Every form carries the session's CSRF token, checked first.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Redirect, Response};
use axum::routing::{get, post};
use lic_core::format::{Feature, Features};
use serde::Deserialize;

use super::licenses::{
    FeatureRow, expiry, feature_rows, read_form, visible_activation, visible_license, when,
};
use super::{ConsolePage, Frame, Signed, encode_query};
use crate::auth::Action;
use crate::error::PortalError;
use crate::http::{ApiError, AppState};
use crate::ops::{Activation, LicenseInfo, RefreshSpec};

/// This module's pages.
pub(super) const PAGES: &[ConsolePage] = &[
    ConsolePage {
        method: "GET",
        path: "/console/licenses/{license}/devices",
        needs: Some(Action::Read),
    },
    ConsolePage {
        method: "GET",
        path: "/console/activations/{activation}",
        needs: Some(Action::Read),
    },
    ConsolePage {
        method: "POST",
        path: "/console/activations/{activation}/refresh",
        needs: Some(Action::Refresh),
    },
    ConsolePage {
        method: "POST",
        path: "/console/activations/{activation}/deactivate",
        needs: Some(Action::Deactivate),
    },
];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/licenses/{license}/devices", get(devices_tab))
        .route("/console/activations/{activation}", get(device_page))
        .route("/console/activations/{activation}/refresh", post(refresh))
        .route(
            "/console/activations/{activation}/deactivate",
            post(deactivate),
        )
}

/// The refresh file's default name, as the browser saves it.
pub(crate) const REFRESH_FILE_NAME: &str = "license_refresh.lic";

/// A device as the pages show it.
struct Device {
    id: String,
    device_kid: String,
    state: String,
    closed_by: String,
    last_accessed: String,
    created: String,
    deactivated: String,
    /// The Offline Expiry Date or the lease's end, in words; empty if neither.
    until: String,
    serial: i64,
    journal_seq: i64,
    fork: String,
    reactivations: i64,
    variables: Vec<(String, String)>,
    usage: Vec<(String, i64)>,
    flags: Vec<FlagRow>,
    /// Every flag raised, those kept and those only counted (`repeats`).
    flags_raised: u64,
    /// The kinds of flag raised, each with how many times, in the order first raised.
    flag_kinds: Vec<(String, u64)>,
    /// The Offline Expiry Date still ahead: no deactivation on the server before it.
    oed_ahead: Option<String>,
    floating: bool,
    pool_seats: Option<i64>,
}

struct FlagRow {
    kind: String,
    at: String,
    detail: String,
    /// Flags of the kind raised after this one and not kept.
    repeats: u64,
}

impl Device {
    fn from(a: Activation, now: i64) -> Device {
        let until = match (a.offline_expiry, a.lease_expires) {
            (Some(oed), _) => format!("Offline Expiry Date {}", when(oed)),
            (None, Some(lease)) => format!("lease until {}", when(lease)),
            (None, None) => String::new(),
        };
        Device {
            oed_ahead: a.offline_expiry.filter(|&t| t > now).map(when),
            until,
            last_accessed: when(a.last_accessed),
            created: when(a.created),
            deactivated: a.deactivated.map(when).unwrap_or_default(),
            closed_by: a.closed_by.unwrap_or_default(),
            fork: a.fork.unwrap_or_default(),
            variables: a.variables.into_iter().collect(),
            usage: a.usage.into_iter().collect(),
            flags_raised: a.flags.iter().map(crate::ops::Flag::raised).sum(),
            flag_kinds: a.flags.iter().fold(Vec::new(), |mut kinds, f| {
                match kinds.iter_mut().find(|(k, _)| *k == f.kind) {
                    Some((_, n)) => *n += f.raised(),
                    None => kinds.push((f.kind.clone(), f.raised())),
                }
                kinds
            }),
            flags: a
                .flags
                .into_iter()
                .map(|f| FlagRow {
                    kind: f.kind,
                    at: when(f.at),
                    detail: f.detail,
                    repeats: f.repeats,
                })
                .collect(),
            id: a.id,
            device_kid: a.device_kid,
            state: a.state,
            serial: a.serial,
            journal_seq: a.journal_seq,
            reactivations: a.reactivations,
            floating: a.floating,
            pool_seats: a.pool_seats,
        }
    }
}

// ----- the devices tab ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/devices.html")]
struct DevicesPage<'a> {
    frame: Frame<'a>,
    license: LicenseInfo,
    devices: Vec<Device>,
    tab: &'static str,
}

async fn devices_tab(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::Read) {
        return r;
    }
    let license = match visible_license(&signed, &state, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let scope = signed.staff.products.as_deref();
    let activations = match state.portal.activations(Some(&id), scope).await {
        Ok(list) => list,
        Err(e) => return signed.refusal(&state, &ApiError::from(e)),
    };
    let now = chrono::Utc::now().timestamp();
    crate::web::page(
        StatusCode::OK,
        &DevicesPage {
            frame: signed.frame(&state),
            license,
            devices: activations
                .into_iter()
                .map(|a| Device::from(a, now))
                .collect(),
            tab: "devices",
        },
    )
}

// ----- a device ----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/device.html")]
struct DevicePage<'a> {
    frame: Frame<'a>,
    device: Device,
    /// The fingerprint's components as the portal holds them: (name, start of its hash).
    components: Vec<(String, String)>,
    license: LicenseInfo,
    features: Vec<FeatureRow>,
    expires: String,
    may_refresh: bool,
    may_deactivate: bool,
    refusal: Option<crate::web::Refusal>,
    /// Which form the refusal answers: `refresh` or `deactivate`.
    refused: &'static str,
    deactivated_now: bool,
    form: RefreshFields,
    /// The flags of each kind the portal keeps (the rest are counted).
    max_flags: i64,
}

#[derive(Debug, Default, Deserialize)]
struct DeviceQuery {
    #[serde(default)]
    done: String,
}

async fn device_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<DeviceQuery>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::Read) {
        return r;
    }
    render_device(
        &state,
        &signed,
        &id,
        Shown {
            deactivated_now: q.done == "deactivated",
            ..Shown::default()
        },
    )
    .await
}

/// What a device page shows besides the device: a refusal of one of its forms, the
/// refresh form as it was sent.
#[derive(Default)]
struct Shown {
    refusal: Option<ApiError>,
    refused: &'static str,
    deactivated_now: bool,
    form: RefreshFields,
}

async fn render_device(state: &AppState, signed: &Signed, id: &str, shown: Shown) -> Response {
    let activation = match visible_activation(signed, state, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let license = match visible_license(signed, state, &activation.license).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let policy = match state.portal.policy(&license.policy).await {
        Ok(p) => p,
        Err(e) => return signed.refusal(state, &ApiError::from(e)),
    };
    let features = license.features.as_ref().unwrap_or(&policy.features);
    let components = match fingerprint(state, id).await {
        Ok(c) => c,
        Err(e) => return signed.refusal(state, &ApiError::from(e)),
    };
    let principal = signed.staff.principal();
    let now = chrono::Utc::now().timestamp();
    let status = shown
        .refusal
        .as_ref()
        .map_or(StatusCode::OK, ApiError::status);
    crate::web::page(
        status,
        &DevicePage {
            frame: signed.frame(state),
            device: Device::from(activation, now),
            components,
            features: feature_rows(features),
            expires: expiry(&license, &policy),
            license,
            may_refresh: principal.can(Action::Refresh),
            may_deactivate: principal.can(Action::Deactivate),
            refusal: shown.refusal.as_ref().map(crate::web::Refusal::from),
            refused: shown.refused,
            deactivated_now: shown.deactivated_now,
            form: shown.form,
            max_flags: crate::ops::MAX_FLAGS_PER_KIND,
        },
    )
}

/// The components of the device's fingerprint the activation holds (names, and the first
/// 12 hex digits of each component's hash: the portal never sees the values).
async fn fingerprint(state: &AppState, id: &str) -> Result<Vec<(String, String)>, PortalError> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT fingerprint FROM activations WHERE id = $1")
            .bind(id)
            .fetch_optional(state.portal.db().pool())
            .await?;
    let parsed: std::collections::BTreeMap<String, serde_json::Value> = text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    Ok(parsed
        .into_iter()
        .map(|(name, hash)| {
            let hash = match hash {
                serde_json::Value::String(h) => h,
                other => other.to_string(),
            };
            (name, hash.chars().take(12).collect())
        })
        .collect())
}

// ----- the refresh file --------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Deserialize)]
struct RefreshFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// Days to extend the expiry by.
    #[serde(default)]
    extend_days: String,
    /// A new expiry date, `YYYY-MM-DD`.
    #[serde(default)]
    expires: String,
    /// The new feature set, one a line: `NAME` (unlimited) or `NAME=LIMIT`; empty: keep.
    #[serde(default)]
    features: String,
    /// `on`: reset the device's clock floor to now.
    #[serde(default)]
    clock_floor: String,
}

/// The refresh the form asks for, or what is wrong with it.
fn refresh_spec(fields: &RefreshFields, now: i64) -> Result<RefreshSpec, ApiError> {
    let reason = fields.reason.trim();
    if reason.is_empty() {
        return Err(PortalError::Invalid {
            field: "reason",
            reason: "give a reason for the refresh file (it is kept in the audit log)".into(),
        }
        .into());
    }
    let extend_days = match fields.extend_days.trim() {
        "" => None,
        days => Some(
            days.parse::<i64>()
                .ok()
                .filter(|d| (1..=36_500).contains(d))
                .ok_or_else(|| {
                    ApiError::from(PortalError::Invalid {
                        field: "extend_days",
                        reason: format!("{days:?} is not a number of days from 1 to 36500"),
                    })
                })?,
        ),
    };
    let expires = match fields.expires.trim() {
        "" => None,
        date => Some(super::licenses::date_start("expires", date)?),
    };
    let features = match fields.features.trim() {
        "" => None,
        text => Some(parse_features(text)?),
    };
    Ok(RefreshSpec {
        reason: reason.to_string(),
        features,
        expires,
        extend_days,
        clock_floor: (fields.clock_floor == "on").then_some(now),
        pool_seats: None,
    })
}

/// Features one a line (or separated by commas): `NAME` or `NAME=LIMIT`.
fn parse_features(text: &str) -> Result<Features, ApiError> {
    let mut out = Features::new();
    for item in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, limit) = match item.split_once('=') {
            Some((name, limit)) => {
                let limit = limit.trim().parse::<u64>().map_err(|_| {
                    ApiError::from(PortalError::Invalid {
                        field: "features",
                        reason: format!(
                            "{item:?}: a limit is a whole number (NAME=LIMIT), or leave it \
                             out for no limit"
                        ),
                    })
                })?;
                (name.trim(), Some(limit))
            }
            None => (item, None),
        };
        out.insert(
            name.to_string(),
            Feature {
                limit,
                ..Feature::default()
            },
        );
    }
    Ok(out)
}

async fn refresh(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    // The role first, as the API's gate does, before the body is read; the CSRF token
    // before anything is done.
    if let Err(r) = signed.require(&state, Action::Refresh) {
        return r;
    }
    let fields: RefreshFields = match read_form(&signed, &state, request).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = signed.check_csrf(&state, &fields.csrf) {
        return r;
    }
    if let Err(r) = visible_activation(&signed, &state, &id).await {
        return r;
    }
    let now = chrono::Utc::now().timestamp();
    let refused = |e: ApiError, form: RefreshFields| Shown {
        refusal: Some(e),
        refused: "refresh",
        form,
        ..Shown::default()
    };
    let spec = match refresh_spec(&fields, now) {
        Ok(spec) => spec,
        Err(e) => return render_device(&state, &signed, &id, refused(e, fields)).await,
    };
    match state
        .portal
        .refresh(&id, &spec, &signed.staff.actor())
        .await
    {
        Ok(armored) => {
            let mut response = (StatusCode::OK, armored).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"{REFRESH_FILE_NAME}\""))
            {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => render_device(&state, &signed, &id, refused(ApiError::from(e), fields)).await,
    }
}

// ----- deactivation on the server ----------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct DeactivateFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn deactivate(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    // The role first, as the API's gate does, before the body is read; the CSRF token
    // before anything is done.
    if let Err(r) = signed.require(&state, Action::Deactivate) {
        return r;
    }
    let fields: DeactivateFields = match read_form(&signed, &state, request).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = signed.check_csrf(&state, &fields.csrf) {
        return r;
    }
    if let Err(r) = visible_activation(&signed, &state, &id).await {
        return r;
    }
    let refused = |e: ApiError| Shown {
        refusal: Some(e),
        refused: "deactivate",
        ..Shown::default()
    };
    let reason = fields.reason.trim();
    if reason.is_empty() {
        let e = ApiError::from(PortalError::Invalid {
            field: "reason",
            reason: "give a reason for the deactivation (it is kept in the audit log)".into(),
        });
        return render_device(&state, &signed, &id, refused(e)).await;
    }
    match state
        .portal
        .deactivate(&id, reason, &signed.staff.actor())
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/console/activations/{}?done=deactivated",
            encode_query(&id)
        ))
        .into_response(),
        Err(e) => render_device(&state, &signed, &id, refused(ApiError::from(e))).await,
    }
}
