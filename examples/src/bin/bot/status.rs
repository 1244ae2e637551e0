//! `bot status --http ADDR`: the cluster table, read from `GET /v1/cluster` on a node's admin
//! HTTP API (docs/ARCHITECTURE.md, "Admin HTTP contract").
//!
//! ```text
//!   bot status ──GET /v1/cluster──▶ any node ──(not the leader? its row names the leader's
//!       │                                       http address)
//!       └──────GET /v1/cluster──▶ the leader (once), so MATCH, LAG and CONTACT are filled
//! ```
//!
//! Everything in the answer came from the network, so it is checked before use: the body is
//! at most [`RESPONSE_BYTES_MAX`], the JSON must have the documented shape, and every text
//! printed is stripped of control characters and cut to [`CELL_CHARS_MAX`].

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::admin_client::{self, AdminClient};
use crate::cli::StatusArgs;
use crate::error::BotError;

/// The longest wait for one request, connection and body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response body read. A cluster table of a few hundred members is far smaller;
/// the limit also bounds how many rows are printed.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// The most characters printed from any one text that came from the network.
const CELL_CHARS_MAX: usize = 64;

/// The body of `GET /v1/cluster`. Fields the table does not use are ignored, so a newer node
/// with more fields still answers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClusterView {
    /// The leader's id, if the answering node knows one.
    pub leader: Option<String>,
    /// The current term.
    pub term: u64,
    /// The commit index as the answering node knows it.
    pub commit_index: u64,
    /// The id of the node that answered, when the node reports it.
    #[serde(default)]
    pub answered_by: Option<String>,
    /// One row per member.
    pub members: Vec<MemberView>,
}

/// One member in [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MemberView {
    /// The member's id.
    pub id: String,
    /// Its gossip and RPC address (`null` when only the replicated configuration knows it).
    #[serde(default)]
    pub addr: Option<String>,
    /// Its admin HTTP address, if it serves one.
    #[serde(default)]
    pub http: Option<String>,
    /// Its leadership priority.
    pub priority: u32,
    /// Its replication role (`leader`, `follower`, `learner`, `none`, ...).
    pub role: String,
    /// The state it advertises (`ACTIVE`, `LEADER`, `UNREACHABLE`, ...).
    pub state: String,
    /// Its health (`HEALTHY`, `DEGRADED`, `UNHEALTHY`, `UNKNOWN`).
    pub health: String,
    /// Highest log index known replicated on it (only the leader knows).
    #[serde(default)]
    pub match_index: Option<u64>,
    /// Entries it is behind the leader's log (only the leader knows).
    #[serde(default)]
    pub lag_entries: Option<u64>,
    /// Milliseconds since it last answered the leader (only the leader knows).
    #[serde(default)]
    pub last_contact_ms: Option<u64>,
    /// How the leader is bringing it up to date when it is far behind (only the leader
    /// knows; absent from older nodes).
    #[serde(default)]
    pub catch_up: Option<CatchUpView>,
}

/// A member's `catch_up` in [`MemberView`]: a snapshot streaming to it, or stalled.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CatchUpView {
    /// `snapshot` or `stalled` (another word from a newer node is printed as it is).
    pub state: String,
    /// Snapshot bytes the follower acknowledged.
    #[serde(default)]
    pub sent_bytes: u64,
    /// The snapshot's size in bytes (0 when none is being sent).
    #[serde(default)]
    pub total_bytes: u64,
    /// Why it is stalled, if it is.
    #[serde(default)]
    pub reason: Option<String>,
    /// Milliseconds since it last made progress.
    #[serde(default)]
    pub since_progress_ms: u64,
}

/// The error body every admin endpoint uses (docs/ARCHITECTURE.md, "Admin HTTP contract").
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

