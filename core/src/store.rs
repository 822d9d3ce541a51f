//! The device store: a directory holding the device key and the device state (installed
//! licenses, pending requests, tombstones, consumption counters, journal heads and the
//! clock high-water mark).
//!
//! - Writes are atomic (temp file, fsync, rename, fsync the directory), so a crash leaves
//!   the old or the new state, never a mix.
//! - Read-modify-write cycles hold an exclusive lock on `<store>/lock`, so concurrent
//!   processes never lose an update.
//! - The state is authenticated with an HMAC keyed from the device key: a counter or clock
//!   mark edited by hand is detected and reported, never accepted or silently reset.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::format::{Bytes32, Credential, Nonce};
use crate::fsutil;
use crate::keys::{KeyError, SecretKey};

/// The device key file in the store.
pub const KEY_FILE: &str = "device.key.pem";
/// The state file in the store.
pub const STATE_FILE: &str = "state.bin";
const LOCK_FILE: &str = "lock";
const MAGIC: &[u8; 8] = b"LICSTOR1";
const MAC_LEN: usize = 32;
/// The largest state file lic reads: far beyond any real store (a few KiB per product),
/// so that a file put in its place cannot make a read take all memory.
pub const MAX_STATE_SIZE: u64 = 8 * 1024 * 1024;
/// The state format version this implementation writes.
pub const STATE_VERSION: u32 = 1;
/// Environment variable naming a write step at which to abort (crash-safety tests).
pub const CRASH_ENV: &str = "LIC_CRASH_AT";

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The state does not authenticate: it was edited, replaced or truncated outside lic.
    #[error("{reason}")]
    Tampered { reason: String },
    /// The state was written by a newer version of lic.
    #[error("the license store was written by a newer version of lic (state version {found})")]
    Unsupported { found: u32 },
}

impl StoreError {
    fn io(path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A stable code: `store-full` and `store-read-only` for a store that cannot be
    /// written for want of space or because its file system is read-only (what to do is
    /// different), `store-tampered`, `store-unsupported`, `store-key`, else `store-io`.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                "store-full"
            }
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                "store-read-only"
            }
            StoreError::Io { .. } => "store-io",
            StoreError::Key(_) => "store-key",
            StoreError::Tampered { .. } => "store-tampered",
            StoreError::Unsupported { .. } => "store-unsupported",
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                "the disk that holds the license store is full: nothing was changed. Free some \
                 space on it (`df` shows how much is left) and run the command again"
            }
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                "the license store is on a read-only file system: nothing was changed. Run the \
                 command where the store is writable (remount it read-write), or choose another \
                 store with --store DIR or LIC_STORE"
            }
            StoreError::Io { .. } => {
                "check that the store directory exists and that you may read and write it \
                 (--store DIR or LIC_STORE choose another)"
            }
            StoreError::Key(_) => {
                "the device key in the license store is damaged or unreadable: restore the store \
                 directory from a backup, or run `lic store reset` to start again"
            }
            StoreError::Tampered { .. } => {
                "the license store was changed outside lic. Restore the store directory from a \
                 backup, or run `lic store reset` to set it aside and activate again (your vendor \
                 sees the reset)"
            }
            StoreError::Unsupported { .. } => "update lic (or the application) and try again",
        }
    }
}

/// An installed license and what the device keeps about its activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// The license file as installed (binary COSE bytes); verified again on every use.
    #[serde(with = "serde_bytes")]
    pub license: Vec<u8>,
    /// The latest refresh applied (binary COSE bytes).
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Vec<u8>>,
    /// Cumulative consumption per feature since activation.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Sequence number of the last device-signed file of this activation.
    pub journal_seq: u64,
    /// SHA-256 of that file.
    pub journal_head: Bytes32,
    /// The hashes of the files before it, newest first (at most
    /// [`MAX_TRAIL`](crate::format::MAX_TRAIL)): carried in the next file's journal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal_trail: Vec<Bytes32>,
    /// When it was installed (seconds since the epoch, UTC).
    pub installed: i64,
    /// An on-premise floating server's pool: the hashes of its clients' check-in files
    /// whose counters were added to `counters`, so that each is counted once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool_usage: Vec<Bytes32>,
}

