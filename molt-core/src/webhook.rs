//! The proofs chat platforms attach to what they POST to a webhook, checked
//! by the same code in the gateway and at the edge (the Worker refuses a
//! forged delivery before it wakes a sleeping container).
//!
//! - Slack signs each request: `X-Slack-Signature: v0=<hex>`, the
//!   HMAC-SHA256 of `v0:<X-Slack-Request-Timestamp>:<body>` under the app's
//!   signing secret, with the timestamp within five minutes of now.
//! - Telegram echoes the secret given to `setWebhook` in
//!   `X-Telegram-Bot-Api-Secret-Token`; Molt derives it from the bot token,
//!   so the gateway and the Worker agree without another setting.

use crate::Secret;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Where a chat platform's webhook deliveries arrive, under the Worker's URL.
pub const TELEGRAM_PATH: &str = "/hooks/telegram";
/// Where Slack delivers over the Events API (the app's Request URL).
pub const SLACK_PATH: &str = "/hooks/slack";

/// The header carrying Slack's signature (`v0=<hex>`).
pub const SLACK_SIGNATURE_HEADER: &str = "x-slack-signature";
/// The header carrying when Slack sent the request (Unix seconds).
pub const SLACK_TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// How far a Slack request's timestamp may be from now, either way.
pub const SLACK_TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The header Telegram puts the webhook's secret in.
pub const TELEGRAM_SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Why a request is not taken as Slack's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Slack-Request-Timestamp`, or not digits.
    #[error("no readable X-Slack-Request-Timestamp header")]
    MissingTimestamp,
    /// No `X-Slack-Signature`, or not `v0=` and lowercase hex.
    #[error("no readable X-Slack-Signature header")]
    MissingSignature,
    /// The timestamp is more than five minutes from now: a replay, or a
    /// clock that is off.
    #[error("the request timestamp is {seconds} s away from now (the limit is 300 s)")]
    Stale {
        /// How far from now, in seconds.
        seconds: u64,
    },
    /// The signature is not the signing secret's for this body.
    #[error("the signature does not match the signing secret")]
    Mismatch,
}

/// Checks that a request is Slack's, given its timestamp and signature
/// headers as sent: the `v0` signature over `v0:<timestamp>:<body>` with
/// `signing_secret` (compared in constant time), and the timestamp within
/// [`SLACK_TIMESTAMP_WINDOW`] of `now` (Unix seconds).
pub fn verify_slack_signature(
    signing_secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    // Slack signs the header's text; only plain digits are a timestamp.
    let timestamp = timestamp
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(SignatureError::MissingTimestamp)?;
    let sent_at: u64 = timestamp
        .parse()
        .map_err(|_| SignatureError::MissingTimestamp)?;
    let signature = signature
        .and_then(|s| s.strip_prefix("v0="))
        .filter(|hex| hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(SignatureError::MissingSignature)?;
    let seconds = now.abs_diff(sent_at);
    if seconds > SLACK_TIMESTAMP_WINDOW.as_secs() {
        return Err(SignatureError::Stale { seconds });
    }
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(signing_secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// The secret Telegram is given with `setWebhook` and echoes back: derived
/// from the bot token (64 hex digits, which Telegram accepts).
pub fn telegram_secret(bot_token: &Secret) -> Secret {
    let digest = Sha256::digest(format!("molt telegram webhook\n{}", bot_token.expose()));
    Secret::new(hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in Slack's "Verifying requests from Slack".
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const NOW: u64 = 1_531_420_618;

    fn check(timestamp: &str, signature: &str, body: &str, now: u64) -> Result<(), SignatureError> {
        let secret = Secret::new(SECRET);
        verify_slack_signature(
            &secret,
            Some(timestamp),
            Some(signature),
            body.as_bytes(),
            now,
        )
    }

    #[test]
    fn slacks_worked_example_verifies() {
        assert_eq!(check(TIMESTAMP, SIGNATURE, BODY, NOW + 10), Ok(()));
        assert_eq!(check(TIMESTAMP, SIGNATURE, BODY, NOW + 300), Ok(()));
    }

    #[test]
    fn wrong_bodies_secrets_times_and_headers_are_refused() {
        let tampered = BODY.replace("roadrunner", "coyote");
        assert_eq!(
            check(TIMESTAMP, SIGNATURE, &tampered, NOW),
            Err(SignatureError::Mismatch)
        );
        let other = verify_slack_signature(
            &Secret::new("another"),
            Some(TIMESTAMP),
            Some(SIGNATURE),
            BODY.as_bytes(),
            NOW,
        );
        assert_eq!(other, Err(SignatureError::Mismatch));
        assert_eq!(
            check(TIMESTAMP, SIGNATURE, BODY, NOW + 301),
            Err(SignatureError::Stale { seconds: 301 })
        );
        assert_eq!(
            check(TIMESTAMP, SIGNATURE, BODY, NOW - 301),
            Err(SignatureError::Stale { seconds: 301 })
        );
        assert_eq!(
            check("1531420619", SIGNATURE, BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        // The header's text is what was signed: another spelling of the
        // same number is not a timestamp.
        for spelled in ["+1531420618", " 1531420618", "", "yesterday"] {
            assert_eq!(
                check(spelled, SIGNATURE, BODY, NOW),
                Err(SignatureError::MissingTimestamp),
                "{spelled:?}"
            );
        }
        assert_eq!(
            check("01531420618", SIGNATURE, BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        let upper = format!("v0={}", SIGNATURE[3..].to_ascii_uppercase());
        for malformed in [
            SIGNATURE.replace("v0=", "v1="),
            upper,
            SIGNATURE[..40].to_owned(),
        ] {
            assert_eq!(
                check(TIMESTAMP, &malformed, BODY, NOW),
                Err(SignatureError::MissingSignature),
                "{malformed}"
            );
        }
        assert_eq!(
            check(TIMESTAMP, &SIGNATURE[..41], BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        let secret = Secret::new(SECRET);
        let unsigned = verify_slack_signature(&secret, Some(TIMESTAMP), None, BODY.as_bytes(), NOW);
        assert_eq!(unsigned, Err(SignatureError::MissingSignature));
    }

    #[test]
    fn the_telegram_secret_is_stable_per_token_and_acceptable_to_telegram() {
        let secret = telegram_secret(&Secret::new("123:abc"));
        assert_eq!(
            secret.expose(),
            telegram_secret(&Secret::new("123:abc")).expose()
        );
        assert_ne!(
            secret.expose(),
            telegram_secret(&Secret::new("123:abd")).expose()
        );
        assert_eq!(secret.expose().len(), 64);
        assert!(secret.expose().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
