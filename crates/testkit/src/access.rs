//! What every [`Store`] must do for tenants, deploys and API keys, run
//! against each backend by its own tests (as [`crate::conformance`] is for
//! the journal).

use rein_types::{AgentVersion, ApiKeyRecord, JournalError, Scope, Store, TenantId, TenantLimits};
use serde_json::json;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("a valid tenant")
}

/// Runs every case on `store`, which must be fresh.
pub async fn run_all(store: &dyn Store) {
    names_belong_to_the_first_tenant_that_registers_them(store).await;
    deploys_activate_and_roll_back(store).await;
    keys_are_found_by_id_listed_by_tenant_and_revoked(store).await;
    tenant_limits_are_kept(store).await;
}

pub async fn names_belong_to_the_first_tenant_that_registers_them(store: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let v1 = AgentVersion("1".repeat(64));
    store.register_agent(&acme, "owned", &v1, &json!({}), 1).await.expect("first registration");
    // The owner registers more versions; another tenant cannot.
    store.register_agent(&acme, "owned", &AgentVersion("2".repeat(64)), &json!({}), 2).await.expect("owner again");
    let refused = store.register_agent(&globex, "owned", &AgentVersion("3".repeat(64)), &json!({}), 3).await;
    assert!(matches!(refused, Err(JournalError::Conflict(_))), "another tenant's name: {refused:?}");
    assert_eq!(store.agent_versions("owned").await.expect("versions").len(), 2, "the refused version is not kept");
    let record = store.agent("owned").await.expect("read").expect("registered");
    assert_eq!(record.tenant, acme);
    assert_eq!(record.active_version, None, "registering deploys nothing");
    assert_eq!(store.agent("nobody").await.expect("read"), None);
    let listed = store.agents().await.expect("list").into_iter().find(|r| r.name == "owned");
    assert_eq!(listed, Some(record.clone()), "one agent's record is its row of the listing");
    // A kill switch set before any registration does not own the name.
    store.set_agent_enabled("early", false, "ops", 4).await.expect("switch");
    store.register_agent(&globex, "early", &v1, &json!({}), 5).await.expect("claims a bare name");
    assert_eq!(store.agent("early").await.expect("read").map(|r| (r.tenant, r.enabled)), Some((globex, false)));
}

pub async fn deploys_activate_and_roll_back(store: &dyn Store) {
    let owner = TenantId::default();
    let versions: Vec<AgentVersion> = ["a", "b", "c"].iter().map(|c| AgentVersion(c.repeat(64))).collect();
    for (at, version) in versions.iter().enumerate() {
        store.register_agent(&owner, "deployed", version, &json!({ "v": at }), 10 + at as u64).await.expect("register");
    }
    let unknown = store.activate_agent("deployed", &AgentVersion("f".repeat(64)), "ops", 20).await;
    assert!(matches!(unknown, Err(JournalError::NotFound(_))), "an unregistered version: {unknown:?}");
    for (at, version) in versions.iter().enumerate() {
        store.activate_agent("deployed", version, "ops", 30 + at as u64).await.expect("activate");
    }
    let record = store.agent("deployed").await.expect("read").expect("registered");
    assert_eq!(record.active_version.as_deref(), Some(versions[2].0.as_str()));
    let history = store.activations("deployed").await.expect("history");
    let deployed: Vec<&str> = history.iter().map(|a| a.version.as_str()).collect();
    assert_eq!(deployed, versions.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(), "oldest first");
    assert_eq!(rein_types::rollback_target(&history), Some(versions[1].0.as_str()));
    let listed = store.agent_versions("deployed").await.expect("versions");
    assert_eq!(listed.iter().map(|v| v.registered_at_ms).collect::<Vec<_>>(), [10, 11, 12]);
}

pub async fn keys_are_found_by_id_listed_by_tenant_and_revoked(store: &dyn Store) {
    let key = |id: &str, owner: &str, scopes: Vec<Scope>, at: u64| ApiKeyRecord {
        id: id.to_owned(),
        tenant: tenant(owner),
        name: format!("{id} key"),
        scopes,
        hash: "ab".repeat(32),
        created_at_ms: at,
        revoked_at_ms: None,
    };
    let first = key("k1", "acme", vec![Scope::RunsRead, Scope::Approvals], 1);
    store.create_api_key(&first).await.expect("create");
    store.create_api_key(&key("k2", "globex", vec![Scope::Admin], 2)).await.expect("create");
    store.create_api_key(&key("k3", "acme", vec![Scope::RunsWrite], 3)).await.expect("create");
    let again = store.create_api_key(&key("k1", "globex", vec![Scope::Admin], 4)).await;
    assert!(matches!(again, Err(JournalError::Conflict(_))), "a taken id: {again:?}");
    assert_eq!(store.api_key("k1").await.expect("read"), Some(first.clone()), "the first key is untouched");
    assert_eq!(store.api_key("nope").await.expect("read"), None);
    let ids = |keys: Vec<ApiKeyRecord>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(store.api_keys(None).await.expect("list")), ["k1", "k2", "k3"]);
    assert_eq!(ids(store.api_keys(Some(&tenant("acme"))).await.expect("list")), ["k1", "k3"]);
    assert!(store.revoke_api_key("k1", 9).await.expect("revoke"));
    assert!(!store.revoke_api_key("k1", 10).await.expect("revoke again"), "already revoked");
    assert!(!store.revoke_api_key("nope", 10).await.expect("revoke unknown"));
    assert_eq!(store.api_key("k1").await.expect("read").and_then(|k| k.revoked_at_ms), Some(9));
}

pub async fn tenant_limits_are_kept(store: &dyn Store) {
    assert!(store.tenant_limits().await.expect("read").is_empty());
    let limits = TenantLimits { requests_per_second: Some(5), burst: None, max_concurrent_runs: Some(2) };
    store.set_tenant_limits(&tenant("acme"), &limits).await.expect("set");
    let replaced = TenantLimits { burst: Some(9), ..limits };
    store.set_tenant_limits(&tenant("acme"), &replaced).await.expect("replace");
    assert_eq!(store.tenant_limits().await.expect("read"), [(tenant("acme"), replaced)]);
}
