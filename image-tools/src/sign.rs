//! ed25519 keys and manifest signatures.
//!
//! Key files are one line of text: `metalcast-ed25519-secret <64 hex>` (the
//! 32-byte seed, written with mode 0600) and `metalcast-ed25519-public <64 hex>`.
//! Signatures cover a domain-separation prefix followed by the exact manifest bytes.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, Verifier};

use crate::error::{BundleError, Result};

const SIGN_CONTEXT: &[u8] = b"metalcast bundle manifest v1\0";
const SECRET_TAG: &str = "metalcast-ed25519-secret";
const PUBLIC_TAG: &str = "metalcast-ed25519-public";

/// A signature block: who signed and the signature itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// The signer's ed25519 public key.
    pub public_key: [u8; 32],
    /// The ed25519 signature over the context and the manifest bytes.
    pub signature: [u8; 64],
}

/// A trusted public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Hex form, as printed by `inspect`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads a public key file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io("reading key", path, e))?;
        Ok(PublicKey(parse_key_line(path, &text, PUBLIC_TAG)?))
    }

    /// Parses the text form (`metalcast-ed25519-public <hex>`).
    pub fn parse(text: &str) -> Result<Self> {
        Ok(PublicKey(parse_key_line(Path::new("<inline>"), text, PUBLIC_TAG)?))
    }

    /// The one-line text form.
    pub fn to_line(&self) -> String {
        format!("{PUBLIC_TAG} {}\n", self.to_hex())
    }
}

/// A signing key (kept secret).
#[derive(Debug)]
pub struct SecretKey(ed25519_dalek::SigningKey);

fn parse_key_line(path: &Path, text: &str, tag: &str) -> Result<[u8; 32]> {
    let bad = |reason: String| BundleError::BadKey { path: path.to_path_buf(), reason };
    let line = text.trim();
    let hexpart =
        line.strip_prefix(tag).map(str::trim).ok_or_else(|| bad(format!("expected a line starting with {tag:?}")))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hexpart, &mut out).map_err(|e| bad(format!("bad hex key: {e}")))?;
    Ok(out)
}

impl SecretKey {
    /// A fresh random key from the OS RNG.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random number generator is available");
        SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Reads a secret key file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io("reading key", path, e))?;
        let seed = parse_key_line(path, &text, SECRET_TAG)?;
        Ok(SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Writes `<prefix>.key` (mode 0600) and `<prefix>.pub`. Refuses to overwrite.
    pub fn save(&self, prefix: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let secret = prefix.with_extension("key");
        let public = prefix.with_extension("pub");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)
            .map_err(|e| BundleError::io("creating", &secret, e))?;
        writeln!(f, "{SECRET_TAG} {}", hex::encode(self.0.to_bytes()))
            .map_err(|e| BundleError::io("writing", &secret, e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&public)
            .and_then(|mut f| f.write_all(self.public().to_line().as_bytes()))
            .map_err(|e| BundleError::io("writing", &public, e))?;
        Ok(())
    }

    /// Signs manifest bytes.
    pub fn sign(&self, manifest_bytes: &[u8]) -> Signature {
        let msg = [SIGN_CONTEXT, manifest_bytes].concat();
        Signature { public_key: self.public().0, signature: self.0.sign(&msg).to_bytes() }
    }
}

/// Verifies a manifest signature against trusted keys.
pub fn verify(
    manifest_bytes: &[u8],
    sig: Option<&Signature>,
    trusted: &[PublicKey],
    allow_unsigned: bool,
) -> Result<()> {
    let Some(sig) = sig else {
        return if allow_unsigned { Ok(()) } else { Err(BundleError::Unsigned) };
    };
    if !trusted.iter().any(|k| k.0 == sig.public_key) {
        if trusted.is_empty() && allow_unsigned {
            // No trust configured: the signature cannot be judged; still check it is well-formed below.
        } else {
            return Err(BundleError::BadSignature(format!(
                "signed by {}, which is not a trusted key",
                hex::encode(sig.public_key)
            )));
        }
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(&sig.public_key)
        .map_err(|e| BundleError::BadSignature(format!("malformed public key: {e}")))?;
    let msg = [SIGN_CONTEXT, manifest_bytes].concat();
    key.verify(&msg, &ed25519_dalek::Signature::from_bytes(&sig.signature))
        .map_err(|_| BundleError::BadSignature("signature does not match the manifest".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let k = SecretKey::generate();
        let other = SecretKey::generate();
        let s = k.sign(b"manifest");
        verify(b"manifest", Some(&s), &[k.public()], false).unwrap();
        assert!(matches!(verify(b"manifesT", Some(&s), &[k.public()], false), Err(BundleError::BadSignature(_))));
        assert!(matches!(verify(b"manifest", Some(&s), &[other.public()], false), Err(BundleError::BadSignature(_))));
        assert!(matches!(verify(b"manifest", None, &[k.public()], false), Err(BundleError::Unsigned)));
        verify(b"manifest", None, &[], true).unwrap();
    }

    #[test]
    fn key_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let k = SecretKey::generate();
        k.save(&dir.path().join("k")).unwrap();
        let back = SecretKey::load(&dir.path().join("k.key")).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(PublicKey::load(&dir.path().join("k.pub")).unwrap(), k.public());
        assert!(k.save(&dir.path().join("k")).is_err(), "must not overwrite a key");
        std::fs::write(dir.path().join("bad.pub"), "metalcast-ed25519-public zz").unwrap();
        assert!(PublicKey::load(&dir.path().join("bad.pub")).is_err());
    }
}
