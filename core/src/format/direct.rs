//! The license and refresh payloads read straight from their bytes into the owned
//! structures, without serde: the check of a license reads one on every call, and
//! ciborium's decoding (a header parsed per item, every key copied into a scratch buffer
//! and matched as a string) cost as much as all the format checks together.
//!
//! Only for bytes already proven [`cbor::is_plain_payload`] (deterministic, well-formed,
//! no tag, no null, no float, text keys only) whose `v` is this version: the readers
//! below take such bytes as they come and read exactly the types serde's derived
//! `Deserialize` reads for each field. Anything else — a type they do not expect, a
//! missing field, a time out of range, a number too large — gives `None`, and serde's
//! reading, then the fully checked one, decide with their own errors. So the reader may
//! refuse more than serde, never less, and gives the same value for what it accepts
//! (tests compare the two on the fixtures and on mutated encodings).

use chrono::DateTime;

use super::cbor;
use super::payload::{
    Bytes32, Feature, Features, Fingerprint, License, LicenseType, MatchRule, Nonce, Refresh,
    Timestamp,
};

/// A position in payload bytes proven [`cbor::is_plain_payload`]. Every read checks its
/// bounds all the same: no input makes it panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn head(&mut self) -> Option<(u8, u64)> {
        cbor::plain_head(self.bytes, &mut self.at)
    }

    /// The argument of a head of major type `major`.
    fn expect(&mut self, major: u8) -> Option<u64> {
        let (found, arg) = self.head()?;
        (found == major).then_some(arg)
    }

    /// The content of a byte string (major 2) or text string (major 3).
    fn content(&mut self, major: u8) -> Option<&'a [u8]> {
        let len = usize::try_from(self.expect(major)?).ok()?;
        let end = self.at.checked_add(len)?;
        let content = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(content)
    }

    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.content(3)?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.text().map(str::to_owned)
    }

    /// An unsigned integer (`u64`, as serde reads one: major type 0 only).
    fn uint(&mut self) -> Option<u64> {
        self.expect(0)
    }

    /// A time: whole seconds since the epoch, an `i64` (major type 0 or 1) that chrono
    /// can represent.
    fn time(&mut self) -> Option<Timestamp> {
        let (major, arg) = self.head()?;
        let arg = i64::try_from(arg).ok()?;
        let secs = match major {
            0 => arg,
            1 => -1 - arg,
            _ => return None,
        };
        DateTime::from_timestamp(secs, 0)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.head()? {
            (7, 20) => Some(false),
            (7, 21) => Some(true),
            _ => None,
        }
    }

    fn bytes32(&mut self) -> Option<Bytes32> {
        self.content(2)?.try_into().ok().map(Bytes32)
    }

    fn nonce(&mut self) -> Option<Nonce> {
        self.content(2)?.try_into().ok().map(Nonce)
    }

    fn license_type(&mut self) -> Option<LicenseType> {
        Some(match self.content(3)? {
            b"perpetual" => LicenseType::Perpetual,
            b"time-limited" => LicenseType::TimeLimited,
            b"subscription" => LicenseType::Subscription,
            b"trial" => LicenseType::Trial,
            b"floating" => LicenseType::Floating,
            _ => return None,
        })
    }

    fn skip(&mut self) -> Option<()> {
        cbor::skip_plain_payload_item(self.bytes, &mut self.at)
    }

    /// A map, each entry handed to `entry` with its key's bytes (keys are text: proven).
    fn map(&mut self, mut entry: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        let entries = self.expect(5)?;
        for _ in 0..entries {
            let key = self.content(3)?;
            entry(self, key)?;
        }
        Some(())
    }

    fn fingerprint(&mut self) -> Option<Fingerprint> {
        let mut out = Fingerprint::new();
        self.map(|r, name| {
            let name = std::str::from_utf8(name).ok()?.to_owned();
            let hash = r.bytes32()?;
            out.insert(name, hash).is_none().then_some(())
        })?;
        Some(out)
    }

    fn features(&mut self) -> Option<Features> {
        let mut out = Features::new();
        self.map(|r, name| {
            let name = std::str::from_utf8(name).ok()?.to_owned();
            let feature = r.feature()?;
            out.insert(name, feature).is_none().then_some(())
        })?;
        Some(out)
    }

    fn feature(&mut self) -> Option<Feature> {
        let (mut limit, mut overage, mut max_overage, mut floating) = (None, None, None, None);
        self.map(|r, key| match key {
            b"limit" => set(&mut limit, r.uint()),
            b"overage" => set(&mut overage, r.bool()),
            b"max_overage" => set(&mut max_overage, r.uint()),
            b"floating" => set(&mut floating, r.uint()),
            _ => r.skip(),
        })?;
        Some(Feature {
            limit,
            overage: overage.unwrap_or(false),
            max_overage,
            floating,
        })
    }

    fn match_rule(&mut self) -> Option<MatchRule> {
        let (mut required, mut max_changed) = (None, None);
        self.map(|r, key| match key {
            b"required" => set(&mut required, r.strings()),
            b"max_changed" => set(&mut max_changed, r.uint().and_then(|n| n.try_into().ok())),
            _ => r.skip(),
        })?;
        Some(MatchRule {
            required: required?,
            max_changed: max_changed?,
        })
    }

    fn strings(&mut self) -> Option<Vec<String>> {
        let len = usize::try_from(self.expect(4)?).ok()?;
        // Each item takes at least one byte: no allocation larger than the input.
        let mut out = Vec::with_capacity(len.min(self.bytes.len()));
        for _ in 0..len {
            out.push(self.string()?);
        }
        Some(out)
    }

    fn counters(&mut self) -> Option<std::collections::BTreeMap<String, u64>> {
        let mut out = std::collections::BTreeMap::new();
        self.map(|r, name| {
            let name = std::str::from_utf8(name).ok()?.to_owned();
            let n = r.uint()?;
            out.insert(name, n).is_none().then_some(())
        })?;
        Some(out)
    }
}

