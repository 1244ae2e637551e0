//! Bearer tokens, roles and the audit log of the admin API (issue 13, item 4).
//!
//! Each call needs a role, decided by its method and path alone:
//!
//! | Method | Path                                                  | Role needed |
//! |--------|-------------------------------------------------------|-------------|
//! | `GET`  | `/v1/health`                                          | none (open, for load-balancer probes) |
//! | `GET`  | `/ui`                                                 | none (the dashboard page: static, it holds no data; its API calls need `read`) |
//! | any    | `/v1/failover`, `/v1/members*`, `/v1/snapshot*`, `/v1/backups*` | `admin` (`GET` too: a backup holds all data) |
//! | `GET`, `HEAD` | any other path (`/v1/cluster`, `/v1/metrics`, `/v1/events`, `/v1/failover/history`, `/v1/kv/<key>`, `/v1/state*`, host routes) | `read` |
//! | any other | any other path (KV `PUT`/`DELETE`, `/v1/lock/<name>`, shared state `PUT`/`DELETE`/`POST .../incr`, host routes) | `write` |
//!
//! Each role allows what the roles before it do (`admin` > `write` > `read`). A request carries
//! `Authorization: Bearer TOKEN`. Without a valid token the answer is 401
//! `{"error":"unauthorized",...}` with `WWW-Authenticate: Bearer`; with a token whose role is too
//! low it is 403 `{"error":"forbidden",...}` naming the role needed. A header longer than any
//! token can be is refused without being hashed, and a token is compared with every known
//! digest in constant time ([`AdminTokens::authenticate`]).
//!
//! Audit: every mutating call (any method but `GET` and `HEAD`) and every 401 and 403 logs one
//! INFO line on the tracing target `ha::audit` with the token's `name` (`-` without one), its
//! `role`, the `method`, the `path` (without the query string, which may hold a lock's holder
//! key; at most [`AUDIT_PATH_CHARS_MAX`] characters) and the `status`. Never the token.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::ApiError;
use crate::admin_tokens::{ADMIN_TOKEN_CHARS_MAX, AdminIdentity, AdminRole, AdminTokens};

/// The tracing target of the audit log.
pub const AUDIT_TARGET: &str = "ha::audit";
/// Longest path written to the audit log; a longer one is cut and marked with `…`.
pub const AUDIT_PATH_CHARS_MAX: usize = 256;
/// Longest `Authorization` header that is looked at: `Bearer ` and the longest token.
pub const AUTHORIZATION_BYTES_MAX: usize = ADMIN_TOKEN_CHARS_MAX + BEARER.len();

const BEARER: &str = "Bearer ";

/// Paths where every method needs the admin role.
const ADMIN_PREFIXES: [&str; 3] = ["/v1/members", "/v1/snapshot", "/v1/backups"];

/// The role a call needs; `None`: open to anyone (`GET /v1/health`).
pub fn required_role(method: &Method, path: &str) -> Option<AdminRole> {
    let reads = method == Method::GET || method == Method::HEAD;
    if path == "/v1/failover" || ADMIN_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
        Some(AdminRole::Admin)
    } else if reads && (path == "/v1/health" || path == "/ui") {
        None
    } else if reads {
        Some(AdminRole::Read)
    } else {
        Some(AdminRole::Write)
    }
}

/// What the auth middleware holds: the tokens, or none for audit only.
#[derive(Clone, Debug)]
pub(crate) struct Auth {
    tokens: Option<Arc<AdminTokens>>,
}

impl Auth {
    pub(crate) fn new(tokens: Option<Arc<AdminTokens>>) -> Self {
        Self { tokens }
    }
}

/// Why a request got no identity.
enum Refusal {
    Missing,
    Malformed,
    Unknown,
}

