//! The tokio driver: one task runs a [`GossipCore`] over a UDP socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ha_core::{Clock, MemberEvent, MemberInfo, Millis, MonotonicClock, NodeMetadata, TimerQueue};
use parking_lot::RwLock;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::core::{GossipCore, GossipEffect, GossipTimer};
use crate::drops::DropCounts;
use crate::envelope::DATAGRAM_BYTES_MAX;
use crate::error::GossipError;
use crate::identity::GossipIdentity;
use crate::settings::GossipSettings;
use crate::shared_state::{Outgoing, SharedState};

/// Events buffered per subscriber; a subscriber that falls further behind sees `Lagged` and
/// should re-read [`GossipNode::members`].
pub const EVENT_BUFFER: usize = 1024;
const COMMAND_BUFFER: usize = 64;

type MetadataChange = Box<dyn FnOnce(&mut NodeMetadata) + Send>;

enum Command {
    UpdateMetadata(MetadataChange, oneshot::Sender<()>),
    Leave(oneshot::Sender<()>),
}

/// What callers can read without asking the task.
#[derive(Debug, Clone)]
struct View {
    identity: GossipIdentity,
    metadata: NodeMetadata,
    members: Vec<MemberInfo>,
    drops: DropCounts,
}

/// A running gossip member: a UDP socket and a task that drives a [`GossipCore`] and hosts
/// this node's replica of the shared map ([`shared_state`](Self::shared_state)).
///
/// Dropping it stops the task without a graceful leave (the cluster will detect it as
/// unreachable); call [`leave`](Self::leave) to go gracefully.
///
/// ```no_run
/// use ha_core::{Config, NodeId, NodeMetadata, Priority};
/// use ha_gossip::{GossipNode, GossipSettings};
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::single(NodeId::new("n1")?, "127.0.0.1:7101".parse()?);
/// let metadata = NodeMetadata::new(Priority(1), config.bind_addr);
/// let settings = GossipSettings::from_config(&config, GossipNode::fresh_incarnation(), metadata);
/// let node = GossipNode::start(settings, config.bind_addr).await?;
/// let mut events = node.subscribe();
/// while let Ok(event) = events.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
pub struct GossipNode {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<MemberEvent>,
    /// Subscribed before the task started, so the first `subscribe` misses no event.
    first_subscriber: parking_lot::Mutex<Option<broadcast::Receiver<MemberEvent>>>,
    view: Arc<RwLock<View>>,
    local_addr: SocketAddr,
    shared_state: SharedState,
    task: JoinHandle<()>,
}

