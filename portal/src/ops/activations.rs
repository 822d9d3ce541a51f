//! Activations as staff see them, and the audit log.

use super::*;

impl Portal {
    pub(super) async fn activation_usage(
        &self,
        id: &str,
    ) -> Result<BTreeMap<String, i64>, PortalError> {
        let rows =
            sqlx::query("SELECT feature, reported FROM usage_reported WHERE activation = $1")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|u| Ok((u.try_get("feature")?, u.try_get("reported")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub(super) fn activation_from(
        r: &AnyRow,
        usage: BTreeMap<String, i64>,
        flags: Vec<Flag>,
    ) -> Result<Activation, PortalError> {
        Ok(Activation {
            id: r.try_get("id")?,
            license: r.try_get("license")?,
            product: r.try_get("product")?,
            device_kid: r.try_get("device_kid")?,
            state: r.try_get("state")?,
            closed_by: r.try_get("closed_by")?,
            serial: r.try_get("serial")?,
            journal_seq: r.try_get("journal_seq")?,
            fork: r.try_get("fork")?,
            reactivations: r.try_get("reactivations")?,
            offline_expiry: r.try_get("offline_expiry")?,
            last_accessed: r.try_get("last_accessed")?,
            created: r.try_get("created")?,
            deactivated: r.try_get("deactivated")?,
            usage,
            flags,
            variables: {
                let text: String = r.try_get("variables")?;
                serde_json::from_str(&text).map_err(|e| {
                    PortalError::Storage(format!("the variables of an activation are corrupt: {e}"))
                })?
            },
        })
    }

    /// Flags by activation, oldest first, from `sql` selecting the flag columns (with
    /// `arg` bound to `$1`, if given).
    pub(super) async fn flags_by(
        &self,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<Flag>>, PortalError> {
        let mut q = sqlx::query(sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let mut out: BTreeMap<String, Vec<Flag>> = BTreeMap::new();
        for r in q.fetch_all(self.db.pool()).await? {
            let file_hash: String = r.try_get("file_hash")?;
            out.entry(r.try_get("activation")?).or_default().push(Flag {
                kind: r.try_get("kind")?,
                at: r.try_get("at")?,
                detail: r.try_get("detail")?,
                file_hash: (!file_hash.is_empty()).then_some(file_hash),
            });
        }
        Ok(out)
    }

    pub async fn activation(&self, id: &str) -> Result<Activation, PortalError> {
        let r = sqlx::query("SELECT * FROM activations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| PortalError::UnknownActivation {
                activation: id.into(),
            })?;
        let mut flags = self
            .flags_by(
                "SELECT * FROM activation_flags WHERE activation = $1 ORDER BY at, kind",
                Some(id),
            )
            .await?;
        Self::activation_from(
            &r,
            self.activation_usage(id).await?,
            flags.remove(id).unwrap_or_default(),
        )
    }

    /// Every activation, optionally of one license, newest first (see
    /// [`Portal::list_activations`] for a page at a time, and filters).
    pub async fn activations(
        &self,
        license: Option<&str>,
        scope: Option<&[String]>,
    ) -> Result<Vec<Activation>, PortalError> {
        let filter = ActivationFilter {
            license: license.map(String::from),
            ..Default::default()
        };
        every!(page => self.list_activations(&filter, scope, &page).await)
    }

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
