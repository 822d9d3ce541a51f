//! Every way a file can be refused, each with a stable code and a hint that tells the
//! person holding the file what to do next.

use super::kind::FileKind;

/// Why a file was refused.
///
/// The `code()` of each variant is stable and documented in `docs/format.md`; the
/// `Display` text says what is wrong, `hint()` says what to do about it. Signature
/// failures are deliberately opaque: they never say which byte was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input is larger than any lic file can be; it was not decoded at all. `size`
    /// is how many bytes were seen (a reader may stop reading at `limit + 1`).
    #[error("the file is too large: a lic file has at most {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    /// No `-----BEGIN LIC …-----` line was found.
    #[error("no lic file found: the text has no '-----BEGIN LIC …-----' line")]
    ArmorMissing,

    /// A BEGIN line without its END line: the text was cut off.
    #[error("the file is truncated: '-----BEGIN LIC {label}-----' has no matching END line")]
    ArmorTruncated { label: String },

    /// A BEGIN or END line with text after its closing `-----`, or without it.
    #[error("line {line} is not a well-formed armor line: {reason}")]
    ArmorMalformedLine { line: usize, reason: String },

    /// The BEGIN and END lines name different things.
    #[error("the armor is inconsistent: it begins as 'LIC {begin}' but ends as 'LIC {end}'")]
    ArmorLabelMismatch { begin: String, end: String },

    /// The label is a known one in another letter case (labels are case sensitive).
    #[error(
        "the armor label 'LIC {found}' is not written as lic writes it: labels are case \
         sensitive, and this one should be 'LIC {expected}'"
    )]
    ArmorLabelCase {
        found: String,
        expected: &'static str,
    },

    /// The label is not one of the file kinds this version knows.
    #[error("'LIC {label}' is not a kind of file this version of lic knows")]
    ArmorUnknownKind { label: String },

    /// More than one block in the text: which one was meant is not guessed.
    #[error("the text holds more than one lic file; give one file at a time")]
    ArmorMultipleBlocks,

    /// The body of the armor is not canonical base64.
    #[error("line {line} of the file is not valid base64: {reason}")]
    ArmorBadBase64 { line: usize, reason: String },

    /// A file of one kind was given where another was expected.
    #[error("this is {} {found} file, but {} {expected} file was expected", found.article(), expected.article())]
    WrongKind { expected: FileKind, found: FileKind },

    /// The CBOR is nested more deeply than any lic structure is.
    #[error("the {part} is nested more deeply than a lic file may be")]
    CborTooDeep { part: &'static str },

    /// Bytes follow the CBOR item.
    #[error("the {part} has {extra} unexpected bytes after its end")]
    CborTrailingBytes { part: &'static str, extra: usize },

    /// The CBOR is malformed or truncated.
    #[error("the {part} is not well-formed CBOR: {reason}")]
    CborMalformed { part: &'static str, reason: String },

    /// Well-formed CBOR, but not in the deterministic encoding the format requires.
    #[error("the {part} is not deterministically encoded CBOR: {reason}")]
    CborNotDeterministic { part: &'static str, reason: String },

    /// The outer structure is not a tagged COSE_Sign1.
    #[error("the file is not a signed lic file (a tagged COSE_Sign1): {reason}")]
    CoseMalformed { reason: String },

    /// The signature algorithm is not EdDSA.
    #[error("the file is signed with algorithm {found}, but lic files are signed with EdDSA")]
    UnsupportedAlgorithm { found: String },

    /// The protected header marks parameters critical that this version does not know.
    #[error("the file requires header parameters this version of lic does not know ({labels})")]
    UnsupportedCritical { labels: String },

    /// The payload's format version is newer (or older) than this version can read.
    #[error("the file's format version is {found}; this version of lic reads version {supported}")]
    UnsupportedVersion { found: u64, supported: u64 },

    /// The signed content type does not name the kind the armor (or caller) claims.
    #[error("the signed content type says {found}, not {expected}")]
    WrongContentType { expected: String, found: String },

    /// The signed content type names a kind of lic file this version does not know (a
    /// newer kind): `application/vnd.lic.<name>+cbor` with an unknown name.
    #[error("the file is a kind of lic file this version of lic does not know ({found})")]
    UnsupportedKind { found: String },

    /// A parameter that belongs in the protected header is missing or unusable there.
    #[error("the protected header is unusable: {reason}")]
    HeaderInvalid { reason: String },

    /// Parameters in the unprotected header, which lic never uses and never trusts.
    #[error("the file has parameters in its unprotected header, which lic files never have")]
    UnprotectedHeader,

    /// Signed by a vendor key that is not in the trusted keyring.
    #[error("the file is signed by key {kid}, which is not one of the trusted vendor keys")]
    UnknownKey { kid: String },

    /// Signed by a vendor key that a key set revoked: files it signed are no longer trusted,
    /// whenever they were made.
    #[error("the file is signed by vendor key {kid}, which the vendor revoked ({reason})")]
    KeyRevoked { kid: String, reason: String },

    /// A device-signed file whose signer key is not a usable Ed25519 key.
    #[error("the file is signed by a weak or invalid device key")]
    WeakKey,

    /// A device-signed file signed by another device than the one expected.
    #[error("the file is signed by device key {found}, not by the expected device key {expected}")]
    WrongSigner { expected: String, found: String },

    /// The signature does not verify. Opaque on purpose.
    #[error(
        "the signature is not valid: the file was changed after it was signed, or not signed by the key it names"
    )]
    BadSignature,

    /// The payload decodes but does not have the fields its kind requires.
    #[error("the {kind} payload is invalid: {reason}")]
    PayloadInvalid { kind: FileKind, reason: String },

    /// Writing: a part of the file could not be encoded (for example a caller-built
    /// protected header that repeats a label).
    #[error("the {part} could not be encoded: {reason}")]
    EncodeFailed { part: &'static str, reason: String },
}

impl FormatError {
    /// A stable, machine-readable code for the error (documented in `docs/format.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too-large",
            Self::ArmorMissing => "armor-missing",
            Self::ArmorTruncated { .. } => "armor-truncated",
            Self::ArmorMalformedLine { .. } => "armor-malformed-line",
            Self::ArmorLabelMismatch { .. } => "armor-label-mismatch",
            Self::ArmorLabelCase { .. } => "armor-label-case",
            Self::ArmorUnknownKind { .. } => "armor-unknown-kind",
            Self::ArmorMultipleBlocks => "armor-multiple-blocks",
            Self::ArmorBadBase64 { .. } => "armor-bad-base64",
            Self::WrongKind { .. } => "wrong-kind",
            Self::CborTooDeep { .. } => "cbor-too-deep",
            Self::CborTrailingBytes { .. } => "cbor-trailing-bytes",
            Self::CborMalformed { .. } => "cbor-malformed",
            Self::CborNotDeterministic { .. } => "cbor-not-deterministic",
            Self::CoseMalformed { .. } => "cose-malformed",
            Self::UnsupportedAlgorithm { .. } => "unsupported-algorithm",
            Self::UnsupportedCritical { .. } => "unsupported-critical",
            Self::UnsupportedVersion { .. } => "unsupported-version",
            Self::WrongContentType { .. } => "wrong-content-type",
            Self::UnsupportedKind { .. } => "unsupported-kind",
            Self::HeaderInvalid { .. } => "header-invalid",
            Self::UnprotectedHeader => "unprotected-header",
            Self::UnknownKey { .. } => "unknown-key",
            Self::KeyRevoked { .. } => "key-revoked",
            Self::WeakKey => "weak-key",
            Self::WrongSigner { .. } => "wrong-signer",
            Self::BadSignature => "bad-signature",
            Self::PayloadInvalid { .. } => "payload-invalid",
            Self::EncodeFailed { .. } => "encode-failed",
        }
    }

    /// What the person holding the file should do next.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } | Self::ArmorMissing => {
                "check that you gave the right file: lic files are small text files that \
                 start with '-----BEGIN LIC'"
            }
            Self::ArmorTruncated { .. }
            | Self::ArmorBadBase64 { .. }
            | Self::ArmorLabelMismatch { .. }
            | Self::CborTrailingBytes { .. }
            | Self::CborMalformed { .. } => {
                "the file was damaged or cut off on its way (mail clients and editors can do \
                 this): ask the sender for the file again, as an attachment"
            }
            Self::ArmorMalformedLine { .. } => {
                "each '-----BEGIN LIC …-----' and '-----END LIC …-----' line stands alone on \
                 its line: correct the line as the message shows, or ask the sender for the \
                 file again, as an attachment"
            }
            Self::ArmorLabelCase { .. } => {
                "the BEGIN and END lines were changed on the file's way (an editor or mail \
                 client changed their letter case): write them in upper case as the message \
                 shows, or ask the sender for the file again, as an attachment"
            }
            Self::ArmorMultipleBlocks => {
                "save each '-----BEGIN LIC' … '-----END LIC' block to a file of its own and \
                 give them one at a time"
            }
            Self::ArmorUnknownKind { .. }
            | Self::UnsupportedKind { .. }
            | Self::UnsupportedCritical { .. }
            | Self::UnsupportedVersion { .. } => {
                "the file was made by a newer version of lic: update lic (or the application) \
                 and try again"
            }
            Self::WrongKind { .. } | Self::WrongContentType { .. } => {
                "check that you gave the right file for this step; the kind of each file is \
                 named on its '-----BEGIN LIC' line"
            }
            Self::CborTooDeep { .. }
            | Self::CborNotDeterministic { .. }
            | Self::CoseMalformed { .. }
            | Self::UnsupportedAlgorithm { .. }
            | Self::HeaderInvalid { .. }
            | Self::UnprotectedHeader
            | Self::WeakKey
            | Self::PayloadInvalid { .. } => {
                "the file was not made by lic or was altered: ask the sender for a new file"
            }
            Self::UnknownKey { .. } => {
                "the file comes from a vendor key this installation does not trust: update the \
                 trusted vendor keys (the vendor's public key file) or ask the vendor which key \
                 signed it"
            }
            Self::KeyRevoked { .. } => {
                "the vendor no longer trusts the key that signed this file: ask the vendor for \
                 the same file signed again with its current key (for an installed license: \
                 `lic-portal activation resign`), and install it"
            }
            Self::WrongSigner { .. } => {
                "the file was made on another device than the one it is applied to: use the \
                 file made on the device that holds this activation"
            }
            Self::BadSignature => {
                "do not use this file: it was altered after signing. Ask the sender for a new \
                 copy"
            }
            Self::EncodeFailed { .. } => {
                "the program that writes the file has a bug: report it with the command that \
                 failed (nothing was written)"
            }
        }
    }
}
