//! The Cloudflare Access check against tokens and a key set made with Node's
//! crypto, as Access makes them (`tests/fixtures/access.json`; the valid
//! tokens expire in 2100, so moltworker's tests use them with the real clock):
//! only a valid token passes, whether it comes in the header or the cookie.

use molt_core::access::{AccessConfig, AccessError, AccessKeys, token_from_request, verify};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/access.json")).unwrap()
}

#[test]
fn only_a_valid_token_passes() {
    let fixture = fixture();
    let config = AccessConfig::new(
        fixture["issuer"].as_str().unwrap(),
        fixture["audience"].as_str().unwrap(),
    );
    let keys = AccessKeys::from_jwks(fixture["jwks"].to_string().as_bytes()).unwrap();
    let now = fixture["now"].as_u64().unwrap();
    let token = |name: &str| fixture["tokens"][name].as_str().unwrap().to_owned();
    let check = |name: &str| verify(&token(name), &config, &keys, now);

    let expires = fixture["expires"].as_u64().unwrap();
    let identity = check("valid").unwrap();
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert_eq!(identity.expires_at, expires);
    assert!(check("aud_as_string").is_ok());
    let refusals = [
        ("expired", AccessError::Expired),
        ("not_yet_valid", AccessError::NotYetValid),
        ("wrong_audience", AccessError::WrongAudience),
        ("wrong_issuer", AccessError::WrongIssuer),
        ("unknown_kid", AccessError::UnknownKey),
        ("other_key_same_kid", AccessError::BadSignature),
        ("alg_none", AccessError::Algorithm("none".into())),
        (
            "hs256_with_public_key",
            AccessError::Algorithm("HS256".into()),
        ),
        ("tampered", AccessError::BadSignature),
        ("garbage", AccessError::Malformed),
    ];
    for (name, expected) in refusals {
        assert_eq!(check(name), Err(expected), "{name}");
    }
    assert_eq!(verify("", &config, &keys, now), Err(AccessError::Malformed));
    assert_eq!(
        verify("a.b.c.d", &config, &keys, now),
        Err(AccessError::Malformed)
    );
    // The time bounds hold within the leeway, and not beyond it.
    assert!(verify(&token("valid"), &config, &keys, expires + 59).is_ok());
    let late = verify(&token("valid"), &config, &keys, expires + 60);
    assert_eq!(late, Err(AccessError::Expired));
    // Another application of the same team is refused.
    let other = AccessConfig::new(&config.team_domain, "another-application");
    assert_eq!(
        verify(&token("valid"), &other, &keys, now),
        Err(AccessError::WrongAudience)
    );
}

#[test]
fn the_token_comes_from_the_header_or_the_cookie() {
    assert_eq!(
        token_from_request(Some(" abc "), Some("CF_Authorization=def")),
        Some("abc")
    );
    assert_eq!(
        token_from_request(None, Some("theme=dark; CF_Authorization=def; x=y")),
        Some("def")
    );
    assert_eq!(
        token_from_request(Some(""), Some("CF_Authorization=def")),
        Some("def")
    );
    assert_eq!(
        token_from_request(None, Some("CF_Authorization_x=def")),
        None
    );
    assert_eq!(token_from_request(None, None), None);
}

#[test]
fn the_issuer_and_the_keys_url_come_from_the_team_domain() {
    let config = AccessConfig::new("https://myteam.cloudflareaccess.com/", " aud ");
    assert_eq!(config.issuer(), "https://myteam.cloudflareaccess.com");
    assert_eq!(
        config.certs_url(),
        "https://myteam.cloudflareaccess.com/cdn-cgi/access/certs"
    );
    assert_eq!(config.audience, "aud");
    let keys = AccessKeys::from_jwks(fixture()["jwks"].to_string().as_bytes()).unwrap();
    assert!(keys.contains("kid-1") && keys.contains("kid-2") && !keys.contains("kid-3"));
    assert!(matches!(
        AccessKeys::from_jwks(b"<html>"),
        Err(AccessError::Keys(_))
    ));
}
