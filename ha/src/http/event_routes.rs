//! `GET /v1/events` (issue 16, item 1): the node's [event journal](crate::event_journal) as
//! server-sent events (`text/event-stream`), role `read`.
//!
//! On connect the client gets `event: hello` (no `id:`) with `{"kind":"hello","node","seq"}`
//! (`seq`: the newest seq now); then, with `Last-Event-ID: N` (header, or
//! `?last_event_id=N` for clients that cannot set headers), every event after `N`, else only
//! new ones. Each event is `id: <seq>`, `event: <kind>`, `data: <one line of JSON>` and a
//! blank line; the kinds and their fields are in docs/ARCHITECTURE.md ("Event stream"). When
//! the ring no longer holds the events after the client's position (it resumed too late, or
//! it fell behind while connected) it gets one `event: gap` (no `id:`) with `missed` and
//! `resume_seq`, never silence. A `Last-Event-ID` above the node's newest seq is from an
//! earlier run of the node (seqs restart at 1): the client gets everything this run still
//! holds, after a gap if the ring has already dropped some. `: keep-alive` comments go out
//! after [`KEEP_ALIVE_INTERVAL`] without an event, so proxies and clients can tell a quiet
//! node from a dead connection.
//!
//! Cost per client: one task holding a cursor and at most one chunk
//! ([`CHUNK_BYTES_MAX`]) in a body channel of one slot; a client that stops reading leaves its
//! task waiting on that slot, and the node's writers never wait for it (they append to the
//! ring and move on). At most [`Config::events_clients_max`](ha_core::Config) clients are
//! served at once: one more gets 429 `limit`. The stream ends when the node shuts down.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ha_core::StateMachine;
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use serde::Deserialize;
use tokio::sync::{oneshot, watch};

use super::{ApiError, ApiState};
use crate::event_journal::{EventJournal, JournalRead, OwnedClientSlot};

/// A keep-alive comment goes out after this long without an event.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// The most bytes of events sent as one chunk.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;
/// The header a client resumes with.
const LAST_EVENT_ID: &str = "last-event-id";

/// `?last_event_id=N`, for clients that cannot set the header.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    last_event_id: Option<String>,
}

/// The seq the client last saw, from the header or the query (the header wins).
fn last_event_id(headers: &HeaderMap, query: &EventsQuery) -> Result<Option<u64>, ApiError> {
    let text = match headers.get(LAST_EVENT_ID) {
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::bad_request("Last-Event-ID must be the decimal id of an event")
        })?),
        None => query.last_event_id.as_deref(),
    };
    let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    text.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "Last-Event-ID must be the decimal id of an event (a u64), not {:?}",
            text.chars().take(32).collect::<String>()
        ))
    })
}

/// `GET /v1/events`.
pub(crate) async fn events<S: StateMachine>(
    State(state): State<ApiState<S>>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resume = last_event_id(&headers, &query)?;
    let node = state.node()?;
    let journal = Arc::clone(&node.shared.journal);
    let stop = node.shared.stop_http.subscribe();
    drop(node);
    let slot = journal.join_owned().ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "limit",
            format!(
                "this node already streams events to {} clients (events_clients_max); close one \
                 or ask another node",
                journal.clients_max()
            ),
        )
    })?;
    let newest = journal.newest_seq();
    let cursor = match resume {
        None => newest,
        Some(seen) if seen > newest => 0,
        Some(seen) => seen,
    };
    let (sender, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
    // The body owns `gone_sender`: when the server drops the body (the client went away) the
    // task hears it at once, even while no event comes, and gives its slot back.
    let (gone_sender, gone) = oneshot::channel::<()>();
    let body = body.map_frame(move |frame| {
        let _held_until_the_body_is_dropped = &gone_sender;
        frame
    });
    let client = Client { sender, stop, gone };
    tokio::spawn(stream_events(slot, cursor, client, KEEP_ALIVE_INTERVAL));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Reverse proxies (nginx) must not buffer the stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::new(body),
    )
        .into_response())
}

/// Why a stream ended.
enum Ended {
    /// The client went away.
    Gone,
    /// The node is shutting down.
    Stopped,
}

/// One streaming client, as its task sees it.
pub(crate) struct Client {
    /// The body's channel (one chunk).
    sender: Sender<Bytes, std::convert::Infallible>,
    /// True once the node stops serving HTTP.
    stop: watch::Receiver<bool>,
    /// Resolves when the server drops the body.
    gone: oneshot::Receiver<()>,
}

impl Client {
    /// Send `text`, waiting for the client (one chunk in the channel at most) unless it goes
    /// away or the node stops.
    async fn send(&mut self, text: String) -> Result<(), Ended> {
        tokio::select! {
            sent = self.sender.send_data(Bytes::from(text)) => sent.map_err(|_| Ended::Gone),
            _ = self.stop.wait_for(|stop| *stop) => Err(Ended::Stopped),
            _ = &mut self.gone => Err(Ended::Gone),
        }
    }

