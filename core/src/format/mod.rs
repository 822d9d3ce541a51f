//! The lic file format: armored, signed (COSE_Sign1, EdDSA), deterministic CBOR payloads.
//! `docs/format.md` is the normative specification; this module implements it.

mod any;
pub mod armor;
pub mod cbor;
mod direct;
mod envelope;
mod error;
mod kind;
mod payload;
pub mod qrtext;

pub use any::{AnyFile, open_any};
pub use envelope::{
    COSE_SIGN1_TAG, HEADER_DEVICE_KEY, SignedFile, Verified, file_hash, kind_of, open,
    payload_unverified, same_payload, sign, sign_raw, sign_with_header, unarmor, verify,
};
pub use error::FormatError;
pub use kind::{FileKind, SignerRole};
pub use payload::*;
