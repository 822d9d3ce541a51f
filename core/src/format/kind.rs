//! The kinds of lic file, and the names each has in armor and in COSE.

use std::fmt;

/// Who signs a kind of file, and so how its signing key is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerRole {
    /// Signed by a vendor key, looked up by `kid` in the trusted keyring.
    Vendor,
    /// Signed by the device key carried in the protected header; the signature proves
    /// possession of that key, and the reader decides whether it is the expected one.
    Device,
}

/// A kind of lic file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FileKind {
    ActivationRequest,
    License,
    Refresh,
    Deactivation,
    UsageReport,
    Receipt,
    KeySet,
    /// Device → server, online: take, renew or release a floating seat, or check one out.
    LeaseRequest,
    /// Server → device, online: a floating seat held until a time, renewed by heartbeat.
    Lease,
    /// Device → vendor: a checked-out floating seat returned before its Offline Expiry Date.
    CheckIn,
}

impl FileKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FileKind; 10] = [
        FileKind::ActivationRequest,
        FileKind::License,
        FileKind::Refresh,
        FileKind::Deactivation,
        FileKind::UsageReport,
        FileKind::Receipt,
        FileKind::KeySet,
        FileKind::LeaseRequest,
        FileKind::Lease,
        FileKind::CheckIn,
    ];

    /// The word(s) after `LIC ` in the armor lines, e.g. `ACTIVATION REQUEST`.
    pub fn armor_label(self) -> &'static str {
        match self {
            Self::ActivationRequest => "ACTIVATION REQUEST",
            Self::License => "LICENSE",
            Self::Refresh => "REFRESH",
            Self::Deactivation => "DEACTIVATION",
            Self::UsageReport => "USAGE REPORT",
            Self::Receipt => "RECEIPT",
            Self::KeySet => "KEY SET",
            Self::LeaseRequest => "LEASE REQUEST",
            Self::Lease => "LEASE",
            Self::CheckIn => "CHECK-IN",
        }
    }

    /// The short name used in content types, manifests and JSON, e.g. `activation-request`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ActivationRequest => "activation-request",
            Self::License => "license",
            Self::Refresh => "refresh",
            Self::Deactivation => "deactivation",
            Self::UsageReport => "usage-report",
            Self::Receipt => "receipt",
            Self::KeySet => "key-set",
            Self::LeaseRequest => "lease-request",
            Self::Lease => "lease",
            Self::CheckIn => "check-in",
        }
    }

    /// The COSE content type (protected header label 3) that binds a signature to this kind.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::ActivationRequest => "application/vnd.lic.activation-request+cbor",
            Self::License => "application/vnd.lic.license+cbor",
            Self::Refresh => "application/vnd.lic.refresh+cbor",
            Self::Deactivation => "application/vnd.lic.deactivation+cbor",
            Self::UsageReport => "application/vnd.lic.usage-report+cbor",
            Self::Receipt => "application/vnd.lic.receipt+cbor",
            Self::KeySet => "application/vnd.lic.key-set+cbor",
            Self::LeaseRequest => "application/vnd.lic.lease-request+cbor",
            Self::Lease => "application/vnd.lic.lease+cbor",
            Self::CheckIn => "application/vnd.lic.check-in+cbor",
        }
    }

    /// Who signs files of this kind.
    pub fn signer(self) -> SignerRole {
        match self {
            Self::ActivationRequest
            | Self::Deactivation
            | Self::UsageReport
            | Self::LeaseRequest
            | Self::CheckIn => SignerRole::Device,
            Self::License | Self::Refresh | Self::Receipt | Self::KeySet | Self::Lease => {
                SignerRole::Vendor
            }
        }
    }

    /// "a" or "an", for messages.
    pub fn article(self) -> &'static str {
        match self {
            Self::ActivationRequest => "an",
            _ => "a",
        }
    }

    /// The conventional file name ending.
    pub fn extension(self) -> &'static str {
        match self {
            Self::ActivationRequest => "req",
            Self::License | Self::Refresh => "lic",
            Self::Deactivation => "deact",
            Self::UsageReport => "usage",
            Self::Receipt => "receipt",
            Self::KeySet => "keys",
            Self::LeaseRequest => "leasereq",
            Self::Lease => "lease",
            Self::CheckIn => "checkin",
        }
    }

    pub fn from_armor_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.armor_label() == label)
    }

    pub fn from_content_type(content_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.content_type() == content_type)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The form every lic content type has, known kinds and future ones alike:
/// `application/vnd.lic.<name>+cbor`, where `<name>` is one or more lower-case ASCII
/// letters, digits and `-`. A content type of this form that names no known kind is a
/// kind of file made by a newer version (`unsupported-kind`), not a wrong file.
pub(crate) fn is_lic_content_type(content_type: &str) -> bool {
    content_type
        .strip_prefix(CONTENT_TYPE_PREFIX)
        .and_then(|rest| rest.strip_suffix(CONTENT_TYPE_SUFFIX))
        .is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

const CONTENT_TYPE_PREFIX: &str = "application/vnd.lic.";
const CONTENT_TYPE_SUFFIX: &str = "+cbor";

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ActivationRequest => "activation request",
            Self::License => "license",
            Self::Refresh => "refresh",
            Self::Deactivation => "deactivation",
            Self::UsageReport => "usage report",
            Self::Receipt => "receipt",
            Self::KeySet => "key set",
            Self::LeaseRequest => "lease request",
            Self::Lease => "lease",
            Self::CheckIn => "check-in",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::from_armor_label(kind.armor_label()), Some(kind));
            assert_eq!(FileKind::from_content_type(kind.content_type()), Some(kind));
            assert_eq!(FileKind::from_name(kind.name()), Some(kind));
        }
        let n = FileKind::ALL.len();
        let distinct = |names: [&str; 10]| names.into_iter().collect::<BTreeSet<_>>().len();
        assert_eq!(distinct(FileKind::ALL.map(FileKind::content_type)), n);
        assert_eq!(distinct(FileKind::ALL.map(FileKind::armor_label)), n);
        assert_eq!(distinct(FileKind::ALL.map(FileKind::name)), n);
    }

    #[test]
    fn every_content_type_has_the_lic_form_and_future_ones_are_recognised() {
        for kind in FileKind::ALL {
            assert!(is_lic_content_type(kind.content_type()), "{kind}");
            assert_eq!(
                kind.content_type(),
                format!("application/vnd.lic.{}+cbor", kind.name())
            );
        }
        assert!(is_lic_content_type("application/vnd.lic.pool-lease+cbor"));
        assert!(is_lic_content_type("application/vnd.lic.v2-license+cbor"));
        for other in [
            "application/vnd.lic.+cbor",
            "application/vnd.lic.License+cbor",
            "application/vnd.lic.license+json",
            "application/vnd.lic.a b+cbor",
            "application/cbor",
            "text/plain",
            "",
        ] {
            assert!(!is_lic_content_type(other), "{other:?}");
        }
    }
}
