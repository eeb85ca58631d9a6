//! The per-session key and the keyed MAC state packets are authenticated
//! with (see [`crate::packet`] and `docs/wire-protocol.md`).

use aegis::aegis128l::Aegis128LMac;
use serde::{Deserialize, Serialize};

/// The per-session key (32 bytes). Printed only as `<redacted>` in debug output.
///
/// Packets are authenticated with AEGIS-128L used as a MAC (see
/// `docs/wire-protocol.md`) under a 16-byte key derived from this one; the
/// keyed MAC state is computed once here and cloned for every packet.
#[derive(Clone)]
pub struct SessionKey {
    bytes: [u8; 32],
    /// Boxed: the state is about 600 bytes, and specs travel inside other messages.
    mac: Box<Aegis128LMac<16>>,
}

/// BLAKE3 key-derivation context of the packet MAC key.
const MAC_KEY_CONTEXT: &str = "metalcast 2026-11 wire protocol v2 packet MAC key";

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, o: &Self) -> bool {
        self.bytes == o.bytes
    }
}

impl Eq for SessionKey {}

impl SessionKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).expect("the OS random number generator is available");
        SessionKey::from_bytes(k)
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let derived = blake3::derive_key(MAC_KEY_CONTEXT, &bytes);
        let mac_key: [u8; 16] = derived[..16].try_into().expect("16 of 32 bytes");
        SessionKey { bytes, mac: Box::new(Aegis128LMac::new(&mac_key)) }
    }

    /// The key's bytes (as handed to receivers out of band).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A fresh MAC state under this key.
    pub(crate) fn mac(&self) -> Aegis128LMac<16> {
        (*self.mac).clone()
    }
}

impl Serialize for SessionKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.bytes))
    }
}

impl<'de> Deserialize<'de> for SessionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut k = [0u8; 32];
        hex::decode_to_slice(&s, &mut k).map_err(|e| serde::de::Error::custom(format!("session key: {e}")))?;
        Ok(SessionKey::from_bytes(k))
    }
}