/// Print the cluster table of the node at `args.http`, asked again of the leader when
/// another node answered.
///
/// # Errors
/// [`BotError::StatusAddress`] (exit code 2) when `args.http` is not `host:port`, before
/// anything is contacted; [`BotError::StatusUnreachable`] or [`BotError::StatusResponse`]
/// (exit code 1) when the first node cannot be reached or does not answer with a cluster
/// table. A leader that cannot be reached is not an error: the first answer is printed, with
/// a note.
pub fn run(args: &StatusArgs) -> Result<(), BotError> {
    print!(
        "{}",
        status_report(&args.http, args.tls_ca.as_deref(), args.token.as_deref())?
    );
    Ok(())
}

/// The text `run` prints.
fn status_report(
    asked: &str,
    tls_ca: Option<&Path>,
    token: Option<&str>,
) -> Result<String, BotError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BotError::Runtime)?;
    runtime.block_on(async {
        let client = AdminClient::new(tls_ca, token, REQUEST_TIMEOUT)?;
        let url = cluster_url(&client, asked)?;
        report_from(&client, asked, &url).await
    })
}

async fn report_from(client: &AdminClient, asked: &str, url: &str) -> Result<String, BotError> {
    let first = fetch_cluster(client, url).await?;
    let first_answerer = describe_answerer(&first, asked);
    let Some(leader_http) = leader_to_ask(&first, asked) else {
        return Ok(render_table(&first, &first_answerer));
    };
    // One more request at most: the leader's answer is printed whatever it says.
    let leader_result = match cluster_url(client, &leader_http) {
        Ok(leader_url) => fetch_cluster(client, &leader_url).await,
        Err(error) => Err(error),
    };
    match leader_result {
        Ok(view) => {
            let answerer = format!(
                "{}, after {first_answerer} named it leader",
                describe_answerer(&view, &leader_http)
            );
            Ok(render_table(&view, &answerer))
        }
        Err(error) => {
            let reason = match &error {
                BotError::StatusAddress { reason, .. }
                | BotError::StatusUnreachable { reason, .. }
                | BotError::StatusResponse { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            let mut text = render_table(&first, &first_answerer);
            let _ = writeln!(
                text,
                "note: the leader's table at {} could not be read: {}",
                sanitize(&leader_http, CELL_CHARS_MAX),
                sanitize(&reason, 4 * CELL_CHARS_MAX)
            );
            Ok(text)
        }
    }
}

/// `SCHEME://ADDR/v1/cluster`, once `addr` is checked to be `host:port` and nothing more.
fn cluster_url(client: &AdminClient, addr: &str) -> Result<String, BotError> {
    client
        .url(addr, "/v1/cluster")
        .map_err(|reason| BotError::StatusAddress {
            addr: sanitize(addr, 4 * CELL_CHARS_MAX),
            reason,
        })
}

/// Read `url` as a [`ClusterView`]: 200 and valid JSON, at most [`RESPONSE_BYTES_MAX`] bytes.
async fn fetch_cluster(client: &AdminClient, url: &str) -> Result<ClusterView, BotError> {
    let unreachable = |error: reqwest::Error| {
        let mut reason = error_chain(&error);
        if client.scheme() == "https" && reason.contains("certificate") {
            reason.push_str(
                "; check that --tls-ca is the cluster's ca.pem and that the host in the \
                 address is a name in the node's certificate (`bot certs init --host`)",
            );
        }
        BotError::StatusUnreachable {
            url: url.to_string(),
            reason,
        }
    };
    let bad = |reason: String| BotError::StatusResponse {
        url: url.to_string(),
        reason,
    };
    let mut response = client.get(url).send().await.map_err(unreachable)?;
    let status = response.status();
    if let Some(length) = response.content_length()
        && length > RESPONSE_BYTES_MAX as u64
    {
        return Err(bad(format!(
            "the body is {length} bytes; the limit is {RESPONSE_BYTES_MAX}"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(bad(format!(
                "the body is over the limit of {RESPONSE_BYTES_MAX} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if status != reqwest::StatusCode::OK {
        let error_body = serde_json::from_slice::<ErrorBody>(&body).ok();
        let message = error_body.as_ref().map_or_else(String::new, |error| {
            sanitize(&error.message, 4 * CELL_CHARS_MAX)
        });
        if let Some(denied) = admin_client::denied(url, status, &message) {
            return Err(denied);
        }
        let detail = error_body
            .map(|error| {
                format!(
                    ": {}: {}",
                    sanitize(&error.error, CELL_CHARS_MAX),
                    sanitize(&error.message, 4 * CELL_CHARS_MAX)
                )
            })
            .unwrap_or_default();
        return Err(bad(format!("HTTP {status}{detail}")));
    }
    serde_json::from_slice(&body).map_err(|error| bad(format!("not a cluster table: {error}")))
}

/// The error and its causes on one line ("... : tcp connect error: Connection refused").
fn error_chain(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    // The URL is already in the message around this text.
    let mut text = error.to_string().replace(
        &error
            .url()
            .map(|url| format!(" for url ({url})"))
            .unwrap_or_default(),
        "",
    );
    let mut source = std::error::Error::source(error);
    // Causes nest a few levels deep; the limit only guards against a cycle.
    for _ in 0..8 {
        let Some(cause) = source else { break };
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The id of the node that answered, if the view says or its http address gives it away.
fn answering_node<'view>(view: &'view ClusterView, asked: &str) -> Option<&'view str> {
    view.answered_by.as_deref().or_else(|| {
        view.members
            .iter()
            .find(|member| member.http.as_deref() == Some(asked))
            .map(|member| member.id.as_str())
    })
}

/// "n2 at 127.0.0.1:8102", or the address alone when the answering node is unknown.
fn describe_answerer(view: &ClusterView, asked: &str) -> String {
    let asked = sanitize(asked, CELL_CHARS_MAX);
    match answering_node(view, &asked) {
        Some(id) => format!("{} at {asked}", sanitize(id, CELL_CHARS_MAX)),
        None => asked,
    }
}

/// The leader's admin HTTP address, when the answer came from another node and the leader
/// advertises one.
fn leader_to_ask(view: &ClusterView, asked: &str) -> Option<String> {
    let leader = view.leader.as_deref()?;
    if answering_node(view, asked) == Some(leader) {
        return None;
    }
    // Only the leader fills the replication columns: if they are there, it answered.
    if view
        .members
        .iter()
        .any(|member| member.lag_entries.is_some())
    {
        return None;
    }
    let http = view
        .members
        .iter()
        .find(|member| member.id == leader)?
        .http
        .as_deref()?;
    (http != asked).then(|| http.to_string())
}

/// `text` without control characters (a peer could send terminal escapes), cut to
/// `chars_max` characters.
fn sanitize(text: &str, chars_max: usize) -> String {
    let mut clean: String = text
        .chars()
        .filter(|character| !character.is_control())
        .take(chars_max + 1)
        .collect();
    if clean.chars().count() > chars_max {
        clean = clean.chars().take(chars_max.saturating_sub(1)).collect();
        clean.push('…');
    }
    clean
}

/// Bytes as MiB with one decimal.
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// One line on how the leader is bringing a follower up to date.
fn describe_catch_up(catch_up: &CatchUpView) -> String {
    let since = catch_up.since_progress_ms;
    match catch_up.state.as_str() {
        "snapshot" => format!(
            "receiving a snapshot, {} of {} acknowledged, last progress {since} ms ago",
            mebibytes(catch_up.sent_bytes),
            mebibytes(catch_up.total_bytes)
        ),
        "stalled" => format!(
            "STALLED, no progress for {since} ms: {}",
            catch_up.reason.as_deref().map_or_else(
                || "no reason given".to_string(),
                |reason| sanitize(reason, 4 * CELL_CHARS_MAX)
            )
        ),
        other => format!(
            "catch-up {}, last progress {since} ms ago",
            sanitize(other, CELL_CHARS_MAX)
        ),
    }
}

fn number_or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}

/// The header line, the table (leader marked `*`), and notes on what is missing.
fn render_table(cluster: &ClusterView, answered_by: &str) -> String {
    const HEADINGS: [&str; 10] = [
        "",
        "ID",
        "ADDR",
        "PRIORITY",
        "ROLE",
        "STATE",
        "HEALTH",
        "MATCH",
        "LAG",
        "CONTACT(ms)",
    ];
    let leader = cluster.leader.as_deref();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "leader {}, term {}, commit index {} (answered by {})",
        leader.map_or_else(|| "none".to_string(), |id| sanitize(id, CELL_CHARS_MAX)),
        cluster.term,
        cluster.commit_index,
        answered_by
    );

    let mut rows: Vec<[String; 10]> = vec![HEADINGS.map(str::to_string)];
    for member in &cluster.members {
        let is_leader = leader == Some(member.id.as_str());
        rows.push([
            if is_leader { "*" } else { "" }.to_string(),
            sanitize(&member.id, CELL_CHARS_MAX),
            member
                .addr
                .as_deref()
                .map_or_else(|| "-".to_string(), |addr| sanitize(addr, CELL_CHARS_MAX)),
            member.priority.to_string(),
            sanitize(&member.role, CELL_CHARS_MAX),
            sanitize(&member.state, CELL_CHARS_MAX),
            sanitize(&member.health, CELL_CHARS_MAX),
            number_or_dash(member.match_index),
            number_or_dash(member.lag_entries),
            number_or_dash(member.last_contact_ms),
        ]);
    }
    let mut widths = [0usize; 10];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<width$}");
        }
        let _ = writeln!(text, "{}", line.trim_end());
    }

    for member in &cluster.members {
        if let Some(catch_up) = &member.catch_up {
            let _ = writeln!(
                text,
                "{}: {}",
                sanitize(&member.id, CELL_CHARS_MAX),
                describe_catch_up(catch_up)
            );
        }
    }
    match leader {
        Some(id) if cluster.members.iter().any(|member| member.id == id) => {
            text.push_str("* leader\n");
        }
        Some(id) => {
            let _ = writeln!(
                text,
                "note: the leader {} is not in the member list",
                sanitize(id, CELL_CHARS_MAX)
            );
        }
        None => text.push_str("note: no leader is known; writes wait until one is elected\n"),
    }
    if leader.is_some()
        && cluster
            .members
            .iter()
            .all(|member| member.lag_entries.is_none())
    {
        text.push_str(
            "note: MATCH, LAG and CONTACT come only from the leader; this answer is not the \
             leader's\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Instant;

    use super::*;

    fn member(id: &str, role: &str, state: &str) -> MemberView {
        MemberView {
            id: id.to_string(),
            addr: Some(format!("127.0.0.1:710{}", &id[1..])),
            http: Some(format!("127.0.0.1:810{}", &id[1..])),
            priority: 10,
            role: role.to_string(),
            state: state.to_string(),
            health: "HEALTHY".to_string(),
            match_index: None,
            lag_entries: None,
            last_contact_ms: None,
            catch_up: None,
        }
    }

    /// The cluster as its leader n1 reports it.
    fn leader_view() -> ClusterView {
        let mut n1 = member("n1", "leader", "LEADER");
        (n1.match_index, n1.lag_entries, n1.last_contact_ms) = (Some(20), Some(0), Some(0));
        let mut n2 = member("n2", "follower", "ACTIVE");
        (n2.match_index, n2.lag_entries, n2.last_contact_ms) = (Some(18), Some(2), Some(12));
        let mut n3 = member("n3", "follower", "UNREACHABLE");
        (n3.addr, n3.http, n3.priority) = (None, None, 1);
        n3.health = "UNKNOWN".to_string();
        ClusterView {
            leader: Some("n1".to_string()),
            term: 4,
            commit_index: 19,
            answered_by: Some("n1".to_string()),
            members: vec![n1, n2, n3],
        }
    }

    /// The same cluster as follower n2 reports it: no replication columns.
    fn follower_view() -> ClusterView {
        let mut view = leader_view();
        view.answered_by = Some("n2".to_string());
        for member in &mut view.members {
            (
                member.match_index,
                member.lag_entries,
                member.last_contact_ms,
            ) = (None, None, None);
        }
        view
    }

    #[test]
    fn the_table_marks_the_leader_and_aligns_columns() {
        let expected = "\
leader n1, term 4, commit index 19 (answered by n1 at 127.0.0.1:8101)
   ID  ADDR            PRIORITY  ROLE      STATE        HEALTH   MATCH  LAG  CONTACT(ms)
*  n1  127.0.0.1:7101  10        leader    LEADER       HEALTHY  20     0    0
   n2  127.0.0.1:7102  10        follower  ACTIVE       HEALTHY  18     2    12
   n3  -               1         follower  UNREACHABLE  UNKNOWN  -      -    -
* leader
";
        assert_eq!(
            render_table(&leader_view(), "n1 at 127.0.0.1:8101"),
            expected
        );
    }

    /// A follower being brought up to date gets a line under the table (the columns stay as
    /// they were, for scripts that read them).
    #[test]
    fn catch_up_states_are_printed_under_the_table() {
        let mut view = leader_view();
        view.members[1].catch_up = Some(CatchUpView {
            state: "snapshot".to_string(),
            sent_bytes: 4 * 1024 * 1024,
            total_bytes: 60_111_763,
            reason: None,
            since_progress_ms: 40,
        });
        view.members[2].catch_up = Some(CatchUpView {
            state: "stalled".to_string(),
            sent_bytes: 0,
            total_bytes: 0,
            reason: Some("no snapshot to send\u{1b}[2J".to_string()),
            since_progress_ms: 12_000,
        });
        let text = render_table(&view, "n1 at 127.0.0.1:8101");
        let expected_tail = "\
   n3  -               1         follower  UNREACHABLE  UNKNOWN  -      -    -
n2: receiving a snapshot, 4.0 MiB of 57.3 MiB acknowledged, last progress 40 ms ago
n3: STALLED, no progress for 12000 ms: no snapshot to send[2J
* leader
";
        assert!(text.ends_with(expected_tail), "{text}");
        let json = r#"{"id": "n2", "priority": 0, "role": "follower", "state": "ACTIVE",
            "health": "HEALTHY", "catch_up": {"state": "stalled", "sent_bytes": 0,
            "total_bytes": 0, "reason": "r", "since_progress_ms": 5}}"#;
        let member: MemberView = serde_json::from_str(json).expect("parses");
        assert_eq!(
            member.catch_up.map(|catch_up| catch_up.reason),
            Some(Some("r".to_string()))
        );
    }

    #[test]
    fn a_follower_table_says_what_it_lacks() {
        let text = render_table(&follower_view(), "n2 at 127.0.0.1:8102");
        assert!(
            text.contains("(answered by n2 at 127.0.0.1:8102)"),
            "{text}"
        );
        assert!(text.contains("come only from the leader"), "{text}");
        let mut leaderless = follower_view();
        leaderless.leader = None;
        let text = render_table(&leaderless, "n2");
        assert!(text.starts_with("leader none,"), "{text}");
        assert!(text.contains("no leader is known"), "{text}");
        assert!(!text.contains('*'), "{text}");
    }

    #[test]
    fn text_from_the_network_is_cleaned_and_bounded() {
        let mut view = leader_view();
        view.members[1].role = "fol\u{1b}[31mlower".to_string();
        view.members[1].state = "X".repeat(500);
        let text = render_table(&view, "n1");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("fol[31mlower"), "{text}");
        assert!(
            text.lines().all(|line| line.chars().count() < 300),
            "{text}"
        );
    }

    #[test]
    fn the_json_of_design_section_8_parses_with_nulls_and_extra_fields() {
        let json = r#"{"leader": "n1", "term": 4, "commit_index": 19, "answered_by": "n2",
            "members": [{"id": "n1", "addr": "127.0.0.1:7101", "http": "127.0.0.1:8101",
              "priority": 10, "role": "leader", "state": "LEADER", "health": "HEALTHY",
              "voter": true, "match_index": null, "lag_entries": null, "last_contact_ms": null},
             {"id": "n3", "addr": null, "priority": 0, "role": "none",
              "state": "UNREACHABLE", "health": "UNKNOWN"}]}"#;
        let view: ClusterView = serde_json::from_str(json).expect("parses");
        assert_eq!(view.members.len(), 2);
        assert_eq!(view.members[0].http.as_deref(), Some("127.0.0.1:8101"));
        assert_eq!(view.members[1].addr, None);
        let no_members = r#"{"leader": null, "term": 1, "commit_index": 0}"#;
        assert!(serde_json::from_str::<ClusterView>(no_members).is_err());
    }

    #[test]
    fn only_a_follower_answer_sends_the_tool_to_the_leader() {
        assert_eq!(leader_to_ask(&leader_view(), "127.0.0.1:8101"), None);
        assert_eq!(
            leader_to_ask(&follower_view(), "127.0.0.1:8102"),
            Some("127.0.0.1:8101".to_string())
        );
        // Without answered_by, the asked address identifies the answering node.
        let mut view = follower_view();
        view.answered_by = None;
        assert_eq!(leader_to_ask(&view, "127.0.0.1:8101"), None);
        assert_eq!(
            describe_answerer(&view, "127.0.0.1:8102"),
            "n2 at 127.0.0.1:8102"
        );
        assert_eq!(describe_answerer(&view, "localhost:8102"), "localhost:8102");
        // A leader without an HTTP address cannot be asked.
        let mut view = follower_view();
        view.members[0].http = None;
        assert_eq!(leader_to_ask(&view, "127.0.0.1:8102"), None);
    }

    fn plain() -> AdminClient {
        AdminClient::new(None, None, REQUEST_TIMEOUT).expect("client")
    }

    #[test]
    fn only_host_and_port_are_accepted() {
        assert_eq!(
            cluster_url(&plain(), "127.0.0.1:8101").expect("valid"),
            "http://127.0.0.1:8101/v1/cluster"
        );
        assert!(cluster_url(&plain(), "[::1]:8101").is_ok());
        assert!(cluster_url(&plain(), "localhost:80").is_ok());
        for bad in [
            "",
            "127.0.0.1",
            "http://127.0.0.1:8101",
            "127.0.0.1:8101/v1",
            "127.0.0.1:",
            ":8101",
            "127.0.0.1:99999",
            "127.0.0.1:0",
            "user@host:1",
            "bad host:1",
            "::1",
        ] {
            let error = cluster_url(&plain(), bad).expect_err(bad);
            assert!(
                matches!(error, BotError::StatusAddress { .. }),
                "{bad}: {error}"
            );
            assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
        }
    }

    /// A one-thread HTTP server on loopback that answers each of `answers` (status line and
    /// body) to one connection, in order, then stops. It gives up after 10 s without a client.
    fn serve(answers: Vec<(&'static str, String)>) -> (SocketAddr, JoinHandle<Vec<String>>) {
        serve_with(None, answers)
    }

    /// [`serve`], over TLS with `tls` when given.
    fn serve_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        answers: Vec<(&'static str, String)>,
    ) -> (SocketAddr, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("non-blocking");
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut requests = Vec::new();
            for (status, body) in answers {
                let stream = loop {
                    match listener.accept() {
                        Ok((stream, _)) => break stream,
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => return requests,
                    }
                };
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("read timeout");
                let request = match &tls {
                    Some(config) => {
                        let connection =
                            rustls::ServerConnection::new(config.clone()).expect("TLS session");
                        let mut stream = rustls::StreamOwned::new(connection, stream);
                        answer(&mut stream, status, &body)
                    }
                    None => {
                        let mut stream = stream;
                        answer(&mut stream, status, &body)
                    }
                };
                requests.push(request);
            }
            requests
        });
        (addr, handle)
    }

    /// Read one request's head from `stream` and write the answer; the head as text (empty
    /// when the client went away, e.g. after refusing the server's certificate).
    fn answer(stream: &mut (impl Read + Write), status: &str, body: &str) -> String {
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        // At most 64 reads: a request head is far smaller.
        for _ in 0..64 {
            if request.windows(4).any(|window| window == b"\r\n\r\n") {
                break;
            }
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
            }
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes());
        let _ = stream.flush();
        String::from_utf8_lossy(&request).into_owned()
    }

    /// A TLS server configuration with node `id`'s files from `bot certs init` in `dir`.
    fn node_tls(dir: &Path, id: &str) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![
            CertificateDer::from_pem_file(dir.join(format!("{id}.pem"))).expect("certificate"),
        ];
        let key = PrivateKeyDer::from_pem_file(dir.join(format!("{id}.key"))).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(config)
    }

    #[test]
    fn with_a_ca_status_speaks_https_verifies_the_node_and_sends_the_token() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = crate::certs::tests::make_cluster(dir.path(), "prod", &["n1"]);
        let (addr, server) = serve_with(
            Some(node_tls(dir.path(), "n1")),
            vec![("200 OK", cluster_json(&leader_view()))],
        );
        let token = "0123456789abcdef0123456789abcdef";
        let text =
            status_report(&addr.to_string(), Some(&ca), Some(token)).expect("status over TLS");
        assert!(text.contains("*  n1"), "{text}");
        let requests = server.join().expect("server");
        assert_eq!(requests.len(), 1);
        let request = requests[0].to_ascii_lowercase();
        assert!(request.starts_with("get /v1/cluster http/1.1"), "{request}");
        assert!(
            request.contains(&format!("authorization: bearer {token}")),
            "{request}"
        );
    }

    #[test]
    fn a_node_certificate_from_another_ca_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        crate::certs::tests::make_cluster(dir.path(), "prod", &["n1"]);
        let other = tempfile::tempdir().expect("temp dir");
        let other_ca = crate::certs::tests::make_cluster(other.path(), "prod", &["n1"]);
        let (addr, server) = serve_with(
            Some(node_tls(dir.path(), "n1")),
            vec![("200 OK", cluster_json(&leader_view()))],
        );
        let error =
            status_report(&addr.to_string(), Some(&other_ca), None).expect_err("unknown issuer");
        assert!(
            matches!(&error, BotError::StatusUnreachable { reason, .. }
                if reason.contains("certificate") && reason.contains("--tls-ca")),
            "{error}"
        );
        assert_eq!(error.exit_code(), crate::error::EXIT_FAILURE);
        let requests = server.join().expect("server");
        assert!(
            requests.iter().all(|request| request.is_empty()),
            "no request was sent: {requests:?}"
        );
    }

    #[test]
    fn refusals_401_and_403_print_the_node_message_and_exit_non_zero() {
        let (addr, server) = serve(vec![
            (
                "401 Unauthorized",
                r#"{"error":"unauthorized","message":"a bearer token is required"}"#.to_string(),
            ),
            (
                "403 Forbidden",
                r#"{"error":"forbidden","message":"needs the admin role"}"#.to_string(),
            ),
        ]);
        let error = status_report(&addr.to_string(), None, None).expect_err("401");
        assert!(
            matches!(&error, BotError::AdminDenied { status: 401, message, .. }
                if message == "a bearer token is required"),
            "{error:?}"
        );
        assert_ne!(error.exit_code(), 0);
        let error =
            status_report(&addr.to_string(), None, Some("0123456789abcdef")).expect_err("403");
        assert!(
            matches!(&error, BotError::AdminDenied { status: 403, message, .. }
                if message == "needs the admin role"),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("needs the admin role"),
            "{error}"
        );
        assert!(!error.to_string().contains("0123456789abcdef"), "{error}");
        server.join().expect("server");
    }

    fn cluster_json(view: &ClusterView) -> String {
        let members: Vec<serde_json::Value> = view
            .members
            .iter()
            .map(|member| {
                serde_json::json!({
                    "id": member.id, "addr": member.addr, "http": member.http,
                    "priority": member.priority, "role": member.role, "state": member.state,
                    "health": member.health, "match_index": member.match_index,
                    "lag_entries": member.lag_entries, "last_contact_ms": member.last_contact_ms,
                })
            })
            .collect();
        serde_json::json!({
            "leader": view.leader, "term": view.term, "commit_index": view.commit_index,
            "answered_by": view.answered_by, "members": members,
        })
        .to_string()
    }

    #[test]
    fn a_follower_answer_is_followed_by_one_request_to_the_leader() {
        let (leader_addr, leader) = serve(vec![("200 OK", cluster_json(&leader_view()))]);
        let mut follower_answer = follower_view();
        follower_answer.members[0].http = Some(leader_addr.to_string());
        let (follower_addr, follower) = serve(vec![("200 OK", cluster_json(&follower_answer))]);

        let text = status_report(&follower_addr.to_string(), None, None).expect("status");
        assert!(
            text.contains(&format!(
                "(answered by n1 at {leader_addr}, after n2 at {follower_addr} named it leader)"
            )),
            "{text}"
        );
        assert!(text.contains("*  n1"), "{text}");
        assert!(!text.contains("come only from the leader"), "{text}");
        let requests = follower.join().expect("follower server");
        assert!(
            requests[0].starts_with("GET /v1/cluster HTTP/1.1"),
            "{requests:?}"
        );
        assert_eq!(leader.join().expect("leader server").len(), 1);
    }

    #[test]
    fn an_unreachable_leader_leaves_the_follower_answer_with_a_note() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let leader_addr = listener.local_addr().expect("local addr");
        drop(listener);
        let mut follower_answer = follower_view();
        follower_answer.members[0].http = Some(leader_addr.to_string());
        let (follower_addr, follower) = serve(vec![("200 OK", cluster_json(&follower_answer))]);
        let text = status_report(&follower_addr.to_string(), None, None).expect("status");
        assert!(
            text.contains(&format!("(answered by n2 at {follower_addr})")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "note: the leader's table at {leader_addr} could not be read"
            )),
            "{text}"
        );
        follower.join().expect("follower server");
    }

    #[test]
    fn errors_and_bad_json_are_reported_with_exit_code_1() {
        let error_body = r#"{"error": "no_leader", "message": "no quorum", "leader": null}"#;
        let (addr, server) = serve(vec![
            ("503 Service Unavailable", error_body.to_string()),
            ("200 OK", "{\"leader\": ".to_string()),
        ]);
        let error = status_report(&addr.to_string(), None, None).expect_err("503");
        assert!(
            matches!(&error, BotError::StatusResponse { reason, .. }
                if reason.contains("503") && reason.contains("no quorum")),
            "{error}"
        );
        assert_eq!(error.exit_code(), crate::error::EXIT_FAILURE);
        let error = status_report(&addr.to_string(), None, None).expect_err("bad JSON");
        assert!(
            matches!(&error, BotError::StatusResponse { reason, .. }
                if reason.contains("not a cluster table")),
            "{error}"
        );
        server.join().expect("server");
    }

    #[test]
    fn nothing_listening_is_unreachable_with_exit_code_1() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        drop(listener);
        let error = status_report(&addr.to_string(), None, None).expect_err("nothing listens");
        assert!(
            matches!(error, BotError::StatusUnreachable { .. }),
            "{error}"
        );
        assert_eq!(error.exit_code(), crate::error::EXIT_FAILURE);
        assert!(error.to_string().contains("cannot reach"), "{error}");
    }
}