impl GossipNode {
    /// An incarnation higher than any earlier run of this node: wall-clock milliseconds. It
    /// only orders restarts (it is not used for safety); a clock set back by more than the
    /// downtime makes the restarted node wait for its old identity to be forgotten.
    pub fn fresh_incarnation() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(1)
    }

    /// Bind `bind_addr` and start gossiping. When the identity's port is 0, the bound address
    /// becomes the identity's address (handy in tests).
    ///
    /// The shared map is opened first (its log read back from `settings.shared_state.dir`).
    ///
    /// # Errors
    /// [`GossipError::Io`] when the socket cannot be bound; [`GossipError::Config`] on a bad
    /// keyring; [`GossipError::SharedState`] when the shared map's log cannot be read.
    pub async fn start(
        mut settings: GossipSettings,
        bind_addr: SocketAddr,
    ) -> Result<Self, GossipError> {
        let socket = UdpSocket::bind(bind_addr).await?;
        let local_addr = socket.local_addr()?;
        if settings.identity.addr.port() == 0 {
            settings.identity = GossipIdentity::new(
                settings.identity.node_id.clone(),
                local_addr,
                settings.identity.incarnation,
            );
        }
        let seed = rand::random::<u64>();
        let shared_state = SharedState::open(
            settings.identity.node_id.clone(),
            settings.shared_state.clone(),
            seed.rotate_left(17),
        )?;
        let core = GossipCore::new(settings, seed)?;
        let view = Arc::new(RwLock::new(View {
            identity: core.identity().clone(),
            metadata: core.metadata().clone(),
            members: Vec::new(),
            drops: core.drop_counts(),
        }));
        let (commands, command_receiver) = mpsc::channel(COMMAND_BUFFER);
        let (events, first_subscriber) = broadcast::channel(EVENT_BUFFER);
        let runner = Runner {
            core,
            socket,
            clock: MonotonicClock::new(),
            timers: TimerQueue::default(),
            events: events.clone(),
            view: Arc::clone(&view),
            state: shared_state.clone(),
        };
        let task = tokio::spawn(runner.run(command_receiver));
        Ok(Self {
            commands,
            events,
            first_subscriber: parking_lot::Mutex::new(Some(first_subscriber)),
            view,
            local_addr,
            shared_state,
            task,
        })
    }

    /// This node's replica of the shared map (issue 15): writable here whatever the
    /// partition, disseminated to the members this node reaches. Clones share it; it keeps
    /// answering local reads and writes after the node stops (they then no longer spread).
    pub fn shared_state(&self) -> SharedState {
        self.shared_state.clone()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's current identity.
    pub fn identity(&self) -> GossipIdentity {
        self.view.read().identity.clone()
    }

    /// The metadata this node advertises.
    pub fn metadata(&self) -> NodeMetadata {
        self.view.read().metadata.clone()
    }

    /// Every known member (not this node), reachable or not.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.view.read().members.clone()
    }

    /// Packets dropped so far, by cause.
    pub fn drop_counts(&self) -> DropCounts {
        self.view.read().drops
    }

    /// Membership events. The first call gets every event since the node started; later
    /// calls get events from the moment they subscribe.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.first_subscriber
            .lock()
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    /// Change the advertised metadata and wait until the core has taken it.
    ///
    /// # Errors
    /// [`GossipError::Stopped`] when the node is no longer running.
    pub async fn update_metadata(
        &self,
        change: impl FnOnce(&mut NodeMetadata) + Send + 'static,
    ) -> Result<(), GossipError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::UpdateMetadata(Box::new(change), done))
            .await
            .map_err(|_| GossipError::Stopped)?;
        wait.await.map_err(|_| GossipError::Stopped)
    }

    /// Leave gracefully: members see this node LEAVING, then gone. Stops the node.
    ///
    /// # Errors
    /// [`GossipError::Stopped`] when the node had already stopped.
    pub async fn leave(self) -> Result<(), GossipError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Leave(done))
            .await
            .map_err(|_| GossipError::Stopped)?;
        wait.await.map_err(|_| GossipError::Stopped)
    }
}

impl Drop for GossipNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Runner {
    core: GossipCore,
    socket: UdpSocket,
    clock: MonotonicClock,
    timers: TimerQueue<GossipTimer>,
    events: broadcast::Sender<MemberEvent>,
    view: Arc<RwLock<View>>,
    state: SharedState,
}

