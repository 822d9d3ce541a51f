//! The audit log as staff read it (every change writes its entry where it is made).

use super::*;

impl Portal {
    /// The newest `limit` audit entries (at most [`MAX_LIMIT`]), optionally about one
    /// subject (see [`Portal::list_audit`] for a page at a time).
    pub async fn audit_log(
        &self,
        limit: i64,
        scope_subject: Option<&str>,
    ) -> Result<Vec<AuditEntry>, PortalError> {
        let filter = AuditFilter {
            subject: scope_subject.map(String::from),
        };
        let page = PageRequest::first(limit.clamp(1, MAX_LIMIT));
        Ok(self.list_audit(&filter, &page).await?.items)
    }
}