    /// Wait for a new event (`Ok(false)`) or `quiet` without one (`Ok(true)`).
    async fn wait(
        &mut self,
        newest: &mut watch::Receiver<u64>,
        quiet: Duration,
    ) -> Result<bool, Ended> {
        tokio::select! {
            changed = newest.changed() => changed.map(|()| false).map_err(|_| Ended::Stopped),
            () = tokio::time::sleep(quiet) => Ok(true),
            _ = self.stop.wait_for(|stop| *stop) => Err(Ended::Stopped),
            _ = &mut self.gone => Err(Ended::Gone),
        }
    }
}

/// Stream the journal after `cursor` to one client until it goes away or the node stops.
pub(crate) async fn stream_events(
    slot: OwnedClientSlot,
    cursor: u64,
    mut client: Client,
    keep_alive: Duration,
) {
    let journal: &EventJournal = slot.journal();
    match stream_to(journal, cursor, &mut client, keep_alive).await {
        Ended::Gone => tracing::debug!("event stream client went away"),
        Ended::Stopped => tracing::debug!("event stream ended: node stopping"),
    }
}

/// The stream's loop: hello, then every chunk after `cursor` (a gap where the ring passed it),
/// a keep-alive when quiet. Returns why it ended.
async fn stream_to(
    journal: &EventJournal,
    mut cursor: u64,
    client: &mut Client,
    keep_alive: Duration,
) -> Ended {
    let mut newest = journal.watch_newest();
    if let Err(ended) = client.send(journal.hello_frame()).await {
        return ended;
    }
    loop {
        newest.borrow_and_update();
        let sent = match journal.read_after(cursor, CHUNK_BYTES_MAX) {
            JournalRead::Gap { missed, resume_seq } => {
                journal.count_gap();
                cursor = resume_seq - 1;
                client.send(journal.gap_frame(missed, resume_seq)).await
            }
            JournalRead::Frames { text, last_seq } => {
                cursor = last_seq;
                client.send(text).await
            }
            JournalRead::Empty => match client.wait(&mut newest, keep_alive).await {
                Ok(true) => client.send(": keep-alive\n\n".to_string()).await,
                Ok(false) => Ok(()),
                Err(ended) => Err(ended),
            },
        };
        if let Err(ended) = sent {
            return ended;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use ha_core::NodeId;

    use super::*;

    /// The next chunk of `body` as text, within a second.
    async fn chunk(body: &mut Channel<Bytes, Infallible>) -> String {
        let frame = tokio::time::timeout(Duration::from_secs(1), body.frame())
            .await
            .expect("a chunk within a second")
            .expect("the stream is open")
            .expect("infallible");
        String::from_utf8(frame.into_data().expect("data").to_vec()).expect("UTF-8")
    }

    fn client(
        stop: watch::Receiver<bool>,
    ) -> (Client, Channel<Bytes, Infallible>, oneshot::Sender<()>) {
        let (sender, body) = Channel::<Bytes, Infallible>::new(1);
        let (gone_sender, gone) = oneshot::channel();
        (Client { sender, stop, gone }, body, gone_sender)
    }

    /// A quiet stream gets keep-alive comments, then the events as they come; it ends, giving
    /// its place back, when the node stops or when the client is gone.
    #[tokio::test]
    async fn quiet_streams_keep_alive_and_end_when_the_node_stops_or_the_client_goes() {
        let journal = Arc::new(EventJournal::new(NodeId::new("n1").expect("id"), 8, 2));
        let (stop_sender, stop) = watch::channel(false);
        let (client_one, mut body, _gone_one) = client(stop.clone());
        let slot = journal.join_owned().expect("a place");
        let one = tokio::spawn(stream_events(
            slot,
            0,
            client_one,
            Duration::from_millis(20),
        ));
        assert!(chunk(&mut body).await.starts_with("event: hello\n"));
        assert_eq!(chunk(&mut body).await, ": keep-alive\n\n");
        journal.record_lock("granted", "a", 1);
        let mut text = chunk(&mut body).await;
        while text.starts_with(':') {
            text = chunk(&mut body).await;
        }
        assert!(text.starts_with("id: 1\nevent: lock\n"), "{text}");

        let (client_two, _body_two, gone_two) = client(stop);
        let slot = journal.join_owned().expect("a second place");
        let two = tokio::spawn(stream_events(slot, 0, client_two, Duration::from_secs(60)));
        assert_eq!(journal.clients(), 2);
        drop(gone_two);
        tokio::time::timeout(Duration::from_secs(1), two)
            .await
            .expect("a gone client's stream ends at once")
            .expect("no panic");
        assert_eq!(journal.clients(), 1);

        stop_sender.send_replace(true);
        tokio::time::timeout(Duration::from_secs(1), one)
            .await
            .expect("the stream ends when the node stops")
            .expect("no panic");
        assert_eq!(journal.clients(), 0);
    }

    #[test]
    fn resume_points_come_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        let query = EventsQuery {
            last_event_id: Some("7".into()),
        };
        assert_eq!(last_event_id(&headers, &query).expect("valid"), Some(7));
        headers.insert(LAST_EVENT_ID, "9".parse().expect("header"));
        assert_eq!(last_event_id(&headers, &query).expect("valid"), Some(9));
        headers.insert(LAST_EVENT_ID, "-1".parse().expect("header"));
        assert!(last_event_id(&headers, &query).is_err());
        assert_eq!(
            last_event_id(&HeaderMap::new(), &EventsQuery::default()).expect("valid"),
            None
        );
    }
}
