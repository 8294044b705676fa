//! What the API tests share: a client with a key, and reading an event
//! stream.

#![allow(dead_code)]

use rein::Store;

/// A client bearing a fresh admin key of the default tenant.
pub async fn admin_client(store: &dyn Store) -> reqwest::Client {
    let key = rein::keys::generate(rein::TenantId::default(), "tests", vec![rein::Scope::Admin], 0).unwrap();
    store.create_api_key(&key.record).await.unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {}", key.key).parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// `(id, event type)` of each server-sent event in `text`.
pub fn sse_events(text: &str) -> Vec<(u64, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let id = block.lines().find_map(|l| l.strip_prefix("id:"))?.trim().parse().ok()?;
            let event = block.lines().find_map(|l| l.strip_prefix("event:"))?.trim().to_owned();
            Some((id, event))
        })
        .collect()
}
