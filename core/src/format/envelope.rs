//! The COSE_Sign1 envelope: signing, and verification in the order `docs/format.md`
//! gives, each step with its own error.

use ciborium::Value;
use coset::iana::{self, EnumI64 as _};
use coset::{
    AsCborValue as _, CoseSign1, HeaderBuilder, Label, ProtectedHeader, RegisteredLabelWithPrivate,
};
use sha2::{Digest, Sha256};

use super::armor;
use super::cbor;
use super::error::FormatError;
use super::kind::{FileKind, SignerRole};
use super::payload::{Bytes32, FORMAT_VERSION, Payload};
use crate::keys::{Keyring, Kid, PublicKey, SecretKey};

/// CBOR tag of a COSE_Sign1 structure.
pub const COSE_SIGN1_TAG: u64 = 18;

/// Private-use protected header parameter carrying the signer's 32-byte Ed25519 public
/// key in device-signed files.
pub const HEADER_DEVICE_KEY: i64 = -65537;

/// A signed file, as the exact bytes of its COSE_Sign1 structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedFile {
    kind: FileKind,
    bytes: Vec<u8>,
}

impl SignedFile {
    /// A file this implementation signed earlier, kept as bytes (e.g. in the store).
    pub(crate) fn from_parts(kind: FileKind, bytes: Vec<u8>) -> Self {
        SignedFile { kind, bytes }
    }

    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// The binary COSE_Sign1 bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The armored text form, as written to disk and mail.
    pub fn armored(&self) -> String {
        armor::encode(self.kind, &self.bytes)
    }

    /// SHA-256 of the binary bytes: the file's identity for idempotency and audit.
    pub fn hash(&self) -> Bytes32 {
        file_hash(&self.bytes)
    }
}

/// SHA-256 of a file's binary (unarmored) COSE bytes.
pub fn file_hash(cose: &[u8]) -> Bytes32 {
    Bytes32(Sha256::digest(cose).into())
}

/// A payload whose signature has been verified. Only this module builds one.
#[derive(Clone, Debug)]
pub struct Verified<T> {
    payload: T,
    signer: PublicKey,
    hash: Bytes32,
    bytes: Vec<u8>,
}

impl<T> Verified<T> {
    pub(crate) fn new(payload: T, signer: PublicKey, hash: Bytes32, bytes: Vec<u8>) -> Self {
        Verified {
            payload,
            signer,
            hash,
            bytes,
        }
    }

    pub fn payload(&self) -> &T {
        &self.payload
    }

    pub fn into_payload(self) -> T {
        self.payload
    }

    /// The key that signed the file: a trusted vendor key, or for device-signed kinds
    /// the device key from the protected header (compare it with the key you expect, or
    /// use [`Verified::expect_signer`]).
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    /// SHA-256 of the exact binary bytes that were verified.
    pub fn file_hash(&self) -> Bytes32 {
        self.hash
    }

    /// The exact binary bytes that were verified.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Refuse the file unless it was signed by `expected`.
    pub fn expect_signer(self, expected: &PublicKey) -> Result<Self, FormatError> {
        if self.signer == *expected {
            Ok(self)
        } else {
            Err(FormatError::WrongSigner {
                expected: expected.kid().to_string(),
                found: self.signer.kid().to_string(),
            })
        }
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.payload
    }
}

/// Sign `payload` with `key`. Device-signed kinds carry `key`'s public key in the
/// protected header.
pub fn sign<T: Payload>(payload: &T, key: &SecretKey) -> Result<SignedFile, FormatError> {
    payload
        .validate()
        .map_err(|reason| FormatError::PayloadInvalid {
            kind: T::KIND,
            reason,
        })?;
    let mut value = Value::serialized(payload).map_err(|e| FormatError::PayloadInvalid {
        kind: T::KIND,
        reason: e.to_string(),
    })?;
    let Value::Map(entries) = &mut value else {
        return Err(FormatError::PayloadInvalid {
            kind: T::KIND,
            reason: "the payload is not a map".into(),
        });
    };
    entries.push((
        Value::Text("v".into()),
        Value::Integer(FORMAT_VERSION.into()),
    ));
    cbor::canonicalize(&mut value);
    Ok(sign_raw(T::KIND, cbor::encode_value(&value), key))
}

