//! Reading a file of any kind, for tools that inspect whatever they are given.

use super::envelope::{Verified, decode_payload, file_hash, unarmor, verify_envelope};
use super::error::FormatError;
use super::kind::FileKind;
use super::payload::{
    ActivationRequest, Deactivation, License, Payload, Receipt, Refresh, UsageReport,
};
use crate::keys::Keyring;

/// A verified file of whichever kind it turned out to be.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyFile {
    ActivationRequest(Verified<ActivationRequest>),
    License(Verified<License>),
    Refresh(Verified<Refresh>),
    Deactivation(Verified<Deactivation>),
    UsageReport(Verified<UsageReport>),
    Receipt(Verified<Receipt>),
}

impl AnyFile {
    pub fn kind(&self) -> FileKind {
        match self {
            AnyFile::ActivationRequest(_) => FileKind::ActivationRequest,
            AnyFile::License(_) => FileKind::License,
            AnyFile::Refresh(_) => FileKind::Refresh,
            AnyFile::Deactivation(_) => FileKind::Deactivation,
            AnyFile::UsageReport(_) => FileKind::UsageReport,
            AnyFile::Receipt(_) => FileKind::Receipt,
        }
    }
}

/// Read and verify a file of any kind (armored or binary). The armor label, when there
/// is one, must agree with the signed content type.
pub fn open_any(input: &[u8], keys: &Keyring) -> Result<AnyFile, FormatError> {
    let (armor_kind, bytes) = unarmor(input)?;
    let checked = verify_envelope(&bytes, armor_kind, keys)?;
    fn build<T: Payload>(
        payload: &[u8],
        signer: crate::keys::PublicKey,
        bytes: Vec<u8>,
    ) -> Result<Verified<T>, FormatError> {
        let payload = decode_payload::<T>(payload)?;
        Ok(Verified::new(payload, signer, file_hash(&bytes), bytes))
    }
    let (payload, signer) = (checked.payload.as_slice(), checked.signer);
    Ok(match checked.kind {
        FileKind::ActivationRequest => AnyFile::ActivationRequest(build(payload, signer, bytes)?),
        FileKind::License => AnyFile::License(build(payload, signer, bytes)?),
        FileKind::Refresh => AnyFile::Refresh(build(payload, signer, bytes)?),
        FileKind::Deactivation => AnyFile::Deactivation(build(payload, signer, bytes)?),
        FileKind::UsageReport => AnyFile::UsageReport(build(payload, signer, bytes)?),
        FileKind::Receipt => AnyFile::Receipt(build(payload, signer, bytes)?),
    })
}
