//! `lic-core`: the lic file format (signed, armored, deterministic CBOR files) and the
//! device-side licensing logic that applications link.
//!
//! The format lives in [`format`](mod@format): one type per file kind, [`format::sign`] to make a
//! file and [`format::open`] to verify and read one. Keys are in [`keys`].
//!
//! An application checks its license with [`check::license`] (one call: the file, the
//! trusted keys, the product, this device, a clock), or through the store with
//! `client::Client`, which runs the same check. The default feature `device` adds the
//! store, the client and the real machine's fingerprint; without it (`default-features =
//! false`) the crate is verify-only and builds no `sysinfo`, `dirs` or `tempfile`.
//!
//! ```
//! use lic_core::format::{self, Credential, ActivationRequest, JournalHead, Bytes32, Nonce};
//! use lic_core::keys::{Keyring, SecretKey};
//! use chrono::{TimeZone, Utc};
//!
//! let device = SecretKey::generate();
//! let request = ActivationRequest {
//!     product: "photo-pro".into(),
//!     credential: Credential::LicenseKey("ABCD-1234".into()),
//!     fingerprint: [("machine-id".to_string(), Bytes32([7; 32]))].into(),
//!     nonce: Nonce([1; 16]),
//!     created: Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
//!     client: "lic 0.1.0".into(),
//!     journal: JournalHead::first(),
//!     variables: Default::default(),
//!     pool_seats: None,
//! };
//! let file = format::sign(&request, &device).unwrap();
//! let text = file.armored();
//! assert!(text.starts_with("-----BEGIN LIC ACTIVATION REQUEST-----"));
//!
//! // A device-signed file verifies against the key it carries; the reader then checks
//! // that this is the key it expects.
//! let read = format::open::<ActivationRequest>(text.as_bytes(), &Keyring::new()).unwrap();
//! assert_eq!(read.signer(), &device.public());
//! assert_eq!(read.payload(), &request);
//! ```

pub mod check;
#[cfg(feature = "device")]
pub mod client;
pub mod clock;
pub mod fingerprint;
pub mod floating;
pub mod format;
#[cfg(feature = "device")]
pub mod fsutil;
pub mod keys;
#[cfg(feature = "device")]
pub mod lease;
pub mod license_key;
pub mod pool;
pub mod rules;
#[cfg(feature = "device")]
pub mod store;
pub mod text;
pub mod trust;

/// The CBOR library whose `Value` appears in [`format::cbor`]'s signatures, re-exported
/// for the same reason.
pub use ciborium;
/// The COSE library whose types appear in [`format`](mod@format)'s signatures (for example
/// `coset::Header` in [`format::sign_with_header`]), re-exported so that callers use
/// the very version `lic-core` was built with.
pub use coset;
