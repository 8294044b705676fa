//! API keys: `rein_<id>_<secret>`, where the id finds the stored record and
//! the secret is 32 random bytes. The store keeps only the SHA-256 of the
//! whole key. A fast hash is enough here, unlike for passwords: the secret
//! is 256 random bits, so there is nothing to guess from a leaked hash.

use rein_types::{AccessStore, ApiKeyRecord, JournalError, Scope, TenantId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "rein_";

/// A key just made: the key, shown once, and what the store keeps.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

/// Why a presented key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the API key is malformed (expected `rein_<id>_<secret>`)")]
    Malformed,
    #[error("the API key is not known")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the operating system gave no randomness for a key: {0}")]
    Randomness(String),
    #[error(transparent)]
    Store(#[from] JournalError),
}

/// Makes a key for `tenant` with `scopes`; store `record`, hand out `key`.
pub fn generate(tenant: TenantId, name: &str, scopes: Vec<Scope>, now_ms: u64) -> Result<NewKey, KeyError> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)
        .and_then(|()| getrandom::fill(&mut secret))
        .map_err(|e| KeyError::Randomness(e.to_string()))?;
    let id = hex::encode(id);
    let key = format!("{PREFIX}{id}_{}", hex::encode(secret));
    let record = ApiKeyRecord {
        id,
        tenant,
        name: name.to_owned(),
        scopes,
        hash: hash(&key),
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    Ok(NewKey { key, record })
}

/// Hex SHA-256 of a whole key, as stored.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The public id of a key, if it has the shape of one.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 16) && hex_of(secret, 64)).then_some(id)
}

/// The record of a presented key, if the key is known and not revoked.
pub async fn authenticate(store: &dyn AccessStore, presented: &str) -> Result<ApiKeyRecord, KeyError> {
    let id = key_id(presented).ok_or(KeyError::Malformed)?;
    let record = store.api_key(id).await?.ok_or(KeyError::Unknown)?;
    // Compared in constant time, so response timing tells nothing about
    // how much of a guessed key's hash was right.
    if !bool::from(hash(presented).as_bytes().ct_eq(record.hash.as_bytes())) {
        return Err(KeyError::Unknown);
    }
    if record.revoked_at_ms.is_some() {
        return Err(KeyError::Revoked);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_hash_to_their_record() {
        let new = generate(TenantId::default(), "ci", vec![Scope::RunsRead], 1).unwrap();
        assert_eq!(key_id(&new.key), Some(new.record.id.as_str()));
        assert_eq!(hash(&new.key), new.record.hash);
        let other = generate(TenantId::default(), "ci", vec![Scope::RunsRead], 1).unwrap();
        assert_ne!(new.key, other.key, "keys are random");
    }

    #[test]
    fn malformed_keys_have_no_id() {
        for bad in ["", "rein_", "rein_abc_def", "bearer", "rein_0123456789abcdef_short", "xein_0123456789abcdef_"] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
    }
}
