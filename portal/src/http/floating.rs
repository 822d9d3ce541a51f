//! Floating licenses: the anonymous device routes of leases (take, renew, release),
//! checkouts and check-ins, and staff's reclamation.

use lic_core::format::LeaseAction;

use super::*;
use crate::ops::{CheckoutAnswer, LeaseAnswer, ReclaimEdit, Reclaimed, ReleaseAnswer};

/// `POST /api/v1/leases?wait=true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    #[serde(default)]
    pub(super) wait: bool,
}

/// `POST /api/v1/reclaim?dry_run=true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReclaimQuery {
    #[serde(default)]
    pub(super) dry_run: bool,
}

pub(super) async fn take_lease(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    Query(q): Query<WaitQuery>,
    Upload(body): Upload,
) -> ApiResult<LeaseAnswer> {
    Ok(Json(
        s.portal
            .lease(&body, LeaseAction::Take, q.wait, &client.actor())
            .await?,
    ))
}

pub(super) async fn renew_lease(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    Upload(body): Upload,
) -> ApiResult<LeaseAnswer> {
    Ok(Json(
        s.portal
            .lease(&body, LeaseAction::Renew, false, &client.actor())
            .await?,
    ))
}

pub(super) async fn release_lease(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    Upload(body): Upload,
) -> ApiResult<ReleaseAnswer> {
    Ok(Json(s.portal.release(&body, &client.actor()).await?))
}

pub(super) async fn checkout(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    Upload(body): Upload,
) -> ApiResult<CheckoutAnswer> {
    Ok(Json(s.portal.checkout(&body, &client.actor()).await?))
}

pub(super) async fn checkin(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Upload(body): Upload,
) -> Result<Response, ApiError> {
    let applied = upload(&s.portal, FileKind::CheckIn, &body, &client.actor()).await;
    upload_response(&headers, applied)
}

pub(super) async fn reclaim(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ReclaimQuery>,
) -> ApiResult<Reclaimed> {
    Ok(Json(
        s.portal
            .reclaim(q.dry_run, None, scope(&p), &p.actor())
            .await?,
    ))
}

/// `PATCH /api/v1/policies/{id}/reclamation`: enable, disable or tune reclamation.
pub(super) async fn edit_reclamation(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(edit): Body<ReclaimEdit>,
) -> ApiResult<Policy> {
    visible_policy(&s.portal, &p, &id).await?;
    Ok(Json(
        s.portal.edit_reclamation(&id, &edit, &p.actor()).await?,
    ))
}
