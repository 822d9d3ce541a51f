//! The six kinds of lic file, and the names each has in armor and in COSE.

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
}

impl FileKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FileKind; 6] = [
        FileKind::ActivationRequest,
        FileKind::License,
        FileKind::Refresh,
        FileKind::Deactivation,
        FileKind::UsageReport,
        FileKind::Receipt,
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
        }
    }

    /// Who signs files of this kind.
    pub fn signer(self) -> SignerRole {
        match self {
            Self::ActivationRequest | Self::Deactivation | Self::UsageReport => SignerRole::Device,
            Self::License | Self::Refresh | Self::Receipt => SignerRole::Vendor,
        }
    }

    /// "a" or "an", for messages.
    pub fn article(self) -> &'static str {
        match self {
            Self::ActivationRequest | Self::UsageReport => "an",
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

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ActivationRequest => "activation request",
            Self::License => "license",
            Self::Refresh => "refresh",
            Self::Deactivation => "deactivation",
            Self::UsageReport => "usage report",
            Self::Receipt => "receipt",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::from_armor_label(kind.armor_label()), Some(kind));
            assert_eq!(FileKind::from_content_type(kind.content_type()), Some(kind));
            assert_eq!(FileKind::from_name(kind.name()), Some(kind));
        }
        let mut types: Vec<_> = FileKind::ALL.iter().map(|k| k.content_type()).collect();
        types.dedup();
        assert_eq!(types.len(), FileKind::ALL.len());
    }
}