impl Runner {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // One byte more than a valid packet (a shared state packet is the largest kind), so
        // an oversized datagram is seen as such rather than silently truncated into something
        // that might parse.
        let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX + 1];
        self.apply_effects().await;
        let mut batched_sync = self.state.batched_sync_interval_ms().map(|interval_ms| {
            let mut interval = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        loop {
            let deadline = self
                .timers
                .next_deadline()
                .map(|deadline| self.instant(deadline));
            let state_clock = self.state.clock();
            let state_deadline = tokio::time::Instant::from_std(
                state_clock.origin() + self.state.next_tick_at().as_duration(),
            );
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::UpdateMetadata(change, done)) => {
                        self.core.update_metadata(self.clock.now(), change);
                        self.apply_effects().await;
                        let _ = done.send(());
                    }
                    Some(Command::Leave(done)) => {
                        self.core.leave(self.clock.now());
                        self.apply_effects().await;
                        self.linger(&mut buffer).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((length, from)) => {
                        self.core.on_packet(self.clock.now(), from, &buffer[..length]);
                        self.apply_effects().await;
                    }
                    Err(error) => {
                        // ICMP "port unreachable" from a dead peer surfaces here on some
                        // platforms; it is not fatal.
                        tracing::debug!(%error, "gossip receive error");
                    }
                },
                () = sleep_until_deadline(deadline), if deadline.is_some() => {
                    let now = self.clock.now();
                    while let Some(timer) = self.timers.pop_due(now) {
                        self.core.on_timer(now, timer);
                        self.apply_effects().await;
                    }
                }
                () = tokio::time::sleep_until(state_deadline) => {
                    let outgoing = self.state.on_tick();
                    self.send_state(outgoing).await;
                    self.apply_effects().await;
                }
                // A local write: look at the replicator's timer again (it may push sooner).
                () = self.state.woken() => {}
                () = tick_batched(&mut batched_sync), if batched_sync.is_some() => {
                    self.state.sync_batch().await;
                }
            }
        }
    }

    /// After leaving, keep answering for one probe round trip so that members probing us
    /// meanwhile are not left waiting; our timers no longer run.
    async fn linger(&mut self, buffer: &mut [u8]) {
        let until = tokio::time::Instant::now()
            + Duration::from_millis(self.core.settings().timing.gossip_probe_rtt_ms);
        while let Ok(received) = tokio::time::timeout_at(until, self.socket.recv_from(buffer)).await
        {
            if let Ok((length, from)) = received {
                self.core
                    .on_packet(self.clock.now(), from, &buffer[..length]);
                self.apply_effects().await;
            }
        }
    }

    fn instant(&self, deadline: Millis) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.clock.origin() + deadline.as_duration())
    }

    /// Hand the replicator's messages to the core to be wrapped, once what they carry of our
    /// own writes is durable (so a stamp a peer saw is never issued again after a crash).
    async fn send_state(&mut self, outgoing: Outgoing) {
        if outgoing.sends.is_empty() {
            return;
        }
        self.state
            .durable_before_send(outgoing.durable_through)
            .await;
        for (to, payload) in outgoing.sends {
            self.core.send_state(to, &payload);
        }
    }

    async fn apply_effects(&mut self) {
        let now = self.clock.now();
        let mut changed = false;
        // Handing a state packet to the replicator can produce answers (more effects): drain
        // until none are left. Each round only answers packets already received, so it ends.
        loop {
            let effects = self.core.drain_effects();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                match effect {
                    GossipEffect::Send { to, packet } => {
                        if let Err(error) = self.socket.send_to(&packet, to).await {
                            tracing::debug!(%to, %error, "gossip send failed");
                        }
                    }
                    GossipEffect::Schedule { after_ms, timer } => {
                        if !self.timers.push(now + after_ms, timer) {
                            tracing::error!("gossip timer queue full; timer dropped");
                        }
                    }
                    GossipEffect::Event(event) => {
                        if !changed {
                            // The view changes before anyone hears of the event: handling
                            // state packets in this loop awaits, and a subscriber that reads
                            // `members()` after an event must see it already.
                            changed = true;
                            self.view.write().members = self.core.members().collect();
                        }
                        // No subscriber is fine: the view below still changes.
                        let _ = self.events.send(event);
                    }
                    GossipEffect::State { from, payload } => {
                        let outgoing = self.state.on_packet(from, &payload);
                        self.send_state(outgoing).await;
                    }
                }
            }
        }
        if changed {
            // A witness (issue 15) holds no state, the shared map included: it is nobody's
            // peer for the map, and it sends to nobody.
            let peers = if self.core.metadata().witness {
                Vec::new()
            } else {
                self.core
                    .members()
                    .filter(|member| member.reachable)
                    .filter(|member| !member.metadata.as_ref().is_some_and(|meta| meta.witness))
                    .map(|member| member.gossip_addr)
                    .collect()
            };
            self.state.set_peers(peers);
        }
        let mut view = self.view.write();
        if changed {
            view.members = self.core.members().collect();
        }
        view.identity = self.core.identity().clone();
        view.metadata = self.core.metadata().clone();
        view.drops = self.core.drop_counts();
    }
}

async fn tick_batched(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until_deadline(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => tokio::time::sleep(Duration::from_secs(3600)).await,
    }
}
