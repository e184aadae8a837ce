//! The console's sign-in: a session cookie (`HttpOnly`, `SameSite=Strict`)
//! that stands for the admin token or for one tenant key, and the CSRF
//! token that the console's writes must echo in `x-csrf-token`.
//!
//! Sessions are not stored: the cookie says who and until when, and is
//! signed with a key derived from the admin token, so that every replica
//! that shares the token accepts it and changing the token ends every admin
//! session. A tenant session carries its key, which is checked again on
//! each request, so that revoking the key ends the session at once.
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use aitier_core::Secret;

pub const COOKIE: &str = "aitier_console";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in lasts.
pub const LIFETIME_SECS: u64 = 12 * 3600;

/// Who a valid cookie stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    Admin,
    /// The tenant key the user signed in with.
    Tenant(String),
}

/// Signs and checks session cookies.
#[derive(Clone)]
pub struct Sessions {
    key: [u8; 32],
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&str]) -> Vec<u8> {
    // Any length is a valid HMAC key.
    let mut m = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"\n");
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Keyed by the admin token; without one, by a random key of this
    /// process (tenant sessions then last until a restart).
    pub fn new(admin_token: Option<&Secret>) -> Self {
        let seed: Vec<u8> = match admin_token {
            Some(t) => t.0.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let derived = mac(&seed, &["aitier console session key"]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&derived);
        Self { key }
    }

    /// The cookie's value for a holder, valid until `now + LIFETIME_SECS`.
    pub fn issue(&self, holder: &Holder, now_secs: u64) -> String {
        let (role, subject) = match holder {
            Holder::Admin => ("a", "-"),
            Holder::Tenant(key) => ("t", key.as_str()),
        };
        let exp = (now_secs + LIFETIME_SECS).to_string();
        let sig = hex(&mac(&self.key, &[role, &exp, subject]));
        format!("{role}.{exp}.{subject}.{sig}")
    }

    /// The holder of a cookie that this server signed and that has not expired.
    pub fn check(&self, value: &str, now_secs: u64) -> Option<Holder> {
        let mut parts = value.split('.');
        let (role, exp, subject, sig) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expected = hex(&mac(&self.key, &[role, exp, subject]));
        if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
            return None;
        }
        if exp.parse::<u64>().ok()? <= now_secs {
            return None;
        }
        match role {
            "a" => Some(Holder::Admin),
            "t" => Some(Holder::Tenant(subject.to_string())),
            _ => None,
        }
    }

    /// The CSRF token of a session: bound to its cookie, so that it is
    /// worth nothing with another.
    pub fn csrf(&self, cookie: &str) -> String {
        hex(&mac(&self.key, &["csrf", cookie]))
    }

    pub fn csrf_ok(&self, cookie: &str, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(self.csrf(cookie).as_bytes().ct_eq(p.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(token: &str) -> Sessions {
        Sessions::new(Some(&Secret(token.into())))
    }

    #[test]
    fn a_cookie_is_good_until_it_expires_and_only_where_it_was_signed() {
        let s = sessions("admin-token");
        let tenant = Holder::Tenant("sk-aitier-abc-def".into());
        for holder in [Holder::Admin, tenant] {
            let c = s.issue(&holder, 1_000);
            assert_eq!(s.check(&c, 1_000), Some(holder.clone()));
            assert_eq!(s.check(&c, 1_000 + LIFETIME_SECS - 1), Some(holder));
            assert_eq!(s.check(&c, 1_000 + LIFETIME_SECS), None, "expired");
            assert_eq!(sessions("another-token").check(&c, 1_000), None);
        }
    }

    #[test]
    fn a_changed_cookie_is_refused() {
        let s = sessions("admin-token");
        let c = s.issue(&Holder::Tenant("sk-aitier-abc-def".into()), 1_000);
        let as_admin = c.replacen("t.", "a.", 1);
        let later = c.replacen(".44200.", ".99999.", 1);
        for bad in [
            as_admin.as_str(),
            later.as_str(),
            "a.99999999999.-.00",
            "",
            "a.b.c.d.e",
        ] {
            assert_eq!(s.check(bad, 1_000), None, "{bad}");
        }
    }

    #[test]
    fn the_csrf_token_belongs_to_its_cookie() {
        let s = sessions("admin-token");
        let one = s.issue(&Holder::Admin, 1_000);
        let two = s.issue(&Holder::Admin, 2_000);
        assert!(s.csrf_ok(&one, Some(&s.csrf(&one))));
        assert!(!s.csrf_ok(&two, Some(&s.csrf(&one))));
        assert!(!s.csrf_ok(&one, None));
        assert!(!s.csrf_ok(&one, Some("")));
    }
}
