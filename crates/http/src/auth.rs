//! Optional token authentication, as the original apiserver does it (off by default).
//!
//! `POST /apis/hwameistor.io/v1alpha1/cluster/auth/auth` with `{"accessId", "secretKey"}`
//! returns `{"token", "expireAt"}` (a random UUID valid for [`TOKEN_TTL`]); every other API
//! request must then carry `Authorization: <token>` (a `Bearer ` prefix is accepted too).
//! `POST .../cluster/auth/logout` revokes the presented token; `GET .../cluster/auth/info`
//! says whether auth is enabled. `/healthz` and the auth routes themselves stay open.
//!
//! Difference from the original: tokens live in memory (the original persists them in a
//! Secret), so a restart logs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use axum::{Json, http::HeaderMap};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{Error, Result};

/// How long a token stays valid (7 days, as in the original).
pub const TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The one account of the API (the original's env `AuthAccessId` / `AuthSecretKey`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub access_id: String,
    pub secret_key: String,
}

/// Issued tokens and the account they are checked against.
#[derive(Debug)]
pub struct Auth {
    credentials: Credentials,
    tokens: Mutex<HashMap<String, Timestamp>>,
}

impl Auth {
    pub fn new(credentials: Credentials) -> Self {
        Auth {
            credentials,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        // a panic while holding this lock cannot leave the map inconsistent
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Check credentials and issue a token with its expiry.
    pub fn login(&self, c: &Credentials) -> Result<(String, Timestamp)> {
        if c != &self.credentials {
            return Err(Error::Unauthorized {
                reason: "wrong accessId or secretKey".into(),
            });
        }
        let token = uuid::Uuid::new_v4().to_string();
        let expiry = Timestamp::now()
            + jiff::SignedDuration::from_secs(TOKEN_TTL.as_secs().try_into().unwrap_or(i64::MAX));
        let mut tokens = self.tokens();
        let now = Timestamp::now();
        tokens.retain(|_, exp| *exp > now);
        tokens.insert(token.clone(), expiry);
        Ok((token, expiry))
    }

    /// Whether `token` was issued and has not expired.
    pub fn verify(&self, token: &str) -> bool {
        self.tokens()
            .get(token)
            .is_some_and(|exp| *exp > Timestamp::now())
    }

    pub fn logout(&self, token: &str) -> bool {
        self.tokens().remove(token).is_some()
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    Some(v.strip_prefix("Bearer ").unwrap_or(v).trim())
}

/// Middleware: with auth on, refuse requests without a valid token.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> std::result::Result<Response, Error> {
    if let Some(auth) = &state.auth {
        let path = req.uri().path();
        let open =
            path == "/healthz" || path.starts_with(&format!("{}/cluster/auth/", crate::PREFIX));
        if !open {
            match bearer(req.headers()) {
                None => {
                    return Err(Error::Unauthorized {
                        reason: "missing Authorization header".into(),
                    });
                }
                Some(t) if !auth.verify(t) => {
                    return Err(Error::Unauthorized {
                        reason: "unknown or expired token".into(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(next.run(req).await)
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Json(c): Json<Credentials>,
) -> Result<Json<Value>> {
    let Some(auth) = &state.auth else {
        return Err(Error::BadRequest {
            reason: "authentication is not enabled".into(),
        });
    };
    let (token, expiry) = auth.login(&c)?;
    Ok(Json(
        json!({"token": token, "expireAt": expiry.as_second()}),
    ))
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let Some(auth) = &state.auth else {
        return Err(Error::BadRequest {
            reason: "authentication is not enabled".into(),
        });
    };
    let token = bearer(&headers).ok_or_else(|| Error::Unauthorized {
        reason: "missing Authorization header".into(),
    })?;
    if !auth.logout(token) {
        return Err(Error::Unauthorized {
            reason: "unknown token".into(),
        });
    }
    Ok(Json(json!({"success": true})))
}

pub(crate) async fn info(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"enabled": state.auth.is_some()}))
}

/// Shared handle used in [`AppState`].
pub(crate) type SharedAuth = Option<Arc<Auth>>;
