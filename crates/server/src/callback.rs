//! The POST of an async run's result to the caller's URL, signed so the
//! receiver can tell it came from this server and was not replayed: the
//! signature is HMAC-SHA256 over `{timestamp}.{body}` with a shared secret,
//! sent as `X-Rein-Signature: sha256=HEX` beside `X-Rein-Timestamp`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "x-rein-signature";
pub const TIMESTAMP_HEADER: &str = "x-rein-timestamp";

/// Attempts per callback; a receiver that is down for a moment still gets it.
const ATTEMPTS: u32 = 4;

/// `sha256=HEX` of HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn sign(secret: &[u8], timestamp_s: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts `body` to `url`, retrying with backoff on failure or a 5xx.
pub async fn deliver(client: &reqwest::Client, url: &str, secret: &[u8], body: Vec<u8>) {
    for attempt in 0..ATTEMPTS {
        let timestamp = rein::now_ms() / 1000;
        let signature = sign(secret, timestamp, &body);
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(response) if !response.status().is_server_error() => {
                if !response.status().is_success() {
                    tracing::warn!(url, status = %response.status(), "callback refused");
                }
                return;
            }
            Ok(response) => tracing::warn!(url, status = %response.status(), attempt, "callback failed"),
            Err(error) => tracing::warn!(url, %error, attempt, "callback failed"),
        }
        tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
    }
    tracing::error!(url, "callback not delivered after {ATTEMPTS} attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_depend_on_secret_timestamp_and_body() {
        let a = sign(b"secret", 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_eq!(a, sign(b"secret", 1_700_000_000, b"{}"));
        assert_ne!(a, sign(b"other", 1_700_000_000, b"{}"));
        assert_ne!(a, sign(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(a, sign(b"secret", 1_700_000_000, b"{ }"));
    }
}