/// Fill `slot` with `value` once (a second value of a field, which deterministic
/// encoding excludes anyway, is left to serde).
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// Read the top-level map of `bytes`, and check that nothing follows it.
fn read_map<'a>(
    bytes: &'a [u8],
    entry: impl FnMut(&mut Reader<'a>, &'a [u8]) -> Option<()>,
) -> Option<()> {
    let mut reader = Reader { bytes, at: 0 };
    reader.map(entry)?;
    (reader.at == bytes.len()).then_some(())
}

/// A license payload (proven [`cbor::is_plain_payload`], of this version), or `None`.
pub(crate) fn license(bytes: &[u8]) -> Option<License> {
    let mut license_id = None;
    let mut activation_id = None;
    let mut product = None;
    let mut device_key = None;
    let mut fingerprint = None;
    let mut match_rule = None;
    let mut features = None;
    let mut license_type = None;
    let mut issued = None;
    let mut not_before = None;
    let mut expires = None;
    let mut offline_expiry = None;
    let mut clock_tolerance = None;
    let mut serial = None;
    let mut request_nonce = None;
    let mut counters = None;
    let mut pool_seats = None;
    let mut has_pool = false;
    read_map(bytes, |r, key| match key {
        b"license_id" => set(&mut license_id, r.string()),
        b"activation_id" => set(&mut activation_id, r.string()),
        b"product" => set(&mut product, r.string()),
        b"device_key" => set(&mut device_key, r.bytes32()),
        b"fingerprint" => set(&mut fingerprint, r.fingerprint()),
        b"match_rule" => set(&mut match_rule, r.match_rule()),
        b"features" => set(&mut features, r.features()),
        b"license_type" => set(&mut license_type, r.license_type()),
        b"issued" => set(&mut issued, r.time()),
        b"not_before" => set(&mut not_before, r.time()),
        b"expires" => set(&mut expires, r.time()),
        b"offline_expiry" => set(&mut offline_expiry, r.time()),
        b"clock_tolerance" => set(&mut clock_tolerance, r.uint()),
        b"serial" => set(&mut serial, r.uint()),
        b"request_nonce" => set(&mut request_nonce, r.nonce()),
        b"counters" => set(&mut counters, r.counters()),
        b"pool_seats" => set(&mut pool_seats, r.uint().and_then(|n| n.try_into().ok())),
        // A chained (on-premise server's) license is rare: serde reads it.
        b"pool" => {
            has_pool = true;
            r.skip()
        }
        _ => r.skip(),
    })?;
    Some(License {
        license_id: license_id?,
        activation_id: activation_id?,
        product: product?,
        device_key: device_key?,
        fingerprint: fingerprint?,
        match_rule: match_rule?,
        features: features?,
        license_type: license_type?,
        issued: issued?,
        not_before: not_before?,
        expires,
        offline_expiry,
        clock_tolerance: clock_tolerance?,
        serial: serial?,
        request_nonce: request_nonce?,
        counters: counters.unwrap_or_default(),
        pool_seats,
        pool: None,
    })
    .filter(|_| !has_pool)
}

/// A refresh payload (proven [`cbor::is_plain_payload`], of this version), or `None`.
pub(crate) fn refresh(bytes: &[u8]) -> Option<Refresh> {
    let mut license_id = None;
    let mut activation_id = None;
    let mut product = None;
    let mut device_key = None;
    let mut serial = None;
    let mut features = None;
    let mut license_type = None;
    let mut expires = None;
    let mut offline_expiry = None;
    let mut clock_tolerance = None;
    let mut clock_floor = None;
    let mut reason = None;
    let mut issued = None;
    let mut pool_seats = None;
    read_map(bytes, |r, key| match key {
        b"license_id" => set(&mut license_id, r.string()),
        b"activation_id" => set(&mut activation_id, r.string()),
        b"product" => set(&mut product, r.string()),
        b"device_key" => set(&mut device_key, r.bytes32()),
        b"pool_seats" => set(&mut pool_seats, r.uint().and_then(|n| n.try_into().ok())),
        b"serial" => set(&mut serial, r.uint()),
        b"features" => set(&mut features, r.features()),
        b"license_type" => set(&mut license_type, r.license_type()),
        b"expires" => set(&mut expires, r.time()),
        b"offline_expiry" => set(&mut offline_expiry, r.time()),
        b"clock_tolerance" => set(&mut clock_tolerance, r.uint()),
        b"clock_floor" => set(&mut clock_floor, r.time()),
        b"reason" => set(&mut reason, r.string()),
        b"issued" => set(&mut issued, r.time()),
        _ => r.skip(),
    })?;
    Some(Refresh {
        license_id: license_id?,
        activation_id: activation_id?,
        product: product?,
        device_key: device_key?,
        serial: serial?,
        features: features?,
        license_type: license_type?,
        expires,
        offline_expiry,
        clock_tolerance: clock_tolerance?,
        clock_floor,
        reason: reason?,
        issued: issued?,
        pool_seats,
    })
}
