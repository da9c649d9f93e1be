//! Bearer-token authentication: a request to a guarded route needs
//! `Authorization: Bearer <token>` with one of the configured tokens
//! (compared in constant time), else `401` with `WWW-Authenticate: Bearer`.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::routes::error_body;
use super::AppState;

/// The accepted API tokens (kept as SHA-256 digests, never logged).
#[derive(Clone, Default)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.digests.len())
    }
}

impl Tokens {
    /// Tokens from a list (empty entries ignored).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(tokens: I) -> Self {
        Tokens {
            digests: tokens
                .into_iter()
                .filter(|t| !t.as_ref().trim().is_empty())
                .map(|t| Sha256::digest(t.as_ref().trim().as_bytes()).into())
                .collect(),
        }
    }

    /// True when no token is configured (the API is open).
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `token` is accepted.
    pub fn accepts(&self, token: &str) -> bool {
        if self.is_open() {
            return true;
        }
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare digests without early exit.
        self.digests.iter().fold(false, |ok, t| {
            ok | (t
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0)
        })
    }
}

pub(super) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if state.tokens.is_open() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if state.tokens.accepts(t) => next.run(req).await,
        _ => {
            let mut r = error_body(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required (Authorization: Bearer <token>)",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_accept_only_configured_values() {
        let t = Tokens::new(["alpha-token", " ", "beta-token"]);
        assert!(!t.is_open());
        assert!(t.accepts("alpha-token") && t.accepts("beta-token"));
        assert!(!t.accepts("alpha-toke") && !t.accepts(""));
        assert!(!format!("{t:?}").contains("alpha"));
        assert!(Tokens::new(Vec::<String>::new()).accepts("anything"));
    }
}