/// The identity the request's bearer token proves, looking at no more than
/// [`AUTHORIZATION_BYTES_MAX`] bytes.
fn identify<'a>(tokens: &'a AdminTokens, request: &Request) -> Result<&'a AdminIdentity, Refusal> {
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if request.headers().contains_key(header::AUTHORIZATION) {
            Refusal::Malformed
        } else {
            Refusal::Missing
        });
    };
    let bytes = value.as_bytes();
    if bytes.len() > AUTHORIZATION_BYTES_MAX || bytes.len() < BEARER.len() {
        return Err(Refusal::Malformed);
    }
    let (scheme, token) = bytes.split_at(BEARER.len());
    if !scheme.eq_ignore_ascii_case(BEARER.as_bytes()) {
        return Err(Refusal::Malformed);
    }
    tokens
        .authenticate(token.trim_ascii())
        .ok_or(Refusal::Unknown)
}

/// The auth layer of the admin API: [`AuthService`] around each route.
///
/// A hand-written tower layer rather than `axum::middleware::from_fn`: `from_fn` clones the
/// route and boxes it again for every request (its `Next`), and boxes a second future. At
/// 64 clients writing over HTTP that machinery was a visible share of the leader's CPU per
/// write (issue 17); this layer calls the route it wraps directly and boxes no future
/// ([`AuthFuture`]).
#[derive(Clone, Debug)]
pub(crate) struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    pub(crate) fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            auth: self.auth.clone(),
            inner,
        }
    }
}

/// One route behind the token check and the audit log (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct AuthService<S> {
    auth: Auth,
    inner: S,
}

/// What is left to do once the call has run: its audit line, for a mutating call.
pub(crate) struct PendingAudit {
    identity: Option<AdminIdentity>,
    method: Method,
    uri: Uri,
}

impl PendingAudit {
    fn log(&self, status: StatusCode) {
        audit(
            self.identity.as_ref(),
            &self.method,
            &audit_path(self.uri.path()),
            status,
        );
    }
}

impl<S> Service<Request> for AuthService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.auth.check(&request) {
            Checked::Refused(refusal) => AuthFuture::Refused(Some(refusal)),
            Checked::Allowed(pending) => AuthFuture::Running {
                call: self.inner.call(request),
                pending,
            },
        }
    }
}

/// The future of one call through [`AuthService`]: the refusal, or the route's own future
/// and the audit line to write once it answers.
///
/// A named future rather than a boxed `async` block (issue 17): axum boxes every route's
/// future once already (`Route`), so a box here was a second allocation, and a move of the
/// route's future into it, per request. The routes axum layers are `Route`s, whose futures
/// are `Unpin`, so this needs no pin projection.
pub(crate) enum AuthFuture<F> {
    /// Answered before the route ran (already audited); `None` once taken.
    Refused(Option<Response>),
    /// The route is running.
    Running {
        call: F,
        pending: Option<PendingAudit>,
    },
}

impl<F> Future for AuthFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            AuthFuture::Refused(refusal) => match refusal.take() {
                Some(refusal) => Poll::Ready(Ok(refusal)),
                None => panic!("AuthFuture polled after it answered"),
            },
            AuthFuture::Running { call, pending } => {
                let Poll::Ready(result) = Pin::new(call).poll(context) else {
                    return Poll::Pending;
                };
                let Ok(response) = result;
                if let Some(pending) = pending.take() {
                    pending.log(response.status());
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// The outcome of the check before a call.
enum Checked {
    /// The answer to send instead of running the call (already audited).
    Refused(Response),
    /// Run the call; then write this audit line (`None` for a read, which is not audited).
    Allowed(Option<PendingAudit>),
}

impl Auth {
    /// The check before the call (see [`Checked`]).
    fn check(&self, request: &Request) -> Checked {
        let method = request.method();
        let mutating = !(method == Method::GET || method == Method::HEAD);
        let needed = required_role(method, request.uri().path());
        // The URI is reference-counted: keeping it for the audit line copies no bytes.
        let pending = |identity: Option<&AdminIdentity>| {
            mutating.then(|| PendingAudit {
                identity: identity.cloned(),
                method: method.clone(),
                uri: request.uri().clone(),
            })
        };
        let (Some(tokens), Some(needed)) = (self.tokens.as_deref(), needed) else {
            // No tokens (the host guards the API) or an open path: audit only.
            return Checked::Allowed(pending(None));
        };
        let identity = match identify(tokens, request) {
            Ok(identity) => identity,
            Err(refusal) => {
                let message = match refusal {
                    Refusal::Missing => format!(
                        "this call needs a bearer token with role {needed} or higher: send \
                         `Authorization: Bearer <token>`"
                    ),
                    Refusal::Malformed => format!(
                        "send one `Authorization: Bearer <token>` header (a token of at most \
                         {ADMIN_TOKEN_CHARS_MAX} characters)"
                    ),
                    Refusal::Unknown => "the bearer token is not known to this node".to_string(),
                };
                let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                audit(
                    None,
                    method,
                    &audit_path(request.uri().path()),
                    response.status(),
                );
                return Checked::Refused(response);
            }
        };
        if !identity.role.allows(needed) {
            let path = audit_path(request.uri().path());
            let response = ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} has role {}; {method} {path} needs role {needed}",
                    identity.name, identity.role
                ),
            )
            .into_response();
            audit(Some(identity), method, &path, response.status());
            return Checked::Refused(response);
        }
        Checked::Allowed(pending(Some(identity)))
    }
}

