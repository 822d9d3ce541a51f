//! Activations, support's refreshes and server-side deactivations, and staff's `apply`.

use super::*;

/// `GET /api/v1/activations?license=ID&product=CODE&state=S&customer=C&limit=N&after=CURSOR`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActivationsQuery {
    pub(super) license: Option<String>,
    pub(super) product: Option<String>,
    pub(super) state: Option<String>,
    pub(super) customer: Option<String>,
    pub(super) limit: Option<i64>,
    pub(super) after: Option<String>,
}

pub(super) async fn list_activations(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ActivationsQuery>,
) -> ApiResult<Page<Activation>> {
    let filter = ActivationFilter {
        product: q.product,
        license: q.license,
        state: q.state,
        customer: q.customer,
    };
    let page = PageRequest {
        limit: q.limit,
        after: q.after,
    };
    Ok(Json(
        s.portal.list_activations(&filter, scope(&p), &page).await?,
    ))
}

/// The activation `id`, if the token sees it; otherwise "unknown", as if it did not exist.
pub(super) async fn visible_activation(
    portal: &Portal,
    p: &Principal,
    id: &str,
) -> Result<Activation, ApiError> {
    let activation = portal.activation(id).await?;
    let product = activation.product.clone();
    visible(p, &product, activation, || PortalError::UnknownActivation {
        activation: id.into(),
    })
}

pub(super) async fn get_activation(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Activation> {
    Ok(Json(visible_activation(&s.portal, &p, &id).await?))
}

/// A refresh file, armored.
#[derive(Debug, Serialize)]
pub(super) struct Refreshed {
    pub(super) refresh: String,
}

pub(super) async fn refresh(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(spec): Body<RefreshSpec>,
) -> ApiResult<Refreshed> {
    visible_activation(&s.portal, &p, &id).await?;
    let refresh = s.portal.refresh(&id, &spec, &p.actor()).await?;
    Ok(Json(Refreshed { refresh }))
}

pub(super) async fn deactivate_activation(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(reason): Body<Reason>,
) -> ApiResult<Activation> {
    visible_activation(&s.portal, &p, &id).await?;
    let reason = reason.required()?;
    Ok(Json(s.portal.deactivate(&id, reason, &p.actor()).await?))
}

pub(super) async fn resign_activation(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<crate::ops::Resigned> {
    visible_activation(&s.portal, &p, &id).await?;
    Ok(Json(s.portal.resign(&id, &p.actor()).await?))
}

/// Refuse, as if unknown, a device file about a product the token does not see. A file the
/// portal refuses whatever its product (a kind it makes itself) is left to `apply`.
pub(crate) async fn check_file_scope(
    portal: &Portal,
    p: &Principal,
    input: &[u8],
) -> Result<(), ApiError> {
    let activation = match format::open_any(input, &lic_core::keys::Keyring::new()) {
        Ok(AnyFile::ActivationRequest(r)) => {
            let product = &r.payload().product;
            return visible(p, product, (), || PortalError::UnknownLicense {
                product: product.clone(),
                typo: None,
            });
        }
        Ok(AnyFile::Deactivation(d)) => d.payload().activation_id.clone(),
        Ok(AnyFile::UsageReport(u)) => u.payload().activation_id.clone(),
        Ok(AnyFile::CheckIn(c)) => c.payload().activation_id.clone(),
        // Vendor-signed kinds (no vendor key is given, so they end here): applying refuses them.
        Ok(_) | Err(FormatError::UnknownKey { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    visible_activation(portal, p, &activation).await.map(|_| ())
}

pub(super) async fn apply(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Upload(body): Upload,
) -> ApiResult<Applied> {
    if p.products.is_some() {
        check_file_scope(&s.portal, &p, &body).await?;
    }
    Ok(Json(s.portal.apply(&body, &p.actor()).await?))
}
