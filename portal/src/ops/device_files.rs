//! Applying uploaded files: the dispatch of every kind, and the device's own files —
//! deactivations and usage reports, with their journal. (Activation requests: activations.rs.)

use super::*;

impl Portal {
    /// Apply any uploaded file: an activation request, a deactivation or a usage report.
    pub async fn apply(&self, input: &[u8], actor: &Actor) -> Result<Applied, PortalError> {
        let (armor_kind, bytes) = format::unarmor(input)?;
        let kind = match armor_kind {
            Some(k) => k,
            None => match format::open_any(&bytes, &Keyring::new()) {
                Ok(any) => any.kind(),
                Err(format::FormatError::UnknownKey { .. }) => FileKind::License,
                Err(e) => return Err(e.into()),
            },
        };
        match kind {
            FileKind::ActivationRequest => self.apply_activation(&bytes, actor).await,
            FileKind::Deactivation => self.apply_deactivation(&bytes, actor).await,
            FileKind::UsageReport => self.apply_usage_report(&bytes, actor).await,
            FileKind::CheckIn => self.apply_check_in(&bytes, actor).await,
            FileKind::LeaseRequest => Err(PortalError::Invalid {
                field: "file",
                reason: "a lease request is sent online by the application (lic lease, lic \
                         checkout), to /api/v1/leases or /api/v1/checkout; it is not applied \
                         as a file"
                    .into(),
            }),
            other => Err(PortalError::Invalid {
                field: "file",
                reason: format!(
                    "a {other} file is made by the portal, not uploaded to it; upload an \
                     activation request, a deactivation file, a usage report or a check-in \
                     file"
                ),
            }),
        }
    }

    pub(super) async fn replayed(&self, hash: &str) -> Result<Option<Applied>, PortalError> {
        let r = sqlx::query("SELECT kind, activation, response FROM applied_files WHERE hash = $1")
            .bind(hash)
            .fetch_optional(self.db.pool())
            .await?;
        r.map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Applied {
                response_kind: response_kind(&kind).into(),
                kind,
                activation: r.try_get("activation")?,
                response: r.try_get("response")?,
                replay: true,
                file_hash: hash.into(),
                flags: Vec::new(),
                note: String::new(),
            })
        })
        .transpose()
    }

    /// Run a write job through the group-commit writer: it answers once the job's batch
    /// is committed.
    pub(super) async fn write(&self, job: Job) -> Result<WriteOutcome, PortalError> {
        self.writer.write(job).await
    }

    /// Verify a device-signed file against the activation's recorded device key.
    pub(super) async fn device_file<T: format::Payload>(
        &self,
        bytes: &[u8],
        activation_of: impl Fn(&T) -> &str,
    ) -> Result<(Verified<T>, String), PortalError> {
        let file: Verified<T> = format::verify(bytes.to_vec(), &Keyring::new())?;
        let id = activation_of(file.payload()).to_string();
        let row = sqlx::query("SELECT device_key, license FROM activations WHERE id = $1")
            .bind(&id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or(PortalError::UnknownActivation { activation: id })?;
        let recorded: String = row.try_get("device_key")?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&recorded, &mut key)
            .map_err(|_| PortalError::Key("a recorded device key is corrupt".into()))?;
        let expected = PublicKey::from_bytes(&key).map_err(|e| PortalError::Key(e.to_string()))?;
        Ok((file.expect_signer(&expected)?, row.try_get("license")?))
    }

    /// Apply a deactivation file: add its consumption once, free the seat, record the
    /// journal head, and return a signed receipt. Applying it again changes nothing and
    /// returns the same receipt.
    pub async fn apply_deactivation(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let (file, license) = self
            .device_file::<Deactivation>(bytes, |d| &d.activation_id)
            .await?;
        let d = file.payload();
        self.apply_device_file(
            FileKind::Deactivation,
            file.file_hash(),
            &d.activation_id,
            license,
            d.counters.clone(),
            d.journal.clone(),
            &d.variables,
            true,
            actor,
        )
        .await
        .map(|a| a.noted(Some(&d.counters)))
    }

    /// Apply a usage report: add `new cumulative − last reported` per feature, so replays
    /// and reports out of order never double-count.
    pub async fn apply_usage_report(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let (file, license) = self
            .device_file::<UsageReport>(bytes, |u| &u.activation_id)
            .await?;
        let u = file.payload();
        self.apply_device_file(
            FileKind::UsageReport,
            file.file_hash(),
            &u.activation_id,
            license,
            u.counters.clone(),
            u.journal.clone(),
            &u.variables,
            false,
            actor,
        )
        .await
        .map(|a| a.noted(Some(&u.counters)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply_device_file(
        &self,
        kind: FileKind,
        file_hash: Bytes32,
        activation_id: &str,
        license_id: String,
        counters: format::Counters,
        journal: format::JournalHead,
        variables: &format::Variables,
        deactivate: bool,
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let hash = file_hash.to_string();
        if let Some(done) = self.replayed(&hash).await? {
            return Ok(done);
        }
        let now = self.now();
        // The receipt says the state after applying: a deactivation always ends
        // deactivated; a usage report leaves an active activation active.
        let state: String = sqlx::query_scalar("SELECT state FROM activations WHERE id = $1")
            .bind(activation_id)
            .fetch_one(self.db.pool())
            .await?;
        let state_after = if deactivate || state != "active" {
            "deactivated"
        } else {
            "active"
        };
        let receipt = Receipt {
            activation_id: activation_id.into(),
            file_hash,
            file_kind: kind.name().into(),
            state: state_after.into(),
            applied: now,
        };
        let signer = self.signer().await?;
        let armored = format::sign(&receipt, &signer)?.armored();
        let job = DeviceWrite {
            kind,
            file_hash,
            hash: hash.clone(),
            activation_id: activation_id.into(),
            license_id,
            counters,
            journal,
            variables: json(variables),
            deactivate,
            armored,
            now,
            actor: actor.clone(),
        };
        let outcome = self.write(Job::Device(job)).await?;
        self.finish(outcome, &hash, &signer).await
    }
}