/// `path` cut to [`AUDIT_PATH_CHARS_MAX`] characters (borrowed when it is short enough, as
/// nearly every path is: no copy per audited call).
fn audit_path(path: &str) -> Cow<'_, str> {
    match path.char_indices().nth(AUDIT_PATH_CHARS_MAX) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &path[..cut])),
        None => Cow::Borrowed(path),
    }
}

fn audit(identity: Option<&AdminIdentity>, method: &Method, path: &str, status: StatusCode) {
    let (name, role) = match identity {
        Some(identity) => (identity.name.as_str(), identity.role.as_str()),
        None => ("-", "-"),
    };
    tracing::info!(
        target: AUDIT_TARGET,
        name,
        role,
        method = %method,
        path,
        status = status.as_u16(),
        "admin call"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_table() {
        let read = Some(AdminRole::Read);
        let write = Some(AdminRole::Write);
        let admin = Some(AdminRole::Admin);
        let cases = [
            (Method::GET, "/v1/health", None),
            (Method::HEAD, "/v1/health", None),
            (Method::POST, "/v1/health", write),
            (Method::GET, "/ui", None),
            (Method::HEAD, "/ui", None),
            (Method::POST, "/ui", write),
            (Method::GET, "/ui/other", read),
            (Method::GET, "/v1/cluster", read),
            (Method::GET, "/v1/metrics", read),
            (Method::GET, "/v1/events", read),
            (Method::GET, "/v1/failover/history", read),
            (Method::POST, "/v1/failover", admin),
            (Method::GET, "/v1/failover", admin),
            (Method::GET, "/v1/kv/a", read),
            (Method::HEAD, "/v1/kv/a", read),
            (Method::PUT, "/v1/kv/a", write),
            (Method::DELETE, "/v1/kv/a", write),
            (Method::POST, "/v1/lock/a", write),
            (Method::DELETE, "/v1/lock/a", write),
            (Method::GET, "/v1/members", admin),
            (Method::POST, "/v1/members/n4", admin),
            (Method::GET, "/v1/snapshot", admin),
            (Method::GET, "/v1/backups/latest", admin),
            (Method::GET, "/journal", read),
            (Method::POST, "/journal", write),
            (Method::OPTIONS, "/v1/kv/a", write),
        ];
        for (method, path, needed) in cases {
            assert_eq!(required_role(&method, path), needed, "{method} {path}");
        }
    }

    #[test]
    fn audit_paths_are_bounded() {
        assert_eq!(audit_path("/v1/kv/a"), "/v1/kv/a");
        let long = format!("/v1/kv/{}", "x".repeat(10_000));
        let cut = audit_path(&long);
        assert_eq!(cut.chars().count(), AUDIT_PATH_CHARS_MAX + 1);
        assert!(cut.ends_with('…'));
    }
}