/// An activation request that awaits its license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The request file (binary COSE bytes), so it can be written out again.
    #[serde(with = "serde_bytes")]
    pub request: Vec<u8>,
    pub nonce: Nonce,
    pub credential: Credential,
    pub created: i64,
}

/// What remains of a deactivated (or checked-in) activation: its id may never be
/// installed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub product: String,
    pub deactivated: i64,
    /// The deactivation file — or, for a checkout, the check-in file — (binary COSE
    /// bytes), so it can be written out again; empty when the license was forgotten ([`Client::forget`](crate::client::Client::forget))
    /// rather than deactivated.
    #[serde(with = "serde_bytes")]
    pub deactivation: Vec<u8>,
    /// For a checkout from an on-premise floating server: the server's device key (which
    /// signed the checkout license, and signs the check-in's receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_key: Option<Bytes32>,
}

/// A floating seat (or one floating feature) held by one application instance of this
/// device: the lease the server signed, kept so that every process on the machine (the
/// command run under `lic lease`, the application's own checks) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLease {
    /// The lease file as received (binary COSE bytes); verified again on every use.
    #[serde(with = "serde_bytes")]
    pub lease: Vec<u8>,
    /// The application instance that holds it.
    pub instance: Nonce,
    /// The floating feature it is for (absent: the seat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// Until when it may be used (seconds since the epoch, UTC): its expiry, or its
    /// Offline Expiry Date when that is later. Kept to prune lapsed leases without
    /// verifying them; every use reads the times from the verified lease.
    pub until: i64,
}

/// What the device keeps about a product it uses as a floating license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floating {
    /// The credential leases are taken with (remembered from the first `lic lease --key`).
    pub credential: Credential,
    /// The leases held, one per application instance (and floating feature).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<HeldLease>,
}

/// Everything the device keeps, authenticated as one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The clock high-water mark: the latest UTC time seen (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// Installed licenses by product.
    #[serde(default)]
    pub installations: BTreeMap<String, Installation>,
    /// Outstanding activation requests by product.
    #[serde(default)]
    pub pending: BTreeMap<String, Pending>,
    /// Deactivated activations by activation id.
    #[serde(default)]
    pub tombstones: BTreeMap<String, Tombstone>,
    /// The key sets installed (binary COSE bytes), in the order they were installed. They
    /// are verified again, from the application's own trusted keys, on every use (see
    /// [`crate::trust`]): the store adds no trust of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_sets: Vec<serde_bytes::ByteBuf>,
    /// Device variables by product, then by name: set by the application (also before
    /// activation), carried in the product's activation request, usage reports and
    /// deactivation. Kept when the product is deactivated: a new activation carries them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, crate::format::Variables>,
    /// Floating licenses by product: the credential and the leases held. Absent in a
    /// state written before floating licenses (it reads as none), and written only when
    /// there is one, so such a state is written byte for byte as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub floating: BTreeMap<String, Floating>,
    /// The highest serial seen of each on-premise floating server's pool license, by
    /// the pool's activation id: a lease or checkout under a lower one is refused (the
    /// server runs on a pool license a refresh replaced).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_serials: BTreeMap<String, u64>,
}

impl State {
    /// Products this store knows: with an installed license, a pending request, or a
    /// deactivated activation.
    pub fn products(&self) -> Vec<String> {
        let mut products: std::collections::BTreeSet<String> =
            self.installations.keys().cloned().collect();
        products.extend(self.pending.keys().cloned());
        products.extend(self.tombstones.values().map(|t| t.product.clone()));
        products.extend(self.floating.keys().cloned());
        products.into_iter().collect()
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            last_seen: None,
            installations: BTreeMap::new(),
            pending: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            key_sets: Vec::new(),
            variables: BTreeMap::new(),
            floating: BTreeMap::new(),
            pool_serials: BTreeMap::new(),
        }
    }
}