/// Sign arbitrary payload bytes as a file of `kind`. A low-level tool for test vectors
/// and other implementations' interoperability tests: nothing checks the payload.
pub fn sign_raw(kind: FileKind, payload: Vec<u8>, key: &SecretKey) -> SignedFile {
    let mut header = HeaderBuilder::new()
        .algorithm(iana::Algorithm::EdDSA)
        .content_type(kind.content_type().to_string())
        .key_id(key.kid().as_bytes().to_vec());
    if kind.signer() == SignerRole::Device {
        header = header.value(
            HEADER_DEVICE_KEY,
            Value::Bytes(key.public().to_bytes().to_vec()),
        );
    }
    sign_with_header(kind, header.build(), payload, key)
}

/// Sign with a caller-built protected header (test vectors only: nothing is checked).
#[doc(hidden)]
pub fn sign_with_header(
    kind: FileKind,
    protected: coset::Header,
    payload: Vec<u8>,
    key: &SecretKey,
) -> SignedFile {
    // The protected header is encoded deterministically here rather than trusting the
    // order in which coset happens to write its fields.
    let mut header_value = protected.clone().to_cbor_value().unwrap_or(Value::Null);
    cbor::canonicalize(&mut header_value);
    let mut sign1 = CoseSign1 {
        protected: ProtectedHeader {
            original_data: Some(cbor::encode_value(&header_value)),
            header: protected,
        },
        unprotected: coset::Header::default(),
        payload: Some(payload),
        signature: Vec::new(),
    };
    sign1.signature = key.sign(&sign1.tbs_data(&[])).to_vec();
    let mut bytes = Vec::new();
    // A COSE_Sign1 built from valid parts always serializes.
    if let Ok(value) = sign1.to_cbor_value() {
        bytes = cbor::encode_value(&Value::Tag(COSE_SIGN1_TAG, Box::new(value)));
    }
    SignedFile { kind, bytes }
}

/// Read a file (armored text, or binary COSE bytes), verify it and decode its payload.
///
/// A vendor-signed kind must be signed by a key in `keys`; a device-signed kind is
/// verified against the device key it carries (see [`Verified::signer`]).
pub fn open<T: Payload>(input: &[u8], keys: &Keyring) -> Result<Verified<T>, FormatError> {
    let (kind, bytes) = unarmor(input)?;
    if kind.is_some_and(|k| k != T::KIND) {
        return Err(FormatError::WrongKind {
            expected: T::KIND,
            found: kind.unwrap_or(T::KIND),
        });
    }
    verify(bytes, keys)
}

/// Verify binary COSE_Sign1 bytes of a `T` file and decode its payload.
pub fn verify<T: Payload>(bytes: Vec<u8>, keys: &Keyring) -> Result<Verified<T>, FormatError> {
    let checked = verify_envelope(&bytes, Some(T::KIND), keys)?;
    let payload = decode_payload::<T>(&checked.payload)?;
    let hash = file_hash(&bytes);
    Ok(Verified::new(payload, checked.signer, hash, bytes))
}

/// Armored text → (kind named by the armor, bytes); binary input (starting with the
/// COSE_Sign1 tag) is passed through with no kind.
pub fn unarmor(input: &[u8]) -> Result<(Option<FileKind>, Vec<u8>), FormatError> {
    if input.len() > armor::MAX_FILE_SIZE {
        return Err(FormatError::TooLarge {
            size: input.len(),
            limit: armor::MAX_FILE_SIZE,
        });
    }
    // 0xd2 is the first byte of tag 18; armored text always starts with printable text.
    if input.first() == Some(&0xd2) {
        return Ok((None, input.to_vec()));
    }
    let (kind, bytes) = armor::decode(input)?;
    Ok((Some(kind), bytes))
}

/// What the envelope checks leave: the kind, the key that signed, the payload bytes.
pub(crate) struct CheckedEnvelope {
    pub kind: FileKind,
    pub signer: PublicKey,
    pub payload: Vec<u8>,
}

