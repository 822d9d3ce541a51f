//! Vendor signing keys and API tokens.

use super::*;

pub(super) async fn keys(State(s): State<AppState>) -> ApiResult<Vec<VendorKeyInfo>> {
    Ok(Json(vendor::list(s.portal.db()).await?))
}

/// The new active vendor key.
#[derive(Debug, Serialize)]
pub(super) struct Rotated {
    pub(super) kid: String,
    pub(super) public_pem: String,
}

pub(super) async fn rotate_key(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Rotated> {
    let public = s.portal.rotate_key(&p.actor()).await?;
    Ok(Json(Rotated {
        kid: public.kid().to_string(),
        public_pem: public.to_pem(),
    }))
}

pub(super) async fn revoke_key(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(kid): Path<String>,
    Body(reason): Body<Reason>,
) -> ApiResult<vendor::KeySetInfo> {
    let reason = reason.required()?;
    Ok(Json(s.portal.revoke_key(&kid, reason, &p.actor()).await?))
}

pub(super) async fn list_tokens(State(s): State<AppState>) -> ApiResult<Vec<auth::TokenInfo>> {
    Ok(Json(auth::list_tokens(s.portal.db()).await?))
}

/// A new API token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    pub(super) name: String,
    pub(super) role: Role,
    #[serde(default)]
    pub(super) products: Option<Vec<String>>,
}

/// A new token, with its secret shown this once.
#[derive(Debug, Serialize)]
pub(super) struct CreatedToken {
    #[serde(flatten)]
    pub(super) info: auth::TokenInfo,
    pub(super) token: String,
}

pub(super) async fn create_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Body(new): Body<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let db = s.portal.db();
    let now = chrono::Utc::now().timestamp();
    let (id, token) =
        auth::create_token_as(db, &new.name, new.role, new.products, now, &p.actor()).await?;
    let info = auth::token(db, &id).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

pub(super) async fn revoke_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<auth::TokenInfo> {
    let now = chrono::Utc::now().timestamp();
    Ok(Json(
        auth::revoke_token_as(s.portal.db(), &id, now, &p.actor()).await?,
    ))
}
