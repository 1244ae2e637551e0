//! `POST` and `DELETE /v1/lock/<name>`.
//!
//! An HTTP client cannot renew a lease, so a lock taken here lasts until it is released with
//! its token and holder key or until its TTL runs out, whichever comes first. Each acquire
//! gets its own session, so two HTTP clients never pass for one holder.
//!
//! The fencing token is a log index, so it is guessable (`/v1/metrics` shows the commit
//! index); a release therefore also needs the grant's `holder` key: 128 bits from a CSPRNG
//! ([`ha_lock::new_holder_key`]), returned as 32 lowercase hex digits by the acquire. The
//! replicated state keeps only its SHA-256, with the wait and then with the grant, and every
//! replica checks a release against it when applying it (issue 13).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ha_core::StateMachine;
use ha_lock::{
    FencingToken, HOLDER_KEY_BYTES, HolderKey, LEASE_TTL_MIN, LeaseId, Session, new_holder_key,
};
use serde::{Deserialize, Serialize};

use super::kv_routes::{params, path_text};
use super::{ApiError, ApiState};

/// Longest lease an HTTP client may take.
pub const HTTP_LOCK_TTL_MS_MAX: u64 = 3_600_000;
/// Longest an HTTP client may wait for a lock.
pub const HTTP_LOCK_WAIT_MS_MAX: u64 = 60_000;
const HTTP_LOCK_TTL_MS_DEFAULT: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireParams {
    ttl_ms: Option<u64>,
    wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseParams {
    token: Option<u64>,
    holder: Option<String>,
}

#[derive(Serialize)]
struct Granted {
    // Transparent newtypes: the body still reads `"token": 7, "lease": 6`.
    token: FencingToken,
    lease: LeaseId,
    ttl_ms: u64,
    /// The holder key, 32 lowercase hex digits.
    holder: String,
}

#[derive(Serialize)]
struct Released {
    released: bool,
}

/// Acquire `name` under a new lease of `ttl_ms` (default 10 s), waiting up to `wait_ms`
/// (default 0: fail at once when held), with a fresh holder key. 200
/// `{token, lease, ttl_ms, holder}`; 409 when not granted in time or waiting would deadlock.
pub(crate) async fn acquire<S: StateMachine>(
    State(state): State<ApiState<S>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<AcquireParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path_text(name)?;
    let params = params(query)?;
    let ttl_ms = params.ttl_ms.unwrap_or(HTTP_LOCK_TTL_MS_DEFAULT);
    let ttl_min_ms = LEASE_TTL_MIN.as_millis() as u64;
    if !(ttl_min_ms..=HTTP_LOCK_TTL_MS_MAX).contains(&ttl_ms) {
        return Err(ApiError::bad_request(format!(
            "ttl_ms must be {ttl_min_ms} to {HTTP_LOCK_TTL_MS_MAX}"
        )));
    }
    let wait_ms = params.wait_ms.unwrap_or(0);
    if wait_ms > HTTP_LOCK_WAIT_MS_MAX {
        return Err(ApiError::bad_request(format!(
            "wait_ms must be at most {HTTP_LOCK_WAIT_MS_MAX}"
        )));
    }
    let node = state.data_node()?;
    // A node cut off from the majority answers 503 `no_quorum` at once (fail_fast), so the
    // HTTP client can try another node; the lease is not renewed over HTTP anyway.
    let replica = &node.shared.replica;
    let client =
        Session::with_renewal_client(replica.client().fail_fast(), replica.client()).locks();
    let ttl = Duration::from_millis(ttl_ms);
    let holder_key = new_holder_key();
    let guard = if wait_ms == 0 {
        client
            .try_acquire_with_holder(name, ttl, holder_key)
            .await?
    } else {
        client
            .acquire_with_holder(name, ttl, Duration::from_millis(wait_ms), holder_key)
            .await?
    };
    let (token, lease) = guard.detach();
    Ok(Json(Granted {
        token,
        lease,
        ttl_ms,
        holder: holder_hex(&holder_key),
    })
    .into_response())
}

/// `key` as 32 lowercase hex digits.
fn holder_hex(key: &HolderKey) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * HOLDER_KEY_BYTES);
    for byte in key {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// The holder key written as 32 hex digits (either case); `None` for anything else.
fn parse_holder(text: &str) -> Option<HolderKey> {
    let digits = text.as_bytes();
    if digits.len() != 2 * HOLDER_KEY_BYTES {
        return None;
    }
    let mut key = [0u8; HOLDER_KEY_BYTES];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).ok()?;
    }
    Some(key)
}

/// 409 `not_holder` for a release whose `holder` is missing or not 32 hex digits: refused
/// before anything is proposed, so nothing changed.
fn holder_refused(name: &str, problem: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_holder",
        format!(
            "releasing lock {name:?} needs holder=HEX, the 32 hex digits its acquire returned; \
             {problem}; nothing changed"
        ),
    )
}

/// Release `name` if `token` holds it and `holder` is the key it was granted with, ending the
/// lease the acquire granted for it, in one replicated write: 200; 409
/// `not_holder` when the token does not hold it (released, expired or passed on) or the holder
/// key is missing, malformed or wrong, and then nothing changed; 400 without a token.
pub(crate) async fn release<S: StateMachine>(
    State(state): State<ApiState<S>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<ReleaseParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path_text(name)?;
    let params = params(query)?;
    let token = params
        .token
        .ok_or_else(|| ApiError::bad_request("token=N is required"))?;
    let holder_key = match params.holder.as_deref() {
        None => return Err(holder_refused(&name, "none was given")),
        Some(text) => parse_holder(text)
            .ok_or_else(|| holder_refused(&name, "the one given is not 32 hex digits"))?,
    };
    let node = state.data_node()?;
    let client = node.http_locks();
    // One write releases the lock and ends the lease its acquire granted for it (an HTTP
    // lease exists for its lock alone: no route binds keys or other locks to it), so the lease
    // does not linger, counting against `LEASES_MAX`, until its TTL runs out.
    client
        .release_ending_lease(&name, FencingToken(token), Some(&holder_key))
        .await?;
    Ok(Json(Released { released: true }).into_response())
}

#[cfg(test)]
mod tests {
    use super::{holder_hex, parse_holder};

    #[test]
    fn holder_keys_round_trip_as_32_lowercase_hex_digits() {
        let key = [
            0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 9, 10, 11, 12, 13, 14, 15, 16,
        ];
        let text = holder_hex(&key);
        assert_eq!(text, "00017f80abcdefff090a0b0c0d0e0f10");
        assert_eq!(parse_holder(&text), Some(key));
        assert_eq!(parse_holder(&text.to_uppercase()), Some(key));
        let fresh = ha_lock::new_holder_key();
        assert_eq!(parse_holder(&holder_hex(&fresh)), Some(fresh));
    }

    #[test]
    fn malformed_holder_keys_are_refused() {
        let good = "00017f80abcdefff090a0b0c0d0e0f10";
        for bad in [
            "",
            &good[..31],
            &good[..30],
            &format!("{good}0"),
            &format!("{good}00"),
            "g0017f80abcdefff090a0b0c0d0e0f10",
            "+0017f80abcdefff090a0b0c0d0e0f10",
            " 0017f80abcdefff090a0b0c0d0e0f10",
            "00017f80abcdefff090a0b0c0d0e0f\u{e9}",
        ] {
            assert_eq!(parse_holder(bad), None, "{bad:?}");
        }
    }
}
