//! The console's audit log (`/console/audit`): newest first, a page at a time, filtered by
//! subject (a license, an activation, a policy or a product), actor, action and time range.
//!
//! As `GET /api/v1/audit`: it needs [`Action::ReadAudit`] (support and admin), and an
//! account limited to some products must name one object of its products as the subject
//! (the log of the whole portal is refused, 403; an object of another product is "not
//! found", 404).

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::licenses::{date_start, when};
use super::{ConsolePage, Frame, Signed, encode_query};
use crate::auth::Action;
use crate::error::PortalError;
use crate::http::{ApiError, AppState};
use crate::ops::{AuditFilter, AuditSearch, PageRequest, Portal};

/// This module's pages.
pub(super) const PAGES: &[ConsolePage] = &[ConsolePage {
    method: "GET",
    path: "/console/audit",
    needs: Some(Action::ReadAudit),
}];

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/audit", get(audit))
}

/// Entries a page shows.
const PAGE_SIZE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    /// `YYYY-MM-DD`: from the start of that day (UTC).
    #[serde(default)]
    since: String,
    /// `YYYY-MM-DD`: up to the end of that day (UTC).
    #[serde(default)]
    until: String,
    #[serde(default)]
    after: String,
}

struct Row {
    at: String,
    actor: String,
    action: String,
    subject: String,
    /// The page of the subject, if the console has one.
    link: Option<String>,
    reason: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage<'a> {
    frame: Frame<'a>,
    q: &'a AuditQuery,
    scoped: bool,
    rows: Vec<Row>,
    next: Option<String>,
    refusal: Option<crate::web::Refusal>,
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The product an object (activation, license, policy or product) belongs to, if any.
async fn product_of_subject(portal: &Portal, id: &str) -> Result<Option<String>, PortalError> {
    fn found<T>(r: Result<T, PortalError>) -> Result<Option<T>, PortalError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(PortalError::NotFound { .. } | PortalError::UnknownActivation { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    if let Some(a) = found(portal.activation(id).await)? {
        return Ok(Some(a.product));
    }
    if let Some(l) = found(portal.license(id).await)? {
        return Ok(Some(l.product));
    }
    if let Some(p) = found(portal.policy(id).await)? {
        return Ok(Some(p.product));
    }
    Ok(found(portal.product(id).await)?.map(|p| p.code))
}

/// The filters as the log reads them, after the account's scope is checked.
async fn filters(
    signed: &Signed,
    state: &AppState,
    q: &AuditQuery,
) -> Result<(AuditFilter, AuditSearch), ApiError> {
    let subject = some(&q.subject);
    let principal = signed.staff.principal();
    if principal.products.is_some() {
        let Some(subject) = &subject else {
            return Err(PortalError::Forbidden {
                action: "read the whole audit log (an account limited to some products must \
                         ask for one object's entries: give a license or activation id as the \
                         subject)"
                    .into(),
            }
            .into());
        };
        let product = product_of_subject(&state.portal, subject).await?;
        if !product.is_some_and(|p| principal.sees(&p)) {
            return Err(PortalError::NotFound {
                what: "subject",
                id: subject.clone(),
            }
            .into());
        }
    }
    let since = match some(&q.since) {
        Some(d) => Some(date_start("since", &d)?),
        None => None,
    };
    let until = match some(&q.until) {
        // Up to the end of that day.
        Some(d) => Some(date_start("until", &d)? + 86_400),
        None => None,
    };
    Ok((
        AuditFilter { subject },
        AuditSearch {
            actor: some(&q.actor),
            action: some(&q.action),
            since,
            until,
        },
    ))
}

async fn audit(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::ReadAudit) {
        return r;
    }
    let scoped = signed.staff.products.is_some();
    let found = match filters(&signed, &state, &q).await {
        Ok((filter, search)) => {
            let page = PageRequest {
                limit: Some(PAGE_SIZE),
                after: some(&q.after),
            };
            state
                .portal
                .search_audit(&filter, &search, &page)
                .await
                .map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    let (rows, next, refusal, status) = match found {
        Ok(page) => {
            let rows = page
                .items
                .into_iter()
                .map(|e| {
                    let subject = e.subject.unwrap_or_default();
                    let link = if subject.starts_with("act_") {
                        Some(format!("/console/activations/{subject}"))
                    } else if subject.starts_with("lic_") {
                        Some(format!("/console/licenses/{subject}"))
                    } else {
                        None
                    };
                    Row {
                        at: when(e.at.div_euclid(1000)),
                        actor: e.actor,
                        action: e.action,
                        link,
                        subject,
                        reason: e.reason.unwrap_or_default(),
                        detail: e.detail.unwrap_or_default(),
                    }
                })
                .collect();
            let next = page.next.map(|cursor| {
                format!(
                    "/console/audit?subject={}&actor={}&action={}&since={}&until={}&after={}",
                    encode_query(&q.subject),
                    encode_query(&q.actor),
                    encode_query(&q.action),
                    encode_query(&q.since),
                    encode_query(&q.until),
                    encode_query(&cursor)
                )
            });
            (rows, next, None, StatusCode::OK)
        }
        Err(e) => (
            Vec::new(),
            None,
            Some(crate::web::Refusal::from(&e)),
            e.status(),
        ),
    };
    crate::web::page(
        status,
        &AuditPage {
            frame: signed.frame(&state),
            q: &q,
            scoped,
            rows,
            next,
            refusal,
        },
    )
}