/// Steps 1–9 of verification (docs/format.md §Verification): everything up to and
/// including the signature, before the payload is interpreted.
pub(crate) fn verify_envelope(
    bytes: &[u8],
    expected: Option<FileKind>,
    keys: &Keyring,
) -> Result<CheckedEnvelope, FormatError> {
    if bytes.len() > armor::MAX_FILE_SIZE {
        return Err(FormatError::TooLarge {
            size: bytes.len(),
            limit: armor::MAX_FILE_SIZE,
        });
    }
    let value = cbor::decode_strict(bytes, "file")?;
    let inner = match value {
        Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
        Value::Tag(tag, _) => {
            return Err(FormatError::CoseMalformed {
                reason: format!("it is tagged {tag}, not 18 (COSE_Sign1)"),
            });
        }
        _ => {
            return Err(FormatError::CoseMalformed {
                reason: "it is not tagged 18 (COSE_Sign1)".into(),
            });
        }
    };
    let sign1 = CoseSign1::from_cbor_value(inner).map_err(|e| FormatError::CoseMalformed {
        reason: e.to_string(),
    })?;
    let protected_bytes = sign1.protected.original_data.as_deref().unwrap_or_default();
    if protected_bytes.is_empty() {
        return Err(FormatError::HeaderInvalid {
            reason: "the protected header is empty".into(),
        });
    }
    cbor::decode_strict(protected_bytes, "protected header")?;
    let Some(payload) = &sign1.payload else {
        return Err(FormatError::CoseMalformed {
            reason: "the payload is detached (nil); lic files carry their payload".into(),
        });
    };
    if !sign1.unprotected.is_empty() {
        return Err(FormatError::UnprotectedHeader);
    }
    let header = &sign1.protected.header;
    match &header.alg {
        Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA)) => {}
        Some(other) => {
            return Err(FormatError::UnsupportedAlgorithm {
                found: describe_alg(other),
            });
        }
        None => {
            return Err(FormatError::HeaderInvalid {
                reason: "it names no algorithm (label 1)".into(),
            });
        }
    }
    if !header.crit.is_empty() {
        return Err(FormatError::UnsupportedCritical {
            labels: header
                .crit
                .iter()
                .map(|l| match l {
                    RegisteredLabelWithPrivate::Assigned(p) => p.to_i64().to_string(),
                    RegisteredLabelWithPrivate::PrivateUse(n) => n.to_string(),
                    RegisteredLabelWithPrivate::Text(t) => format!("{t:?}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let content_type = match &header.content_type {
        Some(coset::ContentType::Text(t)) => t.as_str(),
        Some(coset::ContentType::Assigned(_)) => {
            return Err(FormatError::HeaderInvalid {
                reason: "the content type (label 3) is a number, not a lic content type".into(),
            });
        }
        None => {
            return Err(FormatError::HeaderInvalid {
                reason: "it has no content type (label 3)".into(),
            });
        }
    };
    let kind = match (FileKind::from_content_type(content_type), expected) {
        (Some(kind), Some(exp)) if kind != exp => {
            return Err(FormatError::WrongContentType {
                expected: exp.content_type().into(),
                found: content_type.into(),
            });
        }
        (Some(kind), _) => kind,
        (None, exp) => {
            return Err(FormatError::WrongContentType {
                expected: exp
                    .map_or("a lic content type", FileKind::content_type)
                    .into(),
                found: content_type.into(),
            });
        }
    };
    let Some(kid) = Kid::from_slice(&header.key_id) else {
        return Err(FormatError::HeaderInvalid {
            reason: format!(
                "the key id (label 4) has {} bytes; lic key ids have 8",
                header.key_id.len()
            ),
        });
    };
    let signer = match kind.signer() {
        SignerRole::Vendor => *keys.get(&kid).ok_or_else(|| FormatError::UnknownKey {
            kid: kid.to_string(),
        })?,
        SignerRole::Device => {
            let key = device_key_param(header)?;
            if key.kid() != kid {
                return Err(FormatError::HeaderInvalid {
                    reason: "the key id does not belong to the device key in the header".into(),
                });
            }
            key
        }
    };
    let tbs = sign1.tbs_data(&[]);
    if !signer.verify_strict(&tbs, &sign1.signature) {
        return Err(FormatError::BadSignature);
    }
    Ok(CheckedEnvelope {
        kind,
        signer,
        payload: payload.clone(),
    })
}

fn device_key_param(header: &coset::Header) -> Result<PublicKey, FormatError> {
    let value = header
        .rest
        .iter()
        .find(|(label, _)| *label == Label::Int(HEADER_DEVICE_KEY))
        .map(|(_, v)| v)
        .ok_or_else(|| FormatError::HeaderInvalid {
            reason: format!(
                "a device-signed file must carry the device key (label {HEADER_DEVICE_KEY})"
            ),
        })?;
    let bytes: &[u8; 32] = value
        .as_bytes()
        .and_then(|b| b.as_slice().try_into().ok())
        .ok_or_else(|| FormatError::HeaderInvalid {
            reason: format!("the device key (label {HEADER_DEVICE_KEY}) is not 32 bytes"),
        })?;
    PublicKey::from_bytes(bytes).map_err(|_| FormatError::WeakKey)
}

fn describe_alg(alg: &coset::Algorithm) -> String {
    match alg {
        RegisteredLabelWithPrivate::Assigned(a) => format!("{a:?} ({})", a.to_i64()),
        RegisteredLabelWithPrivate::PrivateUse(n) => n.to_string(),
        RegisteredLabelWithPrivate::Text(t) => format!("{t:?}"),
    }
}

/// lic payloads use maps, arrays, text, byte strings, unsigned integers and booleans
/// only: a tag, a null, a float or a negative integer has no meaning in them and is
/// refused rather than silently read as something else.
fn plain_values(value: &Value) -> Result<(), String> {
    match value {
        Value::Tag(tag, _) => Err(format!("CBOR tag {tag} is not used in lic payloads")),
        Value::Null => Err("null is not a value in lic payloads; omit the field instead".into()),
        Value::Float(_) => Err("floating-point numbers are not used in lic payloads".into()),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            plain_values(k)?;
            plain_values(v)
        }),
        Value::Array(items) => items.iter().try_for_each(plain_values),
        _ => Ok(()),
    }
}

/// Steps 10–12: decode the verified payload bytes strictly, check the version, build `T`.
pub(crate) fn decode_payload<T: Payload>(bytes: &[u8]) -> Result<T, FormatError> {
    let value = cbor::decode_strict(bytes, "payload")?;
    let invalid = |reason: String| FormatError::PayloadInvalid {
        kind: T::KIND,
        reason,
    };
    let Value::Map(entries) = &value else {
        return Err(invalid("it is not a map".into()));
    };
    let version = entries
        .iter()
        .find(|(k, _)| k.as_text() == Some("v"))
        .map(|(_, v)| v)
        .ok_or_else(|| invalid("it has no format version `v`".into()))?;
    let version = version
        .as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| invalid("the format version `v` is not an unsigned integer".into()))?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    plain_values(&value).map_err(invalid)?;
    let payload: T = value.deserialized().map_err(|e| match e {
        ciborium::value::Error::Custom(reason) => invalid(reason),
    })?;
    payload.validate().map_err(invalid)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::payload::*;
    use chrono::{TimeZone, Utc};

    fn t(day: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }

    fn license(device: &PublicKey) -> License {
        License {
            license_id: "lic_1".into(),
            activation_id: "act_1".into(),
            product: "p".into(),
            device_key: Bytes32(device.to_bytes()),
            fingerprint: [("machine-id".to_string(), Bytes32([1; 32]))].into(),
            match_rule: MatchRule {
                required: vec!["machine-id".into()],
                max_changed: 0,
            },
            features: [("f".to_string(), Feature::default())].into(),
            license_type: LicenseType::Perpetual,
            issued: t(1),
            not_before: t(1),
            expires: None,
            offline_expiry: Some(t(20)),
            clock_tolerance: 3600,
            serial: 1,
            request_nonce: Nonce([9; 16]),
        }
    }

    fn usage(seq: u64) -> UsageReport {
        UsageReport {
            activation_id: "act_1".into(),
            product: "p".into(),
            counters: [("f".to_string(), 5)].into(),
            journal: JournalHead {
                seq,
                prev: Bytes32([2; 32]),
            },
            created: t(3),
        }
    }

    #[test]
    fn a_signed_license_round_trips_armored_and_binary() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let device = SecretKey::from_seed(&[2; 32]);
        let payload = license(&device.public());
        let file = sign(&payload, &vendor).unwrap();
        let keys = Keyring::with([vendor.public()]);
        let armored = open::<License>(file.armored().as_bytes(), &keys).unwrap();
        assert_eq!(armored.payload(), &payload);
        assert_eq!(armored.signer(), &vendor.public());
        assert_eq!(armored.file_hash(), file.hash());
        assert_eq!(armored.bytes(), file.bytes());
        let binary = open::<License>(file.bytes(), &keys).unwrap();
        assert_eq!(binary.payload(), &payload);
    }

    #[test]
    fn signing_is_deterministic() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let payload = license(&SecretKey::from_seed(&[2; 32]).public());
        assert_eq!(
            sign(&payload, &vendor).unwrap(),
            sign(&payload, &vendor).unwrap()
        );
    }

    #[test]
    fn a_rotated_keyring_verifies_files_from_old_and_new_keys() {
        let (old, new) = (
            SecretKey::from_seed(&[3; 32]),
            SecretKey::from_seed(&[4; 32]),
        );
        let payload = license(&SecretKey::from_seed(&[2; 32]).public());
        let keys = Keyring::with([old.public(), new.public()]);
        for key in [&old, &new] {
            let file = sign(&payload, key).unwrap();
            let read = open::<License>(file.bytes(), &keys).unwrap();
            assert_eq!(read.signer(), &key.public());
        }
        let only_new = Keyring::with([new.public()]);
        let from_old = sign(&payload, &old).unwrap();
        assert_eq!(
            open::<License>(from_old.bytes(), &only_new).unwrap_err(),
            FormatError::UnknownKey {
                kid: old.kid().to_string()
            }
        );
    }

    #[test]
    fn device_signed_files_name_their_signer_and_can_be_pinned() {
        let device = SecretKey::from_seed(&[5; 32]);
        let other = SecretKey::from_seed(&[6; 32]);
        let file = sign(&usage(1), &device).unwrap();
        let read = open::<UsageReport>(file.bytes(), &Keyring::new()).unwrap();
        assert_eq!(read.signer(), &device.public());
        assert!(read.clone().expect_signer(&device.public()).is_ok());
        assert_eq!(
            read.expect_signer(&other.public()).unwrap_err(),
            FormatError::WrongSigner {
                expected: other.kid().to_string(),
                found: device.kid().to_string()
            }
        );
    }

    #[test]
    fn a_vendor_key_in_the_keyring_does_not_make_a_device_file_vendor_signed() {
        // A usage report signed by the vendor key still verifies only as a device file
        // (against the key it carries); it never borrows the keyring's trust.
        let vendor = SecretKey::from_seed(&[1; 32]);
        let file = sign(&usage(1), &vendor).unwrap();
        let read = open::<UsageReport>(file.bytes(), &Keyring::with([vendor.public()])).unwrap();
        assert_eq!(read.signer(), &vendor.public());
    }

    #[test]
    fn invalid_payloads_are_refused_when_signing() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let mut payload = license(&SecretKey::from_seed(&[2; 32]).public());
        payload.serial = 2;
        assert_eq!(
            sign(&payload, &vendor).unwrap_err(),
            FormatError::PayloadInvalid {
                kind: FileKind::License,
                reason: "`serial` is 2, but a license has serial 1".into()
            }
        );
        let mut payload = license(&SecretKey::from_seed(&[2; 32]).public());
        payload.match_rule.required.push("mac".into());
        assert!(sign(&payload, &vendor).is_err());
    }

    #[test]
    fn the_payload_carries_the_version_and_sorted_keys() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let file = sign(&license(&SecretKey::from_seed(&[2; 32]).public()), &vendor).unwrap();
        let checked = verify_envelope(
            file.bytes(),
            Some(FileKind::License),
            &Keyring::with([vendor.public()]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let value = cbor::decode_strict(&checked.payload, "payload").unwrap();
        let map = value.as_map().unwrap();
        assert!(
            map.iter()
                .any(|(k, v)| k.as_text() == Some("v") && v.as_integer() == Some(1.into()))
        );
    }

    #[test]
    fn open_refuses_a_file_of_another_kind_by_its_armor() {
        let device = SecretKey::from_seed(&[5; 32]);
        let file = sign(&usage(1), &device).unwrap();
        assert_eq!(
            open::<Deactivation>(file.armored().as_bytes(), &Keyring::new()).unwrap_err(),
            FormatError::WrongKind {
                expected: FileKind::Deactivation,
                found: FileKind::UsageReport
            }
        );
        // Binary input has no armor: the signed content type catches it.
        assert_eq!(
            open::<Deactivation>(file.bytes(), &Keyring::new()).unwrap_err(),
            FormatError::WrongContentType {
                expected: FileKind::Deactivation.content_type().into(),
                found: FileKind::UsageReport.content_type().into()
            }
        );
    }

    #[test]
    fn json_shows_hashes_as_hex_and_times_as_rfc3339_and_reads_them_back() {
        let report = usage(7);
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.contains("\"created\":\"2026-11-03T12:00:00Z\""),
            "{json}"
        );
        assert!(
            json.contains(&format!("\"prev\":\"{}\"", "02".repeat(32))),
            "{json}"
        );
        let back: UsageReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
