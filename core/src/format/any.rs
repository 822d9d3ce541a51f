//! Reading a file of any kind, for tools that inspect whatever they are given.

use super::envelope::{Verified, decode_verified, unarmor, verify_envelope};
use super::error::FormatError;
use super::kind::FileKind;
use super::payload::{
    ActivationRequest, CheckIn, Deactivation, KeySet, Lease, LeaseRequest, License, Receipt,
    Refresh, UsageReport,
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
    KeySet(Verified<KeySet>),
    LeaseRequest(Verified<LeaseRequest>),
    Lease(Verified<Lease>),
    CheckIn(Verified<CheckIn>),
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
            AnyFile::KeySet(_) => FileKind::KeySet,
            AnyFile::LeaseRequest(_) => FileKind::LeaseRequest,
            AnyFile::Lease(_) => FileKind::Lease,
            AnyFile::CheckIn(_) => FileKind::CheckIn,
        }
    }
}

/// Read and verify a file of any kind (armored or binary). The armor label, when there
/// is one, must agree with the signed content type.
pub fn open_any(input: &[u8], keys: &Keyring) -> Result<AnyFile, FormatError> {
    let (armor_kind, bytes) = unarmor(input)?;
    let checked = verify_envelope(bytes, armor_kind, keys)?;
    Ok(match checked.kind() {
        FileKind::ActivationRequest => AnyFile::ActivationRequest(decode_verified(checked)?),
        FileKind::License => AnyFile::License(decode_verified(checked)?),
        FileKind::Refresh => AnyFile::Refresh(decode_verified(checked)?),
        FileKind::Deactivation => AnyFile::Deactivation(decode_verified(checked)?),
        FileKind::UsageReport => AnyFile::UsageReport(decode_verified(checked)?),
        FileKind::Receipt => AnyFile::Receipt(decode_verified(checked)?),
        FileKind::KeySet => AnyFile::KeySet(decode_verified(checked)?),
        FileKind::LeaseRequest => AnyFile::LeaseRequest(decode_verified(checked)?),
        FileKind::Lease => AnyFile::Lease(decode_verified(checked)?),
        FileKind::CheckIn => AnyFile::CheckIn(decode_verified(checked)?),
    })
}
