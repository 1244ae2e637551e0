//! `bot members list|add|remove --http ADDR`: the membership API of a node's admin HTTP API
//! (`GET`/`POST /v1/members`, `DELETE /v1/members/<id>`, role `admin`).
//!
//! ```text
//!   bot members add --http N1 --id n4 --addr 127.0.0.1:7104 --voter
//!     ──POST /v1/members {"id":"n4","addr":"127.0.0.1:7104","voter":true}──▶ any node
//!                                           (a follower forwards to the leader)
//!   added n4: voter (index 12)                       exit 0
//!   bot: error: members: refused (would_rejoin): ... exit 1, nothing changed
//! ```
//!
//! Everything in an answer came from the network: bodies are read up to
//! [`RESPONSE_BYTES_MAX`], must have the documented shape, and texts printed are stripped of
//! control characters and cut to [`TEXT_CHARS_MAX`].

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::admin_client::{self, AdminClient};
use crate::cli::{AdminArgs, MembersArgs, MembersCommand};
use crate::error::BotError;

/// The longest wait for one request: an add with --voter waits on the node for the
/// promotion (the node's request timeout, 5 s by default), so this is longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body read.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// The most characters printed from any one text that came from the network.
const TEXT_CHARS_MAX: usize = 256;

/// One member in `GET /v1/members`.
#[derive(Debug, Deserialize)]
struct Member {
    id: String,
    #[serde(default)]
    addr: Option<String>,
}

/// The body of `GET /v1/members`.
#[derive(Debug, Deserialize)]
struct MemberList {
    voters: Vec<Member>,
    learners: Vec<Member>,
    #[serde(default)]
    witnesses: Vec<Member>,
}

/// The body of `POST /v1/members` on success.
#[derive(Debug, Deserialize)]
struct Added {
    id: String,
    state: String,
    index: u64,
    #[serde(default)]
    promotion_pending: bool,
}

/// The body of `DELETE /v1/members/<id>` on success.
#[derive(Debug, Deserialize)]
struct Removed {
    id: String,
    index: u64,
    #[serde(default)]
    committed: bool,
}

/// An error body: `{"error","reason"?,"message"}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: String,
}

/// Run `bot members ...` and print its result.
///
/// # Errors
/// [`BotError::AdminClient`] (exit code 2) for an unusable address, CA file or token, before
/// anything is contacted; [`BotError::AdminDenied`] for 401/403; [`BotError::Members`] (exit
/// code 1) when the node cannot be reached, refuses the change (with its reason) or answers
/// badly.
pub fn run(args: &MembersArgs) -> Result<(), BotError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BotError::Runtime)?;
    let text: Result<String, BotError> = runtime.block_on(async {
        match &args.command {
            MembersCommand::List(admin) => {
                let (client, url) = client_and_url(admin, "/v1/members")?;
                let body = answer(client.get(&url), &url).await?;
                let list: MemberList = parse(&body, &url)?;
                Ok(render_list(&list))
            }
            MembersCommand::Add(add) => {
                let (client, url) = client_and_url(&add.admin, "/v1/members")?;
                let request = json!({
                    "id": add.id.as_str(),
                    "addr": add.addr.map(|addr| addr.to_string()),
                    "voter": add.voter,
                });
                let body = answer(client.post(&url).json(&request), &url).await?;
                let added: Added = parse(&body, &url)?;
                let pending = if added.promotion_pending {
                    "; promotion to voter pending: the leader promotes it once it has caught up"
                } else {
                    ""
                };
                Ok(format!(
                    "added {}: {} (index {}){pending}\n",
                    sanitize(&added.id),
                    sanitize(&added.state),
                    added.index
                ))
            }
            MembersCommand::Remove(remove) => {
                let path = format!("/v1/members/{}", remove.id.as_str());
                let (client, url) = client_and_url(&remove.admin, &path)?;
                let body = answer(client.delete(&url), &url).await?;
                let removed: Removed = parse(&body, &url)?;
                let committed = if removed.committed {
                    ""
                } else {
                    "; not yet seen committed by the node asked"
                };
                Ok(format!(
                    "removed {} (index {}){committed}\n",
                    sanitize(&removed.id),
                    removed.index
                ))
            }
        }
    });
    print!("{}", text?);
    Ok(())
}

