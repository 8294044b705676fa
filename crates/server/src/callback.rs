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

/// Why `url` may not receive callbacks, if it may not: a host that is, or
/// resolves to, a loopback, private, link-local, unspecified or multicast
/// address. Checked when the run is created; the client sending callbacks
/// follows no redirects, so the checked host is the one posted to.
pub async fn refuse_private(url: &str) -> Option<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else { return Some("callback_url is not a URL".into()) };
    let Some(host) = parsed.host_str() else { return Some("callback_url has no host".into()) };
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let addresses: Vec<std::net::IpAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(found) => found.map(|a| a.ip()).collect(),
        Err(error) => return Some(format!("callback_url's host `{host}` does not resolve: {error}")),
    };
    addresses
        .iter()
        .find(|ip| is_private(ip))
        .map(|ip| format!("callback_url's host `{host}` is a private address ({ip}); callbacks go to public hosts"))
}

fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(&std::net::IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callbacks_to_private_addresses_are_refused() {
        for url in [
            "http://127.0.0.1:5432/x",
            "http://localhost/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3/x",
            "http://192.168.0.1/x",
            "http://[::1]/x",
            "http://[fd00::1]/x",
        ] {
            assert!(refuse_private(url).await.is_some(), "{url} must be refused");
        }
        assert!(refuse_private("http://93.184.216.34/x").await.is_none(), "a public address is allowed");
    }

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
