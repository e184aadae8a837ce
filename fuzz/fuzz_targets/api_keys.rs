//! What a client presents as an API key: the parser splits it into an id
//! and a secret or refuses it, and the check against a stored hash answers
//! yes only for the secret that made the hash.
#![no_main]
use aitier_tenancy::keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(presented) = std::str::from_utf8(data) else {
        return;
    };
    let Some((id, secret)) = keys::parse(presented) else {
        return;
    };
    assert_eq!(
        format!("sk-aitier-{id}-{secret}"),
        presented,
        "a key is its id and secret"
    );
    let stored = keys::hash_secret(secret);
    assert!(keys::verify(secret, &stored));
    assert!(!keys::verify(&format!("{secret}x"), &stored));
});