fn client_and_url(admin: &AdminArgs, path: &str) -> Result<(AdminClient, String), BotError> {
    let client = AdminClient::new(
        admin.tls_ca.as_deref(),
        admin.token.as_deref(),
        REQUEST_TIMEOUT,
    )?;
    let url = client.url(&admin.http, path).map_err(|reason| {
        BotError::AdminClient(format!(
            "members: --http {:?} is not a host:port address: {reason}",
            sanitize(&admin.http)
        ))
    })?;
    Ok((client, url))
}

/// Send `request` and return the body of a 2xx answer (at most [`RESPONSE_BYTES_MAX`]).
async fn answer(request: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, BotError> {
    let mut response = request.send().await.map_err(|error| {
        BotError::Members(format!(
            "cannot reach {url}: {}. Is a node serving its admin HTTP API there?",
            sanitize(&error.to_string())
        ))
    })?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| BotError::Members(format!("{url}: the answer broke off: {error}")))?
    {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(BotError::Members(format!(
                "{url} answered more than {RESPONSE_BYTES_MAX} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if status.is_success() {
        return Ok(body);
    }
    let error: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let message = error
        .as_ref()
        .map(|error| sanitize(&error.message))
        .unwrap_or_default();
    if let Some(denied) = admin_client::denied(url, status, &message) {
        return Err(denied);
    }
    Err(BotError::Members(match error {
        Some(ErrorBody {
            error,
            reason: Some(reason),
            ..
        }) if error == "membership_refused" => {
            format!(
                "refused ({}): {message}; nothing changed",
                sanitize(&reason)
            )
        }
        Some(error) => format!(
            "{url} answered HTTP {}: {}: {message}",
            status.as_u16(),
            sanitize(&error.error)
        ),
        None => format!(
            "{url} answered HTTP {} without a JSON error",
            status.as_u16()
        ),
    }))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], url: &str) -> Result<T, BotError> {
    serde_json::from_slice(body)
        .map_err(|error| BotError::Members(format!("{url} answered badly: {error}")))
}

/// `ROLE ID ADDR`, one member a line.
fn render_list(list: &MemberList) -> String {
    let mut text = format!("{:<8} {:<24} {}\n", "ROLE", "ID", "ADDR");
    let rows = [
        ("voter", &list.voters),
        ("learner", &list.learners),
        ("witness", &list.witnesses),
    ];
    for (role, members) in rows {
        for member in members {
            let addr = member.addr.as_deref().map(sanitize);
            let _ = writeln!(
                text,
                "{role:<8} {:<24} {}",
                sanitize(&member.id),
                addr.as_deref().unwrap_or("-")
            );
        }
    }
    text
}

/// `text` without control characters, cut to [`TEXT_CHARS_MAX`] characters.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|character| !character.is_control())
        .take(TEXT_CHARS_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_prints_one_member_a_line_with_its_role() {
        let list: MemberList = serde_json::from_str(
            r#"{"voters":[{"id":"n1","addr":"127.0.0.1:7101"},{"id":"n2","addr":null}],
                "learners":[{"id":"n4","addr":"127.0.0.1:7104"}],"witnesses":[]}"#,
        )
        .unwrap();
        assert_eq!(
            render_list(&list),
            "ROLE     ID                       ADDR\n\
             voter    n1                       127.0.0.1:7101\n\
             voter    n2                       -\n\
             learner  n4                       127.0.0.1:7104\n"
        );
    }

    #[test]
    fn texts_from_the_network_lose_control_characters_and_are_cut() {
        assert_eq!(sanitize("n1\u{1b}[2J\n"), "n1[2J");
        assert_eq!(sanitize(&"x".repeat(1000)).len(), TEXT_CHARS_MAX);
    }
}
