//! The audit log.

use super::*;

/// `GET /api/v1/audit?subject=ID&limit=N&after=CURSOR`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    pub(super) subject: Option<String>,
    pub(super) limit: Option<i64>,
    pub(super) after: Option<String>,
}

/// The product an object (activation, license, policy or product) belongs to, if any.
pub(super) async fn product_of_subject(
    portal: &Portal,
    id: &str,
) -> Result<Option<String>, PortalError> {
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

pub(super) async fn audit(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Page<AuditEntry>> {
    if p.products.is_some() {
        let Some(subject) = &q.subject else {
            return Err(PortalError::Forbidden {
                action: "read the whole audit log (a token limited to some products must ask \
                         for one object's entries: subject=ID)"
                    .into(),
            }
            .into());
        };
        let product = product_of_subject(&s.portal, subject).await?;
        if !product.is_some_and(|product| p.sees(&product)) {
            return Err(PortalError::NotFound {
                what: "subject",
                id: subject.clone(),
            }
            .into());
        }
    }
    let page = PageRequest {
        limit: q.limit,
        after: q.after,
    };
    Ok(Json(
        s.portal
            .list_audit(&AuditFilter { subject: q.subject }, &page)
            .await?,
    ))
}
