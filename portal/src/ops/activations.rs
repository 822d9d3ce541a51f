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

    /// Usage amounts by owner (license or activation) and feature, from `sql` selecting
    /// `owner`, `feature` and `amount` (with `arg` bound to `$1`, if given).
    pub(super) async fn usage_by(
        &self,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<BTreeMap<String, BTreeMap<String, i64>>, PortalError> {
        let mut q = sqlx::query(sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for r in q.fetch_all(self.db.pool()).await? {
            out.entry(r.try_get("owner")?)
                .or_default()
                .insert(r.try_get("feature")?, r.try_get("amount")?);
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

    /// Activations, optionally of one license, newest first.
    pub async fn activations(
        &self,
        license: Option<&str>,
        scope: Option<&[String]>,
    ) -> Result<Vec<Activation>, PortalError> {
        let rows = match license {
            Some(l) => {
                sqlx::query(
                    "SELECT * FROM activations WHERE license = $1 ORDER BY created DESC, id",
                )
                .bind(l)
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM activations ORDER BY created DESC, id")
                    .fetch_all(self.db.pool())
                    .await?
            }
        };
        let mut usage = match license {
            Some(l) => {
                self.usage_by(
                    "SELECT u.activation AS owner, u.feature, u.reported AS amount \
                     FROM usage_reported u JOIN activations a ON a.id = u.activation \
                     WHERE a.license = $1",
                    Some(l),
                )
                .await?
            }
            None => {
                self.usage_by(
                    "SELECT activation AS owner, feature, reported AS amount FROM usage_reported",
                    None,
                )
                .await?
            }
        };
        let mut flags = match license {
            Some(l) => {
                self.flags_by(
                    "SELECT f.* FROM activation_flags f JOIN activations a ON a.id = f.activation \
                     WHERE a.license = $1 ORDER BY f.at, f.kind",
                    Some(l),
                )
                .await?
            }
            None => {
                self.flags_by("SELECT * FROM activation_flags ORDER BY at, kind", None)
                    .await?
            }
        };
        let mut out = Vec::new();
        for r in &rows {
            let id: String = r.try_get("id")?;
            let a = Self::activation_from(
                r,
                usage.remove(&id).unwrap_or_default(),
                flags.remove(&id).unwrap_or_default(),
            )?;
            if scope.is_none_or(|s| s.contains(&a.product)) {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub async fn audit_log(
        &self,
        limit: i64,
        scope_subject: Option<&str>,
    ) -> Result<Vec<AuditEntry>, PortalError> {
        let rows = match scope_subject {
            Some(s) => {
                sqlx::query("SELECT * FROM audit WHERE subject = $1 ORDER BY at DESC, id LIMIT $2")
                    .bind(s)
                    .bind(limit)
                    .fetch_all(self.db.pool())
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit ORDER BY at DESC, id LIMIT $1")
                    .bind(limit)
                    .fetch_all(self.db.pool())
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    reason: r.try_get("reason")?,
                    file_hash: r.try_get("file_hash")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
