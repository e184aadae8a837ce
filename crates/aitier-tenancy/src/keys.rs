//! API keys: `sk-aitier-<public id>-<secret>`. The public id finds the row;
//! only a SHA-256 of the secret is stored, and it is compared in constant
//! time. Secrets are 192 random bits, so a fast hash is enough: there is no
//! low-entropy password to stretch.
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "sk-aitier-";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A freshly minted key: the full text is shown once and never stored.
#[derive(Clone)]
pub struct NewKey {
    pub id: String,
    pub secret_hash: String,
    pub full: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("full", &"<redacted>")
            .finish()
    }
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

pub fn mint() -> NewKey {
    // The id is lowercase so it reads the same wherever ids are case-folded.
    let id = random_string(ID_LEN, &ALPHABET[..36]);
    let secret = random_string(SECRET_LEN, ALPHABET);
    NewKey {
        secret_hash: hash_secret(&secret),
        full: format!("{PREFIX}{id}-{secret}"),
        id,
    }
}

pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a presented key into (public id, secret); `None` when it is not
/// shaped like one of ours.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('-')?;
    let ok = id.len() == ID_LEN
        && secret.len() == SECRET_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some((id, secret))
}

pub fn verify(secret: &str, stored_hash: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_parse_and_verify() {
        let k = mint();
        let (id, secret) = parse(&k.full).expect("well-formed");
        assert_eq!(id, k.id);
        assert!(verify(secret, &k.secret_hash));
        assert!(!verify("x", &k.secret_hash));
        assert_ne!(mint().full, k.full);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "sk-aitier-",
            "sk-abc",
            "sk-aitier-short-secret",
            "sk-aitier-abcdefghijkl-tooshort",
            "sk-aitier-abcdefghij!l-0123456789abcdefghij0123456789ab",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = mint();
        assert!(!format!("{k:?}").contains(&k.full));
    }
}
