//! Products, policies and licenses; and what a token limited to some products may see.

use super::*;

/// Refuse creating a product the token is not limited to.
pub(super) fn check_new_product(p: &Principal, product: &str) -> Result<(), ApiError> {
    if p.sees(product) {
        Ok(())
    } else {
        Err(PortalError::Forbidden {
            action: "create a product outside the products it is limited to".into(),
        }
        .into())
    }
}

/// An object of a product the token does not see is, to that token, one that does not
/// exist: the same 404, whatever the call.
pub(super) fn visible<T>(
    p: &Principal,
    product: &str,
    object: T,
    not_found: impl FnOnce() -> PortalError,
) -> Result<T, ApiError> {
    if p.sees(product) {
        Ok(object)
    } else {
        Err(not_found().into())
    }
}

pub(super) async fn visible_policy(
    portal: &Portal,
    p: &Principal,
    id: &str,
) -> Result<Policy, ApiError> {
    let policy = portal.policy(id).await?;
    let product = policy.product.clone();
    visible(p, &product, policy, || PortalError::NotFound {
        what: "policy",
        id: id.into(),
    })
}

pub(super) async fn visible_license(
    portal: &Portal,
    p: &Principal,
    id: &str,
) -> Result<LicenseInfo, ApiError> {
    let license = portal.license(id).await?;
    let product = license.product.clone();
    visible(p, &product, license, || PortalError::NotFound {
        what: "license",
        id: id.into(),
    })
}

pub(super) fn scope(p: &Principal) -> Option<&[String]> {
    p.products.as_deref()
}

/// `GET /api/v1/products?limit=N&after=CURSOR`. Unknown parameters are refused (a
/// misspelt filter must not widen a list silently).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProductsQuery {
    pub(super) limit: Option<i64>,
    pub(super) after: Option<String>,
}

pub(super) async fn list_products(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ProductsQuery>,
) -> ApiResult<Page<Product>> {
    let page = PageRequest {
        limit: q.limit,
        after: q.after,
    };
    Ok(Json(s.portal.list_products(scope(&p), &page).await?))
}

/// A new product.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewProduct {
    pub(super) code: String,
    pub(super) name: String,
}

pub(super) async fn create_product(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Body(new): Body<NewProduct>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    check_new_product(&p, &new.code)?;
    let product = s
        .portal
        .create_product(&new.code, &new.name, &p.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(product)))
}

pub(super) async fn get_product(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(code): Path<String>,
) -> ApiResult<Product> {
    if !p.sees(&code) {
        return Err(PortalError::NotFound {
            what: "product",
            id: code,
        }
        .into());
    }
    Ok(Json(s.portal.product(&code).await?))
}

/// `GET /api/v1/policies?product=CODE&limit=N&after=CURSOR`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PoliciesQuery {
    pub(super) product: Option<String>,
    pub(super) limit: Option<i64>,
    pub(super) after: Option<String>,
}

pub(super) async fn list_policies(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<PoliciesQuery>,
) -> ApiResult<Page<Policy>> {
    let filter = PolicyFilter { product: q.product };
    let page = PageRequest {
        limit: q.limit,
        after: q.after,
    };
    Ok(Json(
        s.portal.list_policies(&filter, scope(&p), &page).await?,
    ))
}

pub(super) async fn create_policy(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Body(spec): Body<Policy>,
) -> Result<(StatusCode, Json<Policy>), ApiError> {
    if !p.sees(&spec.product) {
        return Err(PortalError::NotFound {
            what: "product",
            id: spec.product,
        }
        .into());
    }
    let policy = s.portal.create_policy(spec, &p.actor()).await?;
    Ok((StatusCode::CREATED, Json(policy)))
}

pub(super) async fn get_policy(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Policy> {
    Ok(Json(visible_policy(&s.portal, &p, &id).await?))
}

/// `GET /api/v1/licenses?product=CODE&status=S&customer=C&limit=N&after=CURSOR`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LicensesQuery {
    pub(super) product: Option<String>,
    pub(super) status: Option<String>,
    pub(super) customer: Option<String>,
    pub(super) limit: Option<i64>,
    pub(super) after: Option<String>,
}

pub(super) async fn list_licenses(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<LicensesQuery>,
) -> ApiResult<Page<LicenseInfo>> {
    let filter = LicenseFilter {
        product: q.product,
        status: q.status,
        customer: q.customer,
    };
    let page = PageRequest {
        limit: q.limit,
        after: q.after,
    };
    Ok(Json(
        s.portal.list_licenses(&filter, scope(&p), &page).await?,
    ))
}

pub(super) async fn create_license(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Body(spec): Body<NewLicense>,
) -> Result<(StatusCode, Json<CreatedLicense>), ApiError> {
    visible_policy(&s.portal, &p, &spec.policy).await?;
    let created = s.portal.create_license(spec, &p.actor()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn get_license(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<LicenseInfo> {
    Ok(Json(visible_license(&s.portal, &p, &id).await?))
}

/// Why: required by every change that is audited with a reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reason {
    pub(super) reason: String,
}

impl Reason {
    pub(super) fn required(&self) -> Result<&str, ApiError> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err(PortalError::Invalid {
                field: "reason",
                reason: "give a reason (it is audited)".into(),
            }
            .into());
        }
        Ok(reason)
    }
}

pub(super) async fn revoke_license(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(reason): Body<Reason>,
) -> ApiResult<LicenseInfo> {
    visible_license(&s.portal, &p, &id).await?;
    let reason = reason.required()?;
    Ok(Json(
        s.portal.revoke_license(&id, reason, &p.actor()).await?,
    ))
}

/// `PATCH /api/v1/licenses/{id}`: the members given change, the others stay; `reason` is
/// required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditBody {
    reason: String,
    #[serde(default)]
    seats: Option<i64>,
    /// `null`: no fixed expiry; left out: unchanged.
    #[serde(default, deserialize_with = "some_or_null")]
    expires: Option<Option<i64>>,
    #[serde(default)]
    features: Option<format::Features>,
    #[serde(default)]
    allow_offline: Option<bool>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    total_limits: Option<std::collections::BTreeMap<String, u64>>,
    #[serde(default)]
    refuse_over_total: Option<bool>,
}

fn some_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub(super) async fn edit_license(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(body): Body<EditBody>,
) -> ApiResult<EditedLicense> {
    visible_license(&s.portal, &p, &id).await?;
    Ok(Json(
        s.portal
            .edit_license(
                &id,
                LicenseEdit {
                    seats: body.seats,
                    expires: body.expires,
                    features: body.features,
                    allow_offline: body.allow_offline,
                    status: body.status,
                    total_limits: body.total_limits,
                    refuse_over_total: body.refuse_over_total,
                },
                &body.reason,
                &p.actor(),
            )
            .await?,
    ))
}
