//! Who is calling. Every endpoint but health, the OpenAPI document and
//! webhooks (which carry their own signatures) takes an [`Auth`] extractor
//! naming the scope it needs: the request must bear `Authorization: Bearer
//! <API key>`, the key must hold the scope (or `admin`), and the key's
//! tenant must be within its request rate. What the handler then touches is
//! limited to that tenant's records.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use rein::keys::{self, KeyError};
use rein::{Scope, TenantId};
use std::marker::PhantomData;
use std::sync::Arc;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every request bears an API key (the default).
    #[default]
    Keys,
    /// No keys: every request acts as the default tenant with every scope.
    /// For a server on loopback only (`rein serve --no-auth` refuses
    /// anything else).
    Open,
}

/// The caller a request was authenticated as.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub scopes: Vec<Scope>,
    /// The key's id and name; `None` without authentication.
    pub key: Option<(String, String)>,
}

impl Caller {
    /// Who to record as having acted: the key, and whom the request says it
    /// acts for, if it says.
    pub fn actor(&self, on_behalf_of: Option<String>) -> String {
        let key = self.key.as_ref().map(|(id, name)| format!("key {id} ({name})"));
        match (on_behalf_of, key) {
            (Some(person), Some(key)) => format!("{person} via {key}"),
            (Some(person), None) => person,
            (None, Some(key)) => key,
            (None, None) => "api".to_owned(),
        }
    }

    /// Operators are admins of the default tenant: only they see what spans
    /// tenants (the metrics).
    pub fn is_operator(&self) -> bool {
        self.tenant.is_default() && Scope::Admin.granted_by(&self.scopes)
    }
}

/// A scope an endpoint needs, as a type, so each handler's signature says it.
pub trait Needs: Send + Sync {
    const SCOPE: Scope;
}

pub struct RunsRead;
pub struct RunsWrite;
pub struct Approvals;
pub struct Admin;

impl Needs for RunsRead {
    const SCOPE: Scope = Scope::RunsRead;
}
impl Needs for RunsWrite {
    const SCOPE: Scope = Scope::RunsWrite;
}
impl Needs for Approvals {
    const SCOPE: Scope = Scope::Approvals;
}
impl Needs for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// An authenticated caller holding scope `N`.
pub struct Auth<N: Needs>(pub Caller, pub PhantomData<N>);

impl<N: Needs> FromRequestParts<Arc<AppState>> for Auth<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        state.limits.admit_request(state, &caller.tenant).await?;
        if !N::SCOPE.granted_by(&caller.scopes) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing_scope",
                format!("this key lacks the `{}` scope this endpoint needs", N::SCOPE),
            ));
        }
        Ok(Auth(caller, PhantomData))
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    if state.config.auth == AuthMode::Open {
        return Ok(Caller { tenant: TenantId::default(), scopes: Scope::ALL.to_vec(), key: None });
    }
    let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("an API key is required: `Authorization: Bearer rein_...`"))?;
    let presented = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <API key>`"))?;
    match keys::authenticate(state.operator.store().as_ref(), presented).await {
        Ok(record) => Ok(Caller { tenant: record.tenant, scopes: record.scopes, key: Some((record.id, record.name)) }),
        Err(KeyError::Store(error)) => Err(error.into()),
        Err(error) => Err(unauthorized(&error.to_string())),
    }
}