/// Proof that the caller holds the store's exclusive lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// A store directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The per-user default: `<local data dir>/lic` (e.g. `~/.local/share/lic` on Linux,
    /// `%LOCALAPPDATA%\lic` on Windows: the store belongs to this machine and must not
    /// roam with a user profile).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::data_local_dir().map(|d| d.join("lic"))
    }

    /// Open (and create, mode 0700, if needed) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        if !dir.is_dir() {
            create_private_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Take the exclusive lock for a read-modify-write cycle (blocks until free).
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.path(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        file.lock().map_err(|e| StoreError::io(&path, e))?;
        Ok(StoreLock { file })
    }

    /// The device key, created on first use together with an empty state. A missing key
    /// beside a state that holds anything is tampering (the state could no longer be
    /// authenticated or continued); so is a missing state beside the key (see
    /// [`load`](Self::load)).
    ///
    /// Reading takes no lock. Creating one takes the store's lock, so that processes
    /// starting at once on a fresh store end up with one key that all of them use; the
    /// key file appears complete or not at all (see [`fsutil::write_new`]). A caller that
    /// holds the lock already must use [`device_key_locked`](Self::device_key_locked)
    /// (the lock is not re-entrant).
    pub fn device_key(&self) -> Result<SecretKey, StoreError> {
        match self.read_device_key()? {
            Some(key) => Ok(key),
            None => {
                let lock = self.lock()?;
                self.device_key_locked(&lock)
            }
        }
    }

    /// [`device_key`](Self::device_key) for a caller that holds the lock already.
    pub fn device_key_locked(&self, _lock: &StoreLock) -> Result<SecretKey, StoreError> {
        // Read again under the lock: another process may have made it meanwhile.
        if let Some(key) = self.read_device_key()? {
            return Ok(key);
        }
        let path = self.path(KEY_FILE);
        let state_path = self.path(STATE_FILE);
        // A new store's empty state is written before its key gets its name, so a store
        // with a key always has a state. A state without a key is therefore either what a
        // crash between the two left (an empty state: nothing is lost, start again) or a
        // key that was removed (tampering).
        if state_path.exists() && !self.holds_only_an_empty_state() {
            return Err(StoreError::Tampered {
                reason: format!(
                    "the device key {} is missing, but the store has state",
                    path.display()
                ),
            });
        }
        let key = SecretKey::generate();
        crash_point("genesis-before-write");
        fsutil::replace(
            &state_path,
            &encode_state(&State::default(), &key),
            fsutil::SECRET_MODE,
        )
        .map_err(|e| StoreError::io(&state_path, e))?;
        let pem = key.to_pem();
        let hook = |step: &str| crash_point(&format!("key-{step}"));
        match fsutil::write_new_with_hook(&path, pem.as_bytes(), fsutil::SECRET_MODE, &hook) {
            Ok(()) => Ok(key),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Whether the state file (read without authenticating it: the key is missing) is
    /// the empty state of a new store.
    fn holds_only_an_empty_state(&self) -> bool {
        self.peek().is_some_and(|state| state == State::default())
    }

    /// The state file read **without authenticating it**; `None` if there is none or it
    /// cannot be read as a state.
    fn peek(&self) -> Option<State> {
        let bytes = read_capped(&self.path(STATE_FILE)).ok()?;
        let body = bytes.get(MAGIC.len() + MAC_LEN..)?;
        if !bytes.starts_with(MAGIC) {
            return None;
        }
        ciborium::de::from_reader(body).ok()
    }

    /// The device key if the file exists.
    fn read_device_key(&self) -> Result<Option<SecretKey>, StoreError> {
        match SecretKey::read(&self.path(KEY_FILE)) {
            Ok(key) => Ok(Some(key)),
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Read and authenticate the state. Every store that has a device key has a state
    /// (they are made together): a missing state is reported as tampering, never read
    /// as an empty store — deleting it must not reset the counters, the tombstones or the
    /// clock mark.
    pub fn load(&self, key: &SecretKey) -> Result<State, StoreError> {
        let path = self.path(STATE_FILE);
        let bytes = match read_capped(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Tampered {
                    reason: format!(
                        "the state file {} is missing, but the device key is there: it was \
                         deleted or lost",
                        path.display()
                    ),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                return Err(StoreError::Tampered {
                    reason: format!(
                        "the state file {} is larger than any lic store ({} MiB at most)",
                        path.display(),
                        MAX_STATE_SIZE >> 20
                    ),
                });
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        decode_state(&bytes, key)
    }

    /// Start the state again, empty, for the device key the store has (after
    /// [`quarantine`](Self::quarantine) set a state aside, or when it was lost). Requires
    /// the lock. A request made after it takes the device's seat again at the vendor,
    /// with the consumption the vendor counted so far.
    pub fn start_over(&self, lock: &StoreLock, key: &SecretKey) -> Result<(), StoreError> {
        self.save(lock, key, &State::default())
    }

    /// The products the state names, read **without authenticating it** and without the
    /// device key: only to choose which product to open (the `lic` command's default
    /// product), since every use of the state authenticates it again. `None` if there is
    /// no state or it cannot be read as one; the caller then loads it properly, which says
    /// what is wrong.
    pub fn peek_products(&self) -> Option<Vec<String>> {
        let state = self.peek()?;
        (state.version == STATE_VERSION).then(|| state.products())
    }

    /// Write the state atomically. Requires the lock.
    pub fn save(
        &self,
        _lock: &StoreLock,
        key: &SecretKey,
        state: &State,
    ) -> Result<(), StoreError> {
        let path = self.path(STATE_FILE);
        let bytes = encode_state(state, key);
        self.remove_stale_temp_files();
        crash_point("before-write");
        fsutil::replace_with_hook(&path, &bytes, fsutil::SECRET_MODE, &crash_point)
            .map_err(|e| StoreError::io(&path, e))?;
        crash_point("after-write");
        Ok(())
    }

    /// Remove temporary files left by a writer that crashed mid-write. Only writers that
    /// hold the lock create them, and the caller holds it, so none is in use.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(fsutil::TEMP_PREFIX)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Set a state that no longer authenticates aside (renamed, not deleted) so the store
    /// can be used again — and the device key too if it is unreadable. Returns the names
    /// the files were moved to: `state.bin.reset-NOW` (and `device.key.pem.reset-NOW`),
    /// with `-2`, `-3`, … added when a reset in the same second took that name.
    pub fn quarantine(&self, _lock: &StoreLock, now: i64) -> Result<Vec<PathBuf>, StoreError> {
        let mut moved = Vec::new();
        let key_path = self.path(KEY_FILE);
        let key_damaged = key_path.exists() && SecretKey::read(&key_path).is_err();
        let mut names = vec![STATE_FILE];
        if key_damaged {
            names.push(KEY_FILE);
        }
        names.retain(|name| self.path(name).exists());
        // One suffix for every file set aside together, free for all of them. Only
        // quarantine makes these names, and the caller holds the lock.
        let suffix = (1u32..=10_000)
            .map(|n| match n {
                1 => format!("reset-{now}"),
                n => format!("reset-{now}-{n}"),
            })
            .find(|suffix| {
                names.iter().all(|name| {
                    fs::symlink_metadata(self.path(&format!("{name}.{suffix}"))).is_err()
                })
            })
            .ok_or_else(|| {
                StoreError::io(
                    &self.path(&format!("{STATE_FILE}.reset-{now}")),
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "too many states set aside in this second; remove old ones",
                    ),
                )
            })?;
        for name in names {
            let path = self.path(name);
            let aside = self.path(&format!("{name}.{suffix}"));
            fs::rename(&path, &aside).map_err(|e| StoreError::io(&path, e))?;
            fsutil::sync_parent(&path).map_err(|e| StoreError::io(&path, e))?;
            moved.push(aside);
        }
        Ok(moved)
    }
}

/// Read a state file, at most [`MAX_STATE_SIZE`] bytes (`FileTooLarge` beyond).
fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_STATE_SIZE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STATE_SIZE {
        return Err(io::Error::from(io::ErrorKind::FileTooLarge));
    }
    Ok(bytes)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Abort the process at the named write step if `LIC_CRASH_AT` names it (tests only:
/// it simulates a power loss or a kill at that point). Release builds ignore it.
fn crash_point(step: &str) {
    if cfg!(debug_assertions) && std::env::var_os(CRASH_ENV).is_some_and(|v| v == step) {
        std::process::abort();
    }
}

fn mac(key: &SecretKey, body: &[u8]) -> Hmac<Sha256> {
    let mac_key = key.derive("store mac");
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(mac_key.as_slice())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(MAGIC);
    m.update(body);
    m
}

/// `MAGIC || HMAC-SHA256(MAGIC || body) || body`, where body is the CBOR state.
fn encode_state(state: &State, key: &SecretKey) -> Vec<u8> {
    let mut body = Vec::new();
    // Serializing plain data into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(state, &mut body);
    let tag = mac(key, &body).finalize().into_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + MAC_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    out
}

fn decode_state(bytes: &[u8], key: &SecretKey) -> Result<State, StoreError> {
    let tampered = |reason: &str| StoreError::Tampered {
        reason: reason.to_string(),
    };
    if bytes.len() < MAGIC.len() + MAC_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(tampered("the state file is not a lic store (wrong header)"));
    }
    let (tag, body) = bytes[MAGIC.len()..].split_at(MAC_LEN);
    mac(key, body)
        .verify_slice(tag)
        .map_err(|_| tampered("the state file does not match its authentication code"))?;
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let version: Version = ciborium::de::from_reader(body)
        .map_err(|_| tampered("the state file is authenticated but unreadable"))?;
    if version.version != STATE_VERSION {
        return Err(StoreError::Unsupported {
            found: version.version,
        });
    }
    ciborium::de::from_reader(body)
        .map_err(|_| tampered("the state file is authenticated but unreadable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_seed(&[3; 32])
    }

    fn sample() -> State {
        let mut s = State {
            last_seen: Some(1_800_000_000),
            ..State::default()
        };
        s.installations.insert(
            "p".into(),
            Installation {
                license: vec![1, 2, 3],
                refresh: None,
                counters: [("f".to_string(), 41)].into(),
                journal_seq: 2,
                journal_head: Bytes32([5; 32]),
                journal_trail: vec![Bytes32([4; 32])],
                installed: 1_700_000_000,
                pool_usage: Vec::new(),
            },
        );
        s.variables.insert(
            "p".into(),
            [("site".to_string(), "Lab 2".to_string())].into(),
        );
        s
    }

    #[test]
    fn state_round_trips() {
        let bytes = encode_state(&sample(), &key());
        assert_eq!(decode_state(&bytes, &key()).unwrap(), sample());
    }

    #[test]
    fn a_state_without_variables_reads_as_one_with_none_and_is_written_the_same() {
        // A state written before variables existed has no `variables` key; one without
        // variables is written without it, byte for byte as before.
        let mut none = sample();
        none.variables.clear();
        let mut body = Vec::new();
        ciborium::ser::into_writer(&none, &mut body).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("variables"), "{text}");
        let bytes = encode_state(&none, &key());
        assert_eq!(decode_state(&bytes, &key()).unwrap(), none);
        // With variables, they round-trip.
        let bytes = encode_state(&sample(), &key());
        let read = decode_state(&bytes, &key()).unwrap();
        assert_eq!(read.variables["p"]["site"], "Lab 2");
    }

    #[test]
    fn a_state_without_floating_licenses_reads_as_one_with_none_and_is_written_the_same() {
        // A state written before floating licenses has no `floating` key; one without
        // them is written without it.
        let plain = sample();
        let mut body = Vec::new();
        ciborium::ser::into_writer(&plain, &mut body).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("floating"));
        let bytes = encode_state(&plain, &key());
        assert_eq!(
            decode_state(&bytes, &key()).unwrap().floating,
            BTreeMap::new()
        );
        // With a lease, it round-trips, and the product is one the store knows.
        let mut leased = sample();
        leased.floating.insert(
            "q".into(),
            Floating {
                credential: Credential::LicenseKey("K".into()),
                leases: vec![HeldLease {
                    lease: vec![9, 9],
                    instance: Nonce([7; 16]),
                    feature: Some("render".into()),
                    until: 1_800_000_600,
                }],
            },
        );
        let bytes = encode_state(&leased, &key());
        let read = decode_state(&bytes, &key()).unwrap();
        assert_eq!(read, leased);
        assert_eq!(read.products(), ["p", "q"]);
    }

    #[test]
    fn any_edit_is_detected() {
        let bytes = encode_state(&sample(), &key());
        for i in 0..bytes.len() {
            let mut edited = bytes.clone();
            edited[i] ^= 0x01;
            assert!(
                matches!(
                    decode_state(&edited, &key()),
                    Err(StoreError::Tampered { .. })
                ),
                "byte {i}"
            );
        }
        assert!(matches!(
            decode_state(&bytes[..bytes.len() - 1], &key()),
            Err(StoreError::Tampered { .. })
        ));
    }

    #[test]
    fn another_device_key_does_not_authenticate_the_state() {
        let bytes = encode_state(&sample(), &key());
        let other = SecretKey::from_seed(&[4; 32]);
        assert!(matches!(
            decode_state(&bytes, &other),
            Err(StoreError::Tampered { .. })
        ));
    }

    #[test]
    fn a_newer_state_version_is_unsupported_not_tampered() {
        let newer = State {
            version: STATE_VERSION + 1,
            ..State::default()
        };
        let bytes = encode_state(&newer, &key());
        assert!(matches!(
            decode_state(&bytes, &key()),
            Err(StoreError::Unsupported { found }) if found == STATE_VERSION + 1
        ));
    }

    #[test]
    fn the_store_creates_its_key_once_and_saves_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let key = store.device_key().unwrap();
        assert_eq!(store.device_key().unwrap().public(), key.public());
        assert_eq!(store.load(&key).unwrap(), State::default());
        let lock = store.lock().unwrap();
        store.save(&lock, &key, &sample()).unwrap();
        drop(lock);
        assert_eq!(store.load(&key).unwrap(), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(store.dir()), 0o700);
            assert_eq!(mode(&store.dir().join(STATE_FILE)), 0o600);
            assert_eq!(mode(&store.dir().join(KEY_FILE)), 0o600);
        }
    }

    #[test]
    fn peeking_names_the_products_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.peek_products(), None, "no state yet");
        let key = store.device_key().unwrap();
        let lock = store.lock().unwrap();
        store.save(&lock, &key, &sample()).unwrap();
        assert_eq!(store.peek_products(), Some(vec!["p".to_string()]));
        fs::write(dir.path().join(STATE_FILE), b"LICSTOR1 short").unwrap();
        assert_eq!(store.peek_products(), None);
    }

    #[test]
    fn a_missing_device_key_beside_state_is_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = store.device_key().unwrap();
        let lock = store.lock().unwrap();
        store.save(&lock, &key, &sample()).unwrap();
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        assert!(matches!(
            store.device_key_locked(&lock),
            Err(StoreError::Tampered { .. })
        ));
        drop(lock);
        assert!(matches!(
            store.device_key(),
            Err(StoreError::Tampered { .. })
        ));
        assert!(!dir.path().join(KEY_FILE).exists(), "no new key was made");
    }

    #[test]
    fn concurrent_first_opens_of_a_fresh_store_share_one_device_key() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fresh");
            let barrier = std::sync::Barrier::new(8);
            let keys: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            let store = Store::open(&path).unwrap();
                            let key = store.device_key().unwrap();
                            // What the next opener reads is the same key.
                            assert_eq!(store.device_key().unwrap().public(), key.public());
                            key.public()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
            let on_disk = SecretKey::read(&path.join(KEY_FILE)).unwrap();
            assert_eq!(on_disk.public(), keys[0]);
            let temp_files = fs::read_dir(&path)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(fsutil::TEMP_PREFIX)
                })
                .count();
            assert_eq!(temp_files, 0);
        }
    }

    #[test]
    fn resets_in_the_same_second_keep_every_state_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = store.device_key().unwrap();
        let lock = store.lock().unwrap();
        let mut aside = Vec::new();
        for counter in 0..3 {
            let mut state = sample();
            state.last_seen = Some(counter);
            store.save(&lock, &key, &state).unwrap();
            aside.extend(store.quarantine(&lock, 42).unwrap());
        }
        let names: Vec<String> = aside
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                format!("{STATE_FILE}.reset-42"),
                format!("{STATE_FILE}.reset-42-2"),
                format!("{STATE_FILE}.reset-42-3")
            ]
        );
        for (counter, path) in aside.iter().enumerate() {
            let state = decode_state(&fs::read(path).unwrap(), &key).unwrap();
            assert_eq!(state.last_seen, Some(i64::try_from(counter).unwrap()));
        }
    }

    #[test]
    fn a_damaged_key_is_set_aside_with_the_state_under_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = store.device_key().unwrap();
        let lock = store.lock().unwrap();
        store.save(&lock, &key, &sample()).unwrap();
        // A state set aside earlier in the same second takes the plain name.
        fs::write(dir.path().join(format!("{STATE_FILE}.reset-7")), b"old").unwrap();
        fs::write(dir.path().join(KEY_FILE), b"").unwrap();
        let aside = store.quarantine(&lock, 7).unwrap();
        assert_eq!(
            aside,
            [
                dir.path().join(format!("{STATE_FILE}.reset-7-2")),
                dir.path().join(format!("{KEY_FILE}.reset-7-2"))
            ]
        );
        assert_eq!(
            fs::read(dir.path().join(format!("{STATE_FILE}.reset-7"))).unwrap(),
            b"old"
        );
        drop(lock);
        // A new key is made on next use.
        assert_ne!(store.device_key().unwrap().public(), key.public());
    }

    #[test]
    fn quarantine_sets_the_state_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = store.device_key().unwrap();
        let lock = store.lock().unwrap();
        store.save(&lock, &key, &sample()).unwrap();
        let aside = store.quarantine(&lock, 42).unwrap();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].ends_with(format!("{STATE_FILE}.reset-42")));
        // Set aside is not started over: until then the store says what is wrong.
        assert!(matches!(store.load(&key), Err(StoreError::Tampered { .. })));
        store.start_over(&lock, &key).unwrap();
        assert_eq!(store.load(&key).unwrap(), State::default());
    }

    #[test]
    fn a_deleted_state_beside_the_device_key_is_tampering_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = store.device_key().unwrap();
        // A new store has its (empty) state from the start.
        assert_eq!(store.load(&key).unwrap(), State::default());
        let lock = store.lock().unwrap();
        store.save(&lock, &key, &sample()).unwrap();
        fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
        let err = store.load(&key).unwrap_err();
        assert!(
            matches!(&err, StoreError::Tampered { reason } if reason.contains("missing")),
            "{err}"
        );
        // And no new state is made for it behind the user's back.
        assert_eq!(
            store.device_key_locked(&lock).unwrap().public(),
            key.public()
        );
        assert!(!dir.path().join(STATE_FILE).exists());
    }

    #[test]
    fn an_empty_state_left_without_its_key_by_a_crash_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lost = SecretKey::from_seed(&[8; 32]);
        fs::write(
            dir.path().join(STATE_FILE),
            encode_state(&State::default(), &lost),
        )
        .unwrap();
        let key = store.device_key().unwrap();
        assert_ne!(key.public(), lost.public());
        assert_eq!(store.load(&key).unwrap(), State::default());
    }

    #[test]
    fn a_state_file_larger_than_any_store_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = store.device_key().unwrap();
        let path = dir.path().join(STATE_FILE);
        let file = File::options().write(true).open(&path).unwrap();
        file.set_len(MAX_STATE_SIZE + 1).unwrap();
        let err = store.load(&key).unwrap_err();
        assert!(
            matches!(&err, StoreError::Tampered { reason } if reason.contains("larger")),
            "{err}"
        );
        assert_eq!(store.peek_products(), None);
    }
}
