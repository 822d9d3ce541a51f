//! Vendor key management: generate a signing key, export its public key for clients.

use std::path::Path;

use lic_core::keys::{KeyError, PublicKey, SecretKey};

/// Generate a vendor signing key at `out` (PKCS#8 PEM, mode 0600). An existing file is
/// only replaced with `force`. Returns the new key's public half.
pub fn generate(out: &Path, force: bool) -> Result<PublicKey, KeyError> {
    let key = SecretKey::generate();
    key.write(out, force)?;
    Ok(key.public())
}

/// The public key (SPKI PEM) of the vendor signing key at `key_path`.
pub fn export(key_path: &Path) -> Result<PublicKey, KeyError> {
    Ok(SecretKey::read(key_path)?.public())
}
