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
use super::kind::{FileKind, SignerRole, is_lic_content_type};
use super::payload::{Bytes32, FORMAT_VERSION, Payload, Shape, payload_shape};
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
    #[cfg_attr(not(feature = "device"), allow(dead_code))]
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

/// A payload whose signature has been verified. Only the verifier in this module builds
/// one (from a `CheckedEnvelope`, which only `verify_envelope` makes), so unverified data
/// cannot pass for verified anywhere else, in this crate or outside it.
#[derive(Clone, Debug)]
pub struct Verified<T> {
    payload: T,
    signer: PublicKey,
    /// The file's SHA-256, computed when first asked for: checking a license needs none.
    hash: std::sync::OnceLock<Bytes32>,
    bytes: Vec<u8>,
}

impl<T> Verified<T> {
    fn new(payload: T, signer: PublicKey, bytes: Vec<u8>) -> Self {
        Verified {
            payload,
            signer,
            hash: std::sync::OnceLock::new(),
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
        *self.hash.get_or_init(|| file_hash(&self.bytes))
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
///
/// Times are written as whole seconds since the Unix epoch (docs/format.md): a fraction
/// of a second in any time of `payload` is dropped (the time is rounded down to its
/// second), so [`open`] gives back the time truncated, not the one given. Truncate times
/// yourself (`t.with_nanosecond(0)`) if you compare them with what a file carries.
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
    sign_raw(T::KIND, cbor::encode_value(&value), key)
}

/// Sign arbitrary payload bytes as a file of `kind`. A low-level tool for test vectors
/// and other implementations' interoperability tests: nothing checks the payload.
pub fn sign_raw(
    kind: FileKind,
    payload: Vec<u8>,
    key: &SecretKey,
) -> Result<SignedFile, FormatError> {
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
///
/// A header coset cannot encode (for example one that repeats a label) is refused with
/// [`FormatError::EncodeFailed`]; nothing is signed then.
#[doc(hidden)]
pub fn sign_with_header(
    kind: FileKind,
    protected: coset::Header,
    payload: Vec<u8>,
    key: &SecretKey,
) -> Result<SignedFile, FormatError> {
    // The protected header is encoded deterministically here rather than trusting the
    // order in which coset happens to write its fields.
    let mut header_value =
        protected
            .clone()
            .to_cbor_value()
            .map_err(|e| FormatError::EncodeFailed {
                part: "protected header",
                reason: e.to_string(),
            })?;
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
    let value = sign1
        .to_cbor_value()
        .map_err(|e| FormatError::EncodeFailed {
            part: "file",
            reason: e.to_string(),
        })?;
    let bytes = cbor::encode_value(&Value::Tag(COSE_SIGN1_TAG, Box::new(value)));
    Ok(SignedFile { kind, bytes })
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
    decode_verified(verify_envelope(bytes, Some(T::KIND), keys)?)
}

/// Steps 10–13 on an envelope that passed steps 1–9: decode the payload as a `T` and
/// wrap it, with the signer and the file's bytes and hash, as verified.
pub(super) fn decode_verified<T: Payload>(
    checked: CheckedEnvelope,
) -> Result<Verified<T>, FormatError> {
    let payload = decode_payload::<T>(&checked.payload)?;
    Ok(Verified::new(payload, checked.signer, checked.bytes))
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
    // The QR text form (`LIC1:` + base45) names no kind, like binary bytes.
    if let Some(bytes) = super::qrtext::decode(input) {
        return Ok((None, bytes?));
    }
    let (kind, bytes) = armor::decode(input)?;
    Ok((Some(kind), bytes))
}

/// The COSE_Sign1 structure of binary file bytes, read without verifying anything.
fn parse_sign1(cose: &[u8]) -> Result<CoseSign1, FormatError> {
    if cose.len() > armor::MAX_FILE_SIZE {
        return Err(FormatError::TooLarge {
            size: cose.len(),
            limit: armor::MAX_FILE_SIZE,
        });
    }
    match cbor::decode_strict(cose, "file")? {
        Value::Tag(COSE_SIGN1_TAG, inner) => {
            CoseSign1::from_cbor_value(*inner).map_err(|e| FormatError::CoseMalformed {
                reason: e.to_string(),
            })
        }
        _ => Err(FormatError::CoseMalformed {
            reason: "it is not tagged 18 (COSE_Sign1)".into(),
        }),
    }
}

/// The kind binary file bytes say they are (their protected content type), read
/// **without verifying** them: only to choose how to verify them next.
pub fn kind_of(cose: &[u8]) -> Result<FileKind, FormatError> {
    let sign1 = parse_sign1(cose)?;
    match &sign1.protected.header.content_type {
        Some(coset::ContentType::Text(t)) => match FileKind::from_content_type(t) {
            Some(kind) => Ok(kind),
            None if is_lic_content_type(t) => {
                Err(FormatError::UnsupportedKind { found: t.clone() })
            }
            None => Err(FormatError::WrongContentType {
                expected: "a lic content type".into(),
                found: t.clone(),
            }),
        },
        _ => Err(FormatError::HeaderInvalid {
            reason: "it has no content type (label 3)".into(),
        }),
    }
}

/// Whether two files (binary COSE bytes) carry the very same payload bytes — the same
/// content, whoever signed each. Nothing is verified: verify the file you trust first.
pub fn same_payload(a: &[u8], b: &[u8]) -> bool {
    match (parse_sign1(a), parse_sign1(b)) {
        (Ok(a), Ok(b)) => a.payload.is_some() && a.payload == b.payload,
        _ => false,
    }
}

/// The payload of binary `T` file bytes, decoded **without verifying** the signature.
///
/// Only for a file whose integrity is established another way: the device store keeps
/// the licenses it verified when they were installed, in state authenticated by the
/// device key, and writing a device-signed file (a usage report, a deactivation) needs
/// only the license's activation id — not the vendor's trust, which a machine may have
/// lost. Never use it on a file from outside.
pub fn payload_unverified<T: Payload>(cose: &[u8]) -> Result<T, FormatError> {
    let sign1 = parse_sign1(cose)?;
    let payload = sign1.payload.ok_or_else(|| FormatError::CoseMalformed {
        reason: "it has no payload".into(),
    })?;
    decode_payload::<T>(&payload)
}

/// What the envelope checks leave: the kind, the key that signed, the payload bytes, and
/// the binary file they came from. Its fields are private to this module, so only
/// [`verify_envelope`] makes one.
pub(super) struct CheckedEnvelope {
    kind: FileKind,
    signer: PublicKey,
    payload: Vec<u8>,
    bytes: Vec<u8>,
}

impl CheckedEnvelope {
    /// The kind named by the signed content type.
    pub(super) fn kind(&self) -> FileKind {
        self.kind
    }
}

/// Steps 1–9 of verification (docs/format.md §6.2): everything up to and including the
/// signature, before the payload is interpreted.
pub(super) fn verify_envelope(
    bytes: Vec<u8>,
    expected: Option<FileKind>,
    keys: &Keyring,
) -> Result<CheckedEnvelope, FormatError> {
    if bytes.len() > armor::MAX_FILE_SIZE {
        return Err(FormatError::TooLarge {
            size: bytes.len(),
            limit: armor::MAX_FILE_SIZE,
        });
    }
    // The fast reading proves the protected header deterministic as it reads it.
    let (sign1, header_proven) = match plain_sign1(&bytes) {
        Some(sign1) => (sign1, true),
        None => (parse_sign1_checked(&bytes)?, false),
    };
    verify_sign1(sign1, header_proven, bytes, expected, keys)
}

/// The COSE_Sign1 structure of `bytes` read directly, without decoding the whole file
/// into a CBOR value: for a file that is plainly deterministic CBOR
/// ([`cbor::is_plainly_deterministic`]) of exactly the shape lic writes — tag 18, an
/// array of four: a byte string, an empty map, a byte string, a byte string. `None`
/// for anything else, which [`parse_sign1_checked`] then reads (and refuses, with its
/// own errors): both give the same structure for every file this accepts.
fn plain_sign1(bytes: &[u8]) -> Option<CoseSign1> {
    if !cbor::is_plainly_deterministic(bytes) {
        return None;
    }
    let rest = bytes.strip_prefix(&[0xd2, 0x84])?;
    let (protected, rest) = plain_bstr(rest)?;
    let rest = rest.strip_prefix(&[0xa0])?;
    let (payload, rest) = plain_bstr(rest)?;
    let (signature, rest) = plain_bstr(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let protected = ProtectedHeader {
        original_data: Some(protected.to_vec()),
        header: plain_header(protected)?,
    };
    Some(CoseSign1 {
        protected,
        unprotected: coset::Header::default(),
        payload: Some(payload.to_vec()),
        signature: signature.to_vec(),
    })
}

/// The protected header exactly as lic writes it, read directly (what
/// `ProtectedHeader::from_cbor_bstr` gives, without a CBOR value in between): plainly
/// deterministic CBOR ([`cbor::is_plainly_deterministic`], which step 5 asks of the
/// header), a map of the algorithm EdDSA (1: -8), a lic content type (3), a non-empty
/// key id (4) and, for device-signed kinds, the device key (-65537: a byte string).
/// `None` for anything else — an empty header, another label or value — which coset then
/// reads (and the checks after it refuse, with their own errors).
fn plain_header(protected: &[u8]) -> Option<coset::Header> {
    if !cbor::is_plainly_deterministic(protected) {
        return None;
    }
    let mut at = 0;
    let (5, entries) = cbor::plain_head(protected, &mut at)? else {
        return None;
    };
    let mut header = coset::Header::default();
    // Keys are sorted and unique (proven): each label is read at most once.
    for _ in 0..entries {
        match cbor::plain_head(protected, &mut at)? {
            // 1: alg, -8 (EdDSA).
            (0, 1) => {
                if cbor::plain_head(protected, &mut at)? != (1, 7) {
                    return None;
                }
                header.alg = Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA));
            }
            // 3: content type, one of lic's (which coset's checks of a text content type,
            // non-empty, not padded, one `/`, all pass).
            (0, 3) => {
                let text = std::str::from_utf8(plain_content(protected, &mut at, 3)?).ok()?;
                FileKind::from_content_type(text)?;
                header.content_type = Some(coset::ContentType::Text(text.to_owned()));
            }
            // 4: kid, non-empty (as coset requires).
            (0, 4) => {
                let kid = plain_content(protected, &mut at, 2)?;
                if kid.is_empty() {
                    return None;
                }
                header.key_id = kid.to_vec();
            }
            // -65537: the device key (checked later, as coset's reading leaves it).
            (1, 65536) => {
                const _: () = assert!(HEADER_DEVICE_KEY == -65537);
                let key = plain_content(protected, &mut at, 2)?;
                header
                    .rest
                    .push((Label::Int(HEADER_DEVICE_KEY), Value::Bytes(key.to_vec())));
            }
            _ => return None,
        }
    }
    (at == protected.len()).then_some(header)
}

/// The content of the byte (major 2) or text (major 3) string at `bytes[*at]`.
fn plain_content<'a>(bytes: &'a [u8], at: &mut usize, major: u8) -> Option<&'a [u8]> {
    let (found, len) = cbor::plain_head(bytes, at)?;
    if found != major {
        return None;
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let content = bytes.get(*at..end)?;
    *at = end;
    Some(content)
}

/// A definite-length byte string at the start of `bytes` (already known to be
/// well-formed), and what follows it.
fn plain_bstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&initial, rest) = bytes.split_first()?;
    if initial >> 5 != 2 {
        return None;
    }
    let (len, rest) = match initial & 0x1f {
        n @ 0..=23 => (usize::from(n), rest),
        24 => (usize::from(*rest.first()?), rest.get(1..)?),
        25 => (
            usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            rest.get(2..)?,
        ),
        26 => (
            usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?,
            rest.get(4..)?,
        ),
        _ => return None,
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// The COSE_Sign1 structure of `bytes`, decoded strictly as CBOR then read by coset:
/// steps 2–4 with their own errors.
fn parse_sign1_checked(bytes: &[u8]) -> Result<CoseSign1, FormatError> {
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
    CoseSign1::from_cbor_value(inner).map_err(|e| FormatError::CoseMalformed {
        reason: e.to_string(),
    })
}

/// Steps 5–9 on the structure read from `bytes`; `header_proven`: the protected header
/// is already proven plainly deterministic ([`plain_header`]).
fn verify_sign1(
    sign1: CoseSign1,
    header_proven: bool,
    bytes: Vec<u8>,
    expected: Option<FileKind>,
    keys: &Keyring,
) -> Result<CheckedEnvelope, FormatError> {
    let protected_bytes = sign1.protected.original_data.as_deref().unwrap_or_default();
    if protected_bytes.is_empty() {
        return Err(FormatError::HeaderInvalid {
            reason: "the protected header is empty".into(),
        });
    }
    // Step 5: a header proven plainly deterministic passes the strict decoding (a test
    // in `cbor` shows it), so only an unproven one is decoded again.
    if !header_proven {
        cbor::decode_strict(protected_bytes, "protected header")?;
    }
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
        // A lic content type of a kind this version does not know: a newer kind of file.
        (None, _) if is_lic_content_type(content_type) => {
            return Err(FormatError::UnsupportedKind {
                found: content_type.into(),
            });
        }
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
        SignerRole::Vendor => match (keys.get(&kid), keys.revocation(&kid)) {
            (Some(key), _) => *key,
            (None, Some(reason)) => {
                return Err(FormatError::KeyRevoked {
                    kid: kid.to_string(),
                    reason: reason.to_string(),
                });
            }
            (None, None) => {
                return Err(FormatError::UnknownKey {
                    kid: kid.to_string(),
                });
            }
        },
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
    let tbs = sig_structure(protected_bytes, payload);
    if !signer.verify_strict(&tbs, &sign1.signature) {
        return Err(FormatError::BadSignature);
    }
    Ok(CheckedEnvelope {
        kind,
        signer,
        payload: sign1.payload.unwrap_or_default(),
        bytes,
    })
}

/// The bytes a COSE_Sign1 signature covers (RFC 9052 §4.4), with no external data:
/// `["Signature1", protected, h'', payload]`, written directly rather than built as a
/// CBOR value and serialized (what `CoseSign1::tbs_data` gives, without the copies).
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    const CONTEXT: &[u8] = b"Signature1";
    let mut out = Vec::with_capacity(protected.len() + payload.len() + 32);
    out.push(0x84); // an array of 4
    head(&mut out, 3, CONTEXT.len());
    out.extend_from_slice(CONTEXT);
    head(&mut out, 2, protected.len());
    out.extend_from_slice(protected);
    head(&mut out, 2, 0); // external_aad: empty
    head(&mut out, 2, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A CBOR head of major type `major` with argument `len`, in its shortest form.
fn head(out: &mut Vec<u8>, major: u8, len: usize) {
    let major = major << 5;
    let len = len as u64;
    if len < 24 {
        out.push(major | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[major | 24, len as u8]);
    } else if len <= 0xffff {
        out.push(major | 25);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else if len <= 0xffff_ffff {
        out.push(major | 26);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&len.to_be_bytes());
    }
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

/// The values lic payloads use are maps, arrays, text, byte strings, integers (negative
/// ones too: timestamps before 1970) and booleans: a tag, a null or a float has no
/// meaning in a known field and is refused rather than silently read as something else
/// (ciborium would read a tagged integer as the integer, and a null as an absent field).
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

/// Step 13's type rules, applied to the fields this version knows (docs/format.md §5.10):
/// a field it does not know — an optional field added by a newer version — is ignored
/// whatever it holds (a float, a tag, a null), as long as the payload as a whole is
/// deterministic CBOR within the nesting limit (step 11). The keys of a structure are
/// text, known or not.
fn plain_known(value: &Value, shape: &Shape) -> Result<(), String> {
    match (shape, value) {
        (Shape::Struct(fields), Value::Map(entries)) => entries.iter().try_for_each(|(k, v)| {
            let Value::Text(name) = k else {
                return Err(format!(
                    "a map key is {}; the keys of lic structures are text strings",
                    describe_type(k)
                ));
            };
            match fields.iter().find(|(known, _)| known == name) {
                Some((_, shape)) => plain_known(v, shape),
                None => Ok(()),
            }
        }),
        (Shape::Names(inner), Value::Map(entries)) => entries.iter().try_for_each(|(k, v)| {
            plain_values(k)?;
            plain_known(v, inner)
        }),
        (Shape::List(inner), Value::Array(items)) => {
            items.iter().try_for_each(|v| plain_known(v, inner))
        }
        // A plain value, or a structure of the wrong type (which the typed decoding then
        // names, unless it is a tag, a null or a float).
        _ => plain_values(value),
    }
}

fn describe_type(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "an integer",
        Value::Bytes(_) => "a byte string",
        Value::Float(_) => "a float",
        Value::Text(_) => "a text string",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Tag(..) => "a tagged value",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "a value of another type",
    }
}

/// Step 10: the format version, read leniently — from the first CBOR item of the payload,
/// well-formed and within the nesting limit, ignoring trailing bytes and the rules of
/// deterministic encoding — so that a payload of a newer version is refused as
/// `unsupported-version` even if this version's encoding rules do not hold for it.
/// `None` unless the item is a map with exactly one key `"v"` holding an unsigned
/// integer that fits 64 bits.
fn lenient_version(bytes: &[u8]) -> Option<u64> {
    let Value::Map(entries) = cbor::decode_lenient(bytes)? else {
        return None;
    };
    let mut versions = entries.iter().filter(|(k, _)| k.as_text() == Some("v"));
    let (_, version) = versions.next()?;
    if versions.next().is_some() {
        return None;
    }
    u64::try_from(version.as_integer()?).ok()
}

/// Steps 10–13: check the version, decode the verified payload bytes strictly, build `T`.
fn decode_payload<T: Payload>(bytes: &[u8]) -> Result<T, FormatError> {
    match decode_plain_payload(bytes) {
        Some(payload) => Ok(payload),
        None => decode_payload_checked(bytes),
    }
}

/// Steps 10–13 without a CBOR value in between, for a payload that is plainly
/// deterministic CBOR holding no tag and no null ([`cbor::is_plain_payload`]: steps 11
/// and 13's type rules hold then, for every field), a map whose `v` is this version
/// (step 12): `T` is deserialized straight from the bytes and validated. `None` if any
/// of it does not hold, and [`decode_payload_checked`] decides (with its own errors):
/// both give the same payload for every payload this accepts.
fn decode_plain_payload<T: Payload>(bytes: &[u8]) -> Option<T> {
    if !cbor::is_plain_payload(bytes) || !has_version_field(bytes) {
        return None;
    }
    // The license and the refresh are read by hand (`format::direct`), the other kinds,
    // or anything the hand reading leaves, by serde.
    let payload: T = match T::decode_direct(bytes) {
        Some(payload) => payload,
        None => ciborium::de::from_reader_with_buffer(bytes, &mut [0; cbor::SCRATCH]).ok()?,
    };
    payload.validate().ok()?;
    Some(payload)
}

/// Whether the top-level map of plainly deterministic `bytes` has the key `v` with the
/// value [`FORMAT_VERSION`]. Keys are sorted, so `v` (`61 76`) is found by skipping the
/// entries before it.
fn has_version_field(bytes: &[u8]) -> bool {
    const V: &[u8] = &[0x61, b'v'];
    const VERSION: u8 = FORMAT_VERSION as u8;
    const _: () = assert!(FORMAT_VERSION < 24);
    let Some(value) = cbor::top_level_value(bytes, V) else {
        return false;
    };
    value == [VERSION]
}

/// Steps 10–13 with every check made on a decoded CBOR value: the reference.
fn decode_payload_checked<T: Payload>(bytes: &[u8]) -> Result<T, FormatError> {
    // Step 10 (the lenient version check) precedes step 11 (strict CBOR). It can only
    // change the outcome when step 11 fails: when the payload is strict CBOR the lenient
    // reading is the same value, and step 12 gives the same answer. So the lenient
    // reading is made only then, and verifying a good file decodes its payload once.
    let value = match cbor::decode_strict(bytes, "payload") {
        Ok(value) => value,
        Err(strict) => {
            return Err(match lenient_version(bytes) {
                Some(found) if found != FORMAT_VERSION => FormatError::UnsupportedVersion {
                    found,
                    supported: FORMAT_VERSION,
                },
                _ => strict,
            });
        }
    };
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
    plain_known(&value, payload_shape(T::KIND)).map_err(invalid)?;
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
            pool: None,
            pool_seats: None,
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
            counters: Default::default(),
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
                trail: Vec::new(),
            },
            created: t(3),
            variables: Default::default(),
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

    /// Every fixture file that unarmors (valid and invalid), as binary bytes, by name.
    fn fixture_files() -> Vec<(String, Vec<u8>)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/");
        let mut files = Vec::new();
        for dir in ["valid", "invalid"] {
            let mut entries: Vec<_> = std::fs::read_dir(format!("{root}{dir}"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                if let Ok((_, bytes)) = unarmor(&std::fs::read(&path).unwrap()) {
                    files.push((path.display().to_string(), bytes));
                }
            }
        }
        assert!(files.len() > 80, "{}", files.len());
        files
    }

    /// A simple deterministic generator for the mutation tests.
    fn next(seed: &mut u32) -> u8 {
        *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (*seed >> 16) as u8
    }

    /// `payload` read as a `T` the way `open` reads it gives what the full checks give
    /// (the same value or the same error); where the direct reading applies (bytes proven
    /// plain, of this version) and reads a value, serde reads the same. Whether it did.
    fn reads_as_the_full_checks<T>(payload: &[u8], what: &str) -> bool
    where
        T: Payload + PartialEq + std::fmt::Debug,
    {
        let reference = decode_payload_checked::<T>(payload);
        assert_eq!(decode_payload::<T>(payload), reference, "{what}");
        if !(cbor::is_plain_payload(payload) && has_version_field(payload)) {
            return false;
        }
        let Some(direct) = T::decode_direct(payload) else {
            return false;
        };
        let serde: Option<T> =
            ciborium::de::from_reader_with_buffer(payload, &mut [0; cbor::SCRATCH]).ok();
        assert_eq!(serde.as_ref(), Some(&direct), "{what}");
        if direct.validate().is_ok() {
            assert_eq!(reference, Ok(direct), "{what}");
        } else {
            assert!(reference.is_err(), "{what}");
        }
        true
    }

    /// The hand-written reading of license and refresh payloads (`format::direct`) reads
    /// every valid vector as serde and the full checks do, and leaves every invalid one to
    /// them (the same error); on encodings mutated byte by byte, it never reads what they
    /// refuse, nor reads a value they read differently.
    #[test]
    fn the_direct_payload_reading_agrees_with_serde_and_the_full_checks() {
        let mut direct = 0;
        let mut samples = Vec::new();
        for (name, cose) in fixture_files() {
            let Ok(CoseSign1 {
                payload: Some(payload),
                ..
            }) = parse_sign1_checked(&cose)
            else {
                continue;
            };
            let license = reads_as_the_full_checks::<License>(&payload, &name);
            let refresh = reads_as_the_full_checks::<Refresh>(&payload, &name);
            if name.contains("/valid/")
                && (name.ends_with("license.lic") || name.ends_with("refresh.lic"))
            {
                assert!(license || refresh, "{name}: the direct reading reads it");
            }
            direct += usize::from(license) + usize::from(refresh);
            if name.ends_with("/valid/license.lic") || name.ends_with("/valid/refresh.lic") {
                samples.push(payload);
            }
        }
        assert!(direct >= 4, "{direct}");
        assert_eq!(samples.len(), 2);
        let mut seed = 7;
        let mut mutated_direct = 0;
        for sample in &samples {
            for at in 0..sample.len() {
                for _ in 0..12 {
                    let mut bytes = sample.clone();
                    bytes[at] = next(&mut seed);
                    for cut in [bytes.len(), at + 1] {
                        let what = format!("{:02x?}", &bytes[..cut]);
                        mutated_direct +=
                            usize::from(reads_as_the_full_checks::<License>(&bytes[..cut], &what));
                        mutated_direct +=
                            usize::from(reads_as_the_full_checks::<Refresh>(&bytes[..cut], &what));
                    }
                }
            }
        }
        assert!(mutated_direct > 1000, "{mutated_direct}");
    }

    /// docs/format.md §5.1: the keys of a structure are text strings. serde's derived
    /// field names would match a byte string too; no fast reading may accept one.
    #[test]
    fn a_field_named_by_a_byte_string_is_refused_on_every_path() {
        let mut value = license_value(1);
        for (k, _) in entries(&mut value).iter_mut() {
            if k.as_text() == Some("product") {
                *k = Value::Bytes(b"product".to_vec());
            }
        }
        cbor::canonicalize(&mut value);
        let bytes = cbor::encode_value(&value);
        assert!(!cbor::is_plain_payload(&bytes));
        let expected = FormatError::PayloadInvalid {
            kind: FileKind::License,
            reason: "a map key is a byte string; the keys of lic structures are text strings"
                .into(),
        };
        assert_eq!(decode_payload::<License>(&bytes), Err(expected.clone()));
        assert_eq!(read_license(value, false).unwrap_err(), expected);
    }

    /// Steps 1–9 as `verify_envelope` makes them (the direct reading of the envelope and
    /// its protected header where it applies) against coset's reading and the strict
    /// decoding of the header: the same outcome.
    fn verifies_as_the_full_checks(bytes: &[u8], keys: &Keyring, what: &str) -> bool {
        let outcome = |r: Result<CheckedEnvelope, FormatError>| {
            r.map(|c| (c.kind, c.signer, c.payload, c.bytes))
        };
        let fast = plain_sign1(bytes);
        if let Some(fast) = &fast {
            assert_eq!(Ok(fast), parse_sign1_checked(bytes).as_ref(), "{what}");
        }
        let reference = parse_sign1_checked(bytes)
            .and_then(|s| verify_sign1(s, false, bytes.to_vec(), None, keys));
        assert_eq!(
            outcome(verify_envelope(bytes.to_vec(), None, keys)),
            outcome(reference),
            "{what}"
        );
        fast.is_some()
    }

    #[test]
    fn the_direct_header_reading_agrees_with_coset_and_the_strict_decoding() {
        let keys =
            Keyring::from_pem(include_str!("../../../fixtures/keys/vendor.pub.pem")).unwrap();
        let mut samples = Vec::new();
        for (name, cose) in fixture_files() {
            if cose.len() > armor::MAX_FILE_SIZE {
                continue;
            }
            let fast = verifies_as_the_full_checks(&cose, &keys, &name);
            if name.contains("/valid/") && !name.contains("extra-header") {
                assert!(fast, "{name}: read directly");
            }
            if name.ends_with("/valid/license.cose")
                || name.ends_with("/valid/activation-request.req")
            {
                samples.push(cose);
            }
        }
        assert_eq!(samples.len(), 2);
        // The header (and the start of the payload) mutated byte by byte.
        let mut seed = 11;
        let mut fast = 0;
        for sample in &samples {
            for at in 0..80.min(sample.len()) {
                for _ in 0..8 {
                    let mut bytes = sample.clone();
                    bytes[at] = next(&mut seed);
                    let what = format!("{at}: {:02x?}", &bytes[..80]);
                    fast += usize::from(verifies_as_the_full_checks(&bytes, &keys, &what));
                }
            }
        }
        assert!(fast > 100, "{fast}");
    }

    /// The fast reading of a file and of its payload gives what the fully checked one
    /// gives, on every valid fixture (and takes the fast path on each).
    #[test]
    fn the_fast_paths_read_the_fixtures_as_the_full_checks_do() {
        fn same<T: Payload + PartialEq + std::fmt::Debug>(file: &[u8]) {
            let (_, bytes) = unarmor(file).unwrap();
            let fast = plain_sign1(&bytes).expect("the fast path reads it");
            assert_eq!(fast, parse_sign1_checked(&bytes).unwrap());
            let payload = fast.payload.unwrap();
            let plain = decode_plain_payload::<T>(&payload).expect("the fast path reads it");
            assert_eq!(plain, decode_payload_checked::<T>(&payload).unwrap());
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/valid/");
        let read = |name: &str| std::fs::read(format!("{dir}{name}")).unwrap();
        same::<License>(&read("license.lic"));
        same::<License>(&read("license.cose"));
        same::<Refresh>(&read("refresh.lic"));
        same::<ActivationRequest>(&read("activation-request.req"));
        same::<Deactivation>(&read("deactivation.deact"));
        same::<UsageReport>(&read("usage-report.usage"));
        same::<Receipt>(&read("receipt.receipt"));
        same::<KeySet>(&read("key-set.keys"));
        // Unknown fields with floats, tags and nulls: the full checks decide.
        let (_, bytes) = unarmor(&read("license-future-fields.lic")).unwrap();
        let payload = parse_sign1_checked(&bytes).unwrap().payload.unwrap();
        assert!(decode_plain_payload::<License>(&payload).is_none());
        assert!(decode_payload_checked::<License>(&payload).is_ok());
    }

    #[test]
    fn the_signed_structure_is_what_coset_builds() {
        for (protected, payload) in [
            (vec![0xa1, 0x01, 0x27], vec![0xa0]),
            (vec![0x5a; 30], vec![0x61; 300]),
            (vec![0x33; 200], vec![0x7b; 70_000]),
        ] {
            let sign1 = CoseSign1 {
                protected: ProtectedHeader {
                    original_data: Some(protected.clone()),
                    header: coset::Header::default(),
                },
                payload: Some(payload.clone()),
                ..Default::default()
            };
            assert_eq!(sig_structure(&protected, &payload), sign1.tbs_data(&[]));
        }
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
        payload.serial = 0;
        assert_eq!(
            sign(&payload, &vendor).unwrap_err(),
            FormatError::PayloadInvalid {
                kind: FileKind::License,
                reason: "`serial` is 0, but a license has serial 1 (or, issued again, the \
                         serial of the last refresh)"
                    .into()
            }
        );
        // A license issued again carries the serial of the last refresh.
        payload.serial = 3;
        assert!(sign(&payload, &vendor).is_ok());
        let mut payload = license(&SecretKey::from_seed(&[2; 32]).public());
        payload.match_rule.required.push("mac".into());
        assert!(sign(&payload, &vendor).is_err());
    }

    #[test]
    fn the_payload_carries_the_version_and_sorted_keys() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let file = sign(&license(&SecretKey::from_seed(&[2; 32]).public()), &vendor).unwrap();
        let checked = verify_envelope(
            file.bytes().to_vec(),
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

    /// A license payload as a CBOR map with `v`, for tests that change it before signing.
    fn license_value(v: u64) -> Value {
        let device = SecretKey::from_seed(&[2; 32]);
        let mut value = Value::serialized(&license(&device.public())).unwrap();
        if let Value::Map(entries) = &mut value {
            entries.push((Value::Text("v".into()), Value::Integer(v.into())));
        }
        value
    }

    fn entries(value: &mut Value) -> &mut Vec<(Value, Value)> {
        match value {
            Value::Map(entries) => entries,
            _ => panic!("not a map"),
        }
    }

    fn field<'a>(value: &'a mut Value, name: &str) -> &'a mut Value {
        entries(value)
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no field {name}"))
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    /// Sign `value` (canonicalized unless `canonical` is false) as a license and read it.
    fn read_license(mut value: Value, canonical: bool) -> Result<Verified<License>, FormatError> {
        let vendor = SecretKey::from_seed(&[1; 32]);
        if canonical {
            cbor::canonicalize(&mut value);
        }
        let file = sign_raw(FileKind::License, cbor::encode_value(&value), &vendor).unwrap();
        open::<License>(file.bytes(), &Keyring::with([vendor.public()]))
    }

    fn signed_with_content_type(content_type: &str) -> SignedFile {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let header = HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .content_type(content_type.to_string())
            .key_id(vendor.kid().as_bytes().to_vec())
            .build();
        let payload = cbor::encode_value(&{
            let mut v = license_value(1);
            cbor::canonicalize(&mut v);
            v
        });
        sign_with_header(FileKind::License, header, payload, &vendor).unwrap()
    }

    #[test]
    fn a_lic_content_type_of_an_unknown_kind_is_a_newer_kind_not_a_wrong_file() {
        let keys = Keyring::with([SecretKey::from_seed(&[1; 32]).public()]);
        let future = signed_with_content_type("application/vnd.lic.seat-transfer+cbor");
        let expected = FormatError::UnsupportedKind {
            found: "application/vnd.lic.seat-transfer+cbor".into(),
        };
        let err = open::<License>(future.bytes(), &keys).unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(err.code(), "unsupported-kind");
        assert!(
            err.hint().contains("newer version of lic"),
            "{}",
            err.hint()
        );
        assert_eq!(
            crate::format::open_any(future.bytes(), &keys).unwrap_err(),
            expected
        );
        // Armored with a known label, the signed content type still decides.
        assert_eq!(
            open::<License>(future.armored().as_bytes(), &keys).unwrap_err(),
            expected
        );
        // A content type that is not lic's at all is a wrong file, as is a known kind
        // other than the expected one.
        let foreign = signed_with_content_type("application/cbor");
        let err = open::<License>(foreign.bytes(), &keys).unwrap_err();
        assert_eq!(err.code(), "wrong-content-type");
        assert!(err.hint().contains("right file"), "{}", err.hint());
        let refresh = signed_with_content_type(FileKind::Refresh.content_type());
        assert_eq!(
            open::<License>(refresh.bytes(), &keys).unwrap_err(),
            FormatError::WrongContentType {
                expected: FileKind::License.content_type().into(),
                found: FileKind::Refresh.content_type().into()
            }
        );
    }

    #[test]
    fn a_newer_version_is_refused_as_such_even_when_it_breaks_this_versions_encoding_rules() {
        let unsupported = FormatError::UnsupportedVersion {
            found: 2,
            supported: 1,
        };
        // Keys in reverse order: not deterministic.
        let mut reversed = license_value(2);
        cbor::canonicalize(&mut reversed);
        entries(&mut reversed).reverse();
        assert_eq!(
            read_license(reversed.clone(), false).unwrap_err(),
            unsupported
        );
        // The same in version 1 is a non-deterministic payload.
        let mut reversed_v1 = license_value(1);
        cbor::canonicalize(&mut reversed_v1);
        entries(&mut reversed_v1).reverse();
        assert!(matches!(
            read_license(reversed_v1, false).unwrap_err(),
            FormatError::CborNotDeterministic {
                part: "payload",
                ..
            }
        ));
        // A non-shortest float, an `undefined`, trailing bytes: still version 2.
        let vendor = SecretKey::from_seed(&[1; 32]);
        let keys = Keyring::with([vendor.public()]);
        let mut canonical = license_value(2);
        cbor::canonicalize(&mut canonical);
        let mut bytes = cbor::encode_value(&canonical);
        bytes.extend_from_slice(&[0xf7, 0x00]);
        let file = sign_raw(FileKind::License, bytes, &vendor).unwrap();
        assert_eq!(
            open::<License>(file.bytes(), &keys).unwrap_err(),
            unsupported
        );
        // `v` itself in a non-shortest head: 18 02.
        let mut bytes = cbor::encode_value(&canonical);
        let at = bytes
            .windows(3)
            .position(|w| w == [0x61, b'v', 0x02])
            .unwrap();
        bytes.splice(at + 2..at + 3, [0x18, 0x02]);
        let file = sign_raw(FileKind::License, bytes, &vendor).unwrap();
        assert_eq!(
            open::<License>(file.bytes(), &keys).unwrap_err(),
            unsupported
        );
        // Malformed or too deep: the version cannot be read, the CBOR error stands.
        let file = sign_raw(
            FileKind::License,
            vec![0xa2, 0x61, b'v', 0x02, 0x65],
            &vendor,
        )
        .unwrap();
        assert!(matches!(
            open::<License>(file.bytes(), &keys).unwrap_err(),
            FormatError::CborMalformed { .. }
        ));
        // Two `v` keys: no version is read leniently; the duplicate is reported.
        let dup = vec![0xa2, 0x61, b'v', 0x02, 0x61, b'v', 0x02];
        let file = sign_raw(FileKind::License, dup, &vendor).unwrap();
        assert!(matches!(
            open::<License>(file.bytes(), &keys).unwrap_err(),
            FormatError::CborNotDeterministic { .. }
        ));
    }

    #[test]
    fn unknown_fields_may_hold_any_deterministic_cbor_known_fields_may_not() {
        let mut future = license_value(1);
        let extras = [
            ("price", Value::Float(12.5)),
            (
                "renew_at",
                Value::Tag(1, Box::new(Value::Integer(1_900_000_000.into()))),
            ),
            ("note", Value::Null),
            (
                "nested",
                Value::Map(vec![(
                    Value::Integer(7.into()),
                    Value::Array(vec![Value::Null]),
                )]),
            ),
        ];
        entries(&mut future).extend(extras.iter().map(|(k, v)| (text(k), v.clone())));
        entries(field(&mut future, "match_rule")).push((text("weight"), Value::Float(0.5)));
        let features = field(&mut future, "features");
        entries(field(features, "f")).push((text("unit"), Value::Null));
        let read = read_license(future, true).unwrap();
        let device = SecretKey::from_seed(&[2; 32]);
        assert_eq!(read.payload(), &license(&device.public()));

        // The same values in known fields are refused.
        for (name, bad, reason) in [
            (
                "issued",
                Value::Tag(1, Box::new(Value::Integer(1_900_000_000.into()))),
                "CBOR tag 1 is not used in lic payloads",
            ),
            (
                "expires",
                Value::Null,
                "null is not a value in lic payloads; omit the field instead",
            ),
            (
                "clock_tolerance",
                Value::Float(3600.0),
                "floating-point numbers are not used in lic payloads",
            ),
        ] {
            let mut value = license_value(1);
            entries(&mut value).retain(|(k, _)| k.as_text() != Some(name));
            entries(&mut value).push((text(name), bad));
            assert_eq!(
                read_license(value, true).unwrap_err(),
                FormatError::PayloadInvalid {
                    kind: FileKind::License,
                    reason: reason.into()
                },
                "{name}"
            );
        }
        // Inside a known structure's known field, and inside a plain (non-extensible) map.
        let mut value = license_value(1);
        let features = field(&mut value, "features");
        entries(field(features, "f")).push((text("limit"), Value::Null));
        assert!(read_license(value, true).is_err());
        let mut value = license_value(1);
        entries(field(&mut value, "fingerprint")).push((text("cpu"), Value::Null));
        assert!(read_license(value, true).is_err());
        // A structure's keys are text, known or not.
        let mut value = license_value(1);
        entries(field(&mut value, "match_rule")).push((Value::Integer(1.into()), text("x")));
        assert_eq!(
            read_license(value, true).unwrap_err(),
            FormatError::PayloadInvalid {
                kind: FileKind::License,
                reason: "a map key is an integer; the keys of lic structures are text strings"
                    .into()
            }
        );
    }

    #[test]
    fn unknown_fields_must_still_be_deterministic_and_within_the_nesting_limit() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let keys = Keyring::with([vendor.public()]);
        let mut deep = Value::Integer(0.into());
        for _ in 0..cbor::MAX_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        let mut value = license_value(1);
        entries(&mut value).push((text("zz_deep"), deep));
        assert_eq!(
            read_license(value, true).unwrap_err(),
            FormatError::CborTooDeep { part: "payload" }
        );
        // A float in a non-shortest form: 12.5 as a double (fb …) instead of a half.
        let mut value = license_value(1);
        entries(&mut value).push((text("zz"), Value::Float(12.5)));
        cbor::canonicalize(&mut value);
        let mut bytes = cbor::encode_value(&value);
        let half = [0x62, b'z', b'z', 0xf9, 0x4a, 0x40];
        let at = bytes.windows(half.len()).position(|w| w == half).unwrap();
        bytes.splice(at + 3..at + 6, [0xfb, 0x40, 0x29, 0, 0, 0, 0, 0, 0]);
        let file = sign_raw(FileKind::License, bytes, &vendor).unwrap();
        assert!(matches!(
            open::<License>(file.bytes(), &keys).unwrap_err(),
            FormatError::CborNotDeterministic {
                part: "payload",
                ..
            }
        ));
    }

    fn assert_shape_is(value: &Value, shape: &Shape, at: &str) {
        match (shape, value) {
            (Shape::Plain, _) => {}
            (Shape::Struct(fields), Value::Map(entries)) => {
                let present: Vec<&str> =
                    entries.iter().map(|(k, _)| k.as_text().unwrap()).collect();
                let mut known: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
                let mut sorted = present.clone();
                sorted.sort_unstable();
                known.sort_unstable();
                assert_eq!(sorted, known, "the fields of {at}");
                for (k, v) in entries {
                    let name = k.as_text().unwrap();
                    let (_, inner) = fields.iter().find(|(n, _)| *n == name).unwrap();
                    assert_shape_is(v, inner, &format!("{at}.{name}"));
                }
            }
            (Shape::Names(inner), Value::Map(entries)) => {
                assert!(!entries.is_empty(), "{at} is empty in the sample");
                for (k, v) in entries {
                    assert_shape_is(v, inner, &format!("{at}[{k:?}]"));
                }
            }
            (Shape::List(inner), Value::Array(items)) => {
                assert!(!items.is_empty(), "{at} is empty in the sample");
                for (i, v) in items.iter().enumerate() {
                    assert_shape_is(v, inner, &format!("{at}[{i}]"));
                }
            }
            (shape, value) => panic!("{at}: {value:?} is not a {shape:?}"),
        }
    }

    #[test]
    fn the_payload_shapes_name_exactly_the_fields_of_the_payload_types() {
        fn with_v<T: Payload>(payload: &T) -> Value {
            let mut value = Value::serialized(payload).unwrap();
            entries(&mut value).push((text("v"), Value::Integer(1.into())));
            value
        }
        let device = SecretKey::from_seed(&[2; 32]).public();
        // Every optional field set, so that every field appears.
        let mut lic = license(&device);
        lic.expires = Some(t(30));
        lic.features.insert(
            "g".into(),
            Feature {
                limit: Some(5),
                overage: true,
                max_overage: Some(2),
                floating: Some(3),
            },
        );
        lic.features.remove("f");
        lic.counters.insert("g".into(), 3);
        lic.pool_seats = Some(4);
        let chain = PoolChain {
            license: vec![1],
            refresh: Some(vec![2]),
        };
        lic.pool = Some(chain.clone());
        let refresh = Refresh {
            pool_seats: Some(4),
            license_id: "lic_1".into(),
            activation_id: "act_1".into(),
            product: "p".into(),
            device_key: Bytes32(device.to_bytes()),
            serial: 2,
            features: lic.features.clone(),
            license_type: LicenseType::Trial,
            expires: Some(t(30)),
            offline_expiry: Some(t(20)),
            clock_tolerance: 60,
            clock_floor: Some(t(2)),
            reason: "r".into(),
            issued: t(2),
        };
        let request = ActivationRequest {
            pool_seats: Some(3),
            product: "p".into(),
            credential: Credential::User("u".into()),
            fingerprint: lic.fingerprint.clone(),
            nonce: Nonce([1; 16]),
            created: t(1),
            client: "lic".into(),
            // (Requests carry no trail; the field is the journal's, so it appears here.)
            journal: JournalHead {
                trail: vec![Bytes32([6; 32])],
                ..JournalHead::first()
            },
            variables: [("site".to_string(), "Lab 2".to_string())].into(),
        };
        let deactivation = Deactivation {
            activation_id: "act_1".into(),
            product: "p".into(),
            counters: [("f".to_string(), 1)].into(),
            journal: JournalHead {
                seq: 3,
                prev: Bytes32([4; 32]),
                trail: vec![Bytes32([5; 32])],
            },
            created: t(4),
            variables: [("site".to_string(), "Lab 2".to_string())].into(),
        };
        let key_set = KeySet {
            version: 2,
            keys: vec![Bytes32(device.to_bytes())],
            revoked: vec![RevokedKey {
                key: Bytes32(SecretKey::from_seed(&[9; 32]).public().to_bytes()),
                reason: "leaked".into(),
                revoked: t(5),
            }],
            issued: t(5),
        };
        let receipt = Receipt {
            activation_id: "act_1".into(),
            file_hash: Bytes32([3; 32]),
            file_kind: "deactivation".into(),
            state: "deactivated".into(),
            applied: t(5),
        };
        let lease_request = LeaseRequest {
            product: "p".into(),
            credential: Credential::LicenseKey("K".into()),
            fingerprint: lic.fingerprint.clone(),
            action: LeaseAction::Checkout,
            instance: Nonce([6; 16]),
            feature: Some("g".into()),
            hours: Some(8),
            journal: Some(JournalHead {
                seq: 0,
                prev: Bytes32([0; 32]),
                trail: vec![Bytes32([5; 32])],
            }),
            nonce: Nonce([7; 16]),
            created: t(6),
            client: "lic".into(),
            variables: [("site".to_string(), "Lab 2".to_string())].into(),
        };
        let lease = Lease {
            pool: Some(chain.clone()),
            license_id: "lic_1".into(),
            activation_id: "act_1".into(),
            product: "p".into(),
            device_key: Bytes32(device.to_bytes()),
            fingerprint: lic.fingerprint.clone(),
            match_rule: lic.match_rule.clone(),
            instance: Nonce([6; 16]),
            feature: Some("g".into()),
            features: lic.features.clone(),
            license_type: LicenseType::Floating,
            issued: t(6),
            renew_after: t(7),
            expires: t(8),
            license_expires: Some(t(30)),
            offline_expiry: Some(t(9)),
            clock_tolerance: 60,
            request_nonce: Nonce([7; 16]),
        };
        let check_in = CheckIn {
            activation_id: "act_1".into(),
            product: "p".into(),
            counters: [("g".to_string(), 1)].into(),
            journal: JournalHead {
                seq: 1,
                prev: Bytes32([4; 32]),
                trail: vec![Bytes32([5; 32])],
            },
            created: t(7),
            variables: [("site".to_string(), "Lab 2".to_string())].into(),
        };
        for (kind, value) in [
            (FileKind::ActivationRequest, with_v(&request)),
            (FileKind::License, with_v(&lic)),
            (FileKind::Refresh, with_v(&refresh)),
            (FileKind::Deactivation, with_v(&deactivation)),
            (
                FileKind::UsageReport,
                with_v(&{
                    let mut u = usage(2);
                    u.journal.trail = vec![Bytes32([7; 32])];
                    u.variables.insert("site".into(), "Lab 2".into());
                    u
                }),
            ),
            (FileKind::Receipt, with_v(&receipt)),
            (FileKind::KeySet, with_v(&key_set)),
            (FileKind::LeaseRequest, with_v(&lease_request)),
            (FileKind::Lease, with_v(&lease)),
            (FileKind::CheckIn, with_v(&check_in)),
        ] {
            assert_shape_is(&value, payload_shape(kind), kind.name());
        }
    }

    #[test]
    fn a_header_that_cannot_be_encoded_is_an_error_not_a_null_header() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let header = HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .value(-65600, Value::Bool(true))
            .value(-65600, Value::Bool(false))
            .build();
        let err = sign_with_header(FileKind::License, header, vec![0xa0], &vendor).unwrap_err();
        assert!(
            matches!(
                &err,
                FormatError::EncodeFailed {
                    part: "protected header",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "encode-failed");
    }
}
