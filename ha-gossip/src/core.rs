//! The sans-IO gossip core: foca plus metadata, seeds, leave and the envelope.

use std::net::SocketAddr;

use foca::{AccumulatingRuntime, Foca, Member, OwnedNotification, PostcardCodec, State, Timer};
use ha_core::keyring::Keyring;
use ha_core::{MemberEvent, MemberInfo, Millis, NodeMetadata, NodeState};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::anti_entropy::{self, AntiEntropyMessage, SetSummary};
use crate::drops::{DropCause, DropCounts};
use crate::envelope::{Envelope, PacketKind};
use crate::error::GossipError;
use crate::identity::GossipIdentity;
use crate::members::MemberTable;
use crate::metadata::{MetadataAnnouncement, MetadataHandler};
use crate::settings::GossipSettings;
use crate::suspicion::{SuspicionMessage, SuspicionStep, SuspicionTracker, VERIFY_PINGS};

mod learn;

/// How many random members get our metadata directly on each refresh.
const METADATA_REFRESH_FANOUT: usize = 3;

/// Up to this many members, debug builds check foca's kept anti-entropy digest against one
/// computed afresh on every use (O(N) each: too slow for the 1,000-member simulations).
const DIGEST_CHECK_MEMBERS_MAX: usize = 128;

/// A timer the core asked for. Deliver each one back through [`GossipCore::on_timer`] after its
/// delay, in deadline order (ties in the order they were scheduled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipTimer {
    /// One of foca's SWIM timers.
    Swim(Timer<GossipIdentity>),
    /// Announce to seeds that are not reachable members.
    Reannounce,
    /// Send our metadata to a few random members.
    MetadataRefresh,
    /// Start a push-pull anti-entropy exchange with one random member.
    PushPull,
    /// The verification of the suspect at this address is due (see [`crate::suspicion`]).
    VerifyDeadline(SocketAddr),
    /// A check of the suspect at this address made for other members is over.
    SuspicionExpired(SocketAddr),
}

/// Something the driver must do for the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipEffect {
    /// Send one UDP datagram.
    Send {
        /// Destination gossip address.
        to: SocketAddr,
        /// The packet, already wrapped (and sealed when a key is set).
        packet: Vec<u8>,
    },
    /// Call [`GossipCore::on_timer`] with `timer` after `after_ms`.
    Schedule {
        /// Delay in milliseconds.
        after_ms: u64,
        /// The timer to deliver.
        timer: GossipTimer,
    },
    /// Publish a membership change.
    Event(MemberEvent),
    /// A shared map packet arrived, already opened (cluster name and seal checked): hand the
    /// payload to the node's shared state replicator (issue 15). A driver without one drops it.
    State {
        /// The sender's gossip address.
        from: SocketAddr,
        /// The replicator message, at most
        /// [`PAYLOAD_BYTES_MAX`](crate::shared_state::PAYLOAD_BYTES_MAX) bytes.
        payload: Vec<u8>,
    },
}

type SwimCore = Foca<GossipIdentity, PostcardCodec, StdRng, MetadataHandler>;

/// One member's gossip protocol, with no clock, socket or thread of its own.
///
/// Feed it packets ([`on_packet`](Self::on_packet)) and due timers
/// ([`on_timer`](Self::on_timer)); after each call, take its [`GossipEffect`]s with
/// [`drain_effects`](Self::drain_effects) and carry them out. The same core runs under the
/// tokio driver ([`crate::GossipNode`]) and in the simulator.
///
/// ```
/// use ha_core::{Config, Millis, NodeId, NodeMetadata, Priority};
/// use ha_gossip::{GossipCore, GossipEffect, GossipSettings};
///
/// let config = Config::full_ha(
///     NodeId::new("n1")?,
///     "127.0.0.1:7101".parse()?,
///     vec!["127.0.0.1:7102".parse()?],
/// );
/// let metadata = NodeMetadata::new(Priority(1), config.bind_addr);
/// let mut core = GossipCore::new(GossipSettings::from_config(&config, 1, metadata), 42)?;
/// // At start the core asks for its timers; the first re-announce contacts the seed.
/// let effects = core.drain_effects();
/// assert!(effects.iter().any(|effect| matches!(effect, GossipEffect::Schedule { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct GossipCore {
    swim: SwimCore,
    runtime: AccumulatingRuntime<GossipIdentity>,
    envelope: Envelope,
    rng: StdRng,
    settings: GossipSettings,
    metadata: NodeMetadata,
    drops: DropCounts,
    bytes_sent: u64,
    effects: Vec<GossipEffect>,
    suspicions: SuspicionTracker,
    left: bool,
}

impl GossipCore {
    /// A core for `settings`; `seed` seeds its randomness (probe order, nonces), so the same
    /// seed and inputs give the same outputs.
    ///
    /// # Errors
    /// [`GossipError::Config`] when the cluster keys do not form a valid keyring.
    pub fn new(settings: GossipSettings, seed: u64) -> Result<Self, GossipError> {
        let keyring = if settings.cluster_keys.is_empty() {
            None
        } else {
            Some(Keyring::new(settings.cluster_keys.clone())?)
        };
        let handler = MetadataHandler::new(settings.identity.addr);
        let swim = Foca::with_custom_broadcast(
            settings.identity.clone(),
            settings.foca_config(),
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            handler,
        );
        let metadata = settings.metadata.clone();
        let mut core = Self {
            swim,
            runtime: AccumulatingRuntime::new(),
            envelope: Envelope::new(&settings.cluster_name, keyring),
            rng: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            settings,
            metadata,
            drops: DropCounts::default(),
            bytes_sent: 0,
            effects: Vec::new(),
            suspicions: SuspicionTracker::default(),
            left: false,
        };
        core.effects.push(GossipEffect::Schedule {
            after_ms: 0,
            timer: GossipTimer::Reannounce,
        });
        core.effects.push(GossipEffect::Schedule {
            after_ms: core.settings.timing.metadata_refresh_ms,
            timer: GossipTimer::MetadataRefresh,
        });
        // The first exchange at a random point of the interval: members started together do
        // not all exchange at once, and holes left by the join close sooner on average.
        let first_push_pull_ms = core
            .rng
            .random_range(0..core.settings.push_pull_interval_ms());
        core.effects.push(GossipEffect::Schedule {
            after_ms: first_push_pull_ms,
            timer: GossipTimer::PushPull,
        });
        core.broadcast_metadata();
        core.pump();
        Ok(core)
    }

    /// This node's current identity (its incarnation grows when it rejoins).
    pub fn identity(&self) -> &GossipIdentity {
        self.swim.identity()
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &GossipSettings {
        &self.settings
    }

    /// The metadata this node advertises.
    pub fn metadata(&self) -> &NodeMetadata {
        &self.metadata
    }

    /// Every member this node knows, reachable or not, excluding itself, by address. Each
    /// is built on the call from the compact table (see `members.rs`).
    pub fn members(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        self.table().iter()
    }

    /// Every member's identity and whether it is reachable, in no particular order: what
    /// [`members`](Self::members) says without building (and sorting) a [`MemberInfo`] each
    /// (a simulator checking 10,000 members' views walks 10^8 of them).
    pub fn member_identities(&self) -> impl Iterator<Item = (&GossipIdentity, bool)> + '_ {
        self.table().identities()
    }

    /// The member at `addr`, if known.
    pub fn member(&self, addr: &SocketAddr) -> Option<MemberInfo> {
        self.table().get(addr)
    }

    /// How many members foca currently considers alive (excluding this node).
    pub fn reachable_count(&self) -> usize {
        self.swim.num_members()
    }

    /// How many member updates and metadata announcements wait in foca's dissemination
    /// backlogs (each is sent a bounded number of times, then dropped). A join fills them
    /// with about one of each per member; the simulator reports them to account for memory.
    pub fn dissemination_backlog(&self) -> (usize, usize) {
        (
            self.swim.updates_backlog(),
            self.swim.custom_broadcast_backlog(),
        )
    }

    /// Packets dropped so far, by cause.
    pub fn drop_counts(&self) -> DropCounts {
        self.drops
    }

    /// Whether [`leave`](Self::leave) was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Take the effects produced since the last call, in order.
    pub fn drain_effects(&mut self) -> Vec<GossipEffect> {
        for effect in &self.effects {
            if let GossipEffect::Send { packet, .. } = effect {
                self.bytes_sent = self.bytes_sent.saturating_add(packet.len() as u64);
            }
        }
        std::mem::take(&mut self.effects)
    }

    /// Bytes of every datagram this core asked to send so far (envelope included), for the
    /// cost of gossip at rest.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// A datagram arrived from `from`. Bad packets are counted and dropped; they never change
    /// membership.
    pub fn on_packet(&mut self, now: Millis, from: SocketAddr, packet: &[u8]) {
        let _span =
            tracing::trace_span!("gossip_packet", node = %self.identity().node_id, %now, %from)
                .entered();
        match self.envelope.unwrap(packet) {
            Err(cause) => self.drop_packet(from, cause),
            Ok((PacketKind::Swim, payload)) => {
                if let Err(error) = self.swim.handle_data(&payload, &mut self.runtime) {
                    let cause = match error {
                        foca::Error::Decode(_)
                        | foca::Error::MalformedPacket
                        | foca::Error::DataTooBig => DropCause::Malformed,
                        _ => DropCause::Refused,
                    };
                    tracing::debug!(%from, %error, "swim packet refused");
                    self.drop_packet(from, cause);
                }
            }
            Ok((PacketKind::Metadata, payload)) => match MetadataAnnouncement::decode(&payload) {
                Ok(announcement) => {
                    self.table_owner().offer(announcement);
                }
                Err(error) => {
                    tracing::debug!(%from, %error, "metadata packet refused");
                    self.drop_packet(from, DropCause::Malformed);
                }
            },
            Ok((PacketKind::State, payload)) => {
                // The replicator decodes and judges it; the envelope vouched for its origin.
                self.effects.push(GossipEffect::State { from, payload });
            }
            Ok((PacketKind::AntiEntropy, payload)) => match AntiEntropyMessage::decode(&payload) {
                Ok(message) if !self.left => self.on_anti_entropy(from, message),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%from, %error, "anti-entropy packet refused");
                    self.drop_packet(from, DropCause::Malformed);
                }
            },
            Ok((PacketKind::Suspicion, payload)) => match SuspicionMessage::decode(&payload) {
                Ok(message) if !self.left => self.on_suspicion_message(from, message),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%from, %error, "suspicion packet refused");
                    self.drop_packet(from, DropCause::Malformed);
                }
            },
        }
        self.pump();
    }

    /// Send a shared map message to `to` in this cluster's envelope (sealed when a key is
    /// set), as a [`GossipEffect::Send`]. The payload must be at most
    /// [`PAYLOAD_BYTES_MAX`](crate::shared_state::PAYLOAD_BYTES_MAX) bytes; a larger one is
    /// not sent (and logged): receivers would drop it as oversized.
    pub fn send_state(&mut self, to: SocketAddr, payload: &[u8]) {
        if payload.len() > crate::shared_state::PAYLOAD_BYTES_MAX {
            tracing::error!(%to, bytes = payload.len(), "shared state packet too large; not sent");
            return;
        }
        let packet = self
            .envelope
            .wrap(PacketKind::State, payload, self.rng.random());
        self.effects.push(GossipEffect::Send { to, packet });
    }

    /// A timer scheduled earlier is due.
    pub fn on_timer(&mut self, now: Millis, timer: GossipTimer) {
        let _span =
            tracing::trace_span!("gossip_timer", node = %self.identity().node_id, %now).entered();
        if self.left {
            return;
        }
        match timer {
            GossipTimer::Swim(timer) => self.deliver_swim_timer(timer),
            GossipTimer::Reannounce => self.reannounce(),
            GossipTimer::MetadataRefresh => self.refresh_metadata(),
            GossipTimer::PushPull => self.start_push_pull(),
            GossipTimer::SuspicionExpired(addr) => self.suspicions.on_expired(addr),
            GossipTimer::VerifyDeadline(addr) => {
                for step in self.suspicions.on_deadline(addr) {
                    self.carry_out(step);
                }
            }
        }
        self.pump();
    }

    /// Change the advertised metadata (health, state, priority, ...) and disseminate it.
    pub fn update_metadata(&mut self, now: Millis, change: impl FnOnce(&mut NodeMetadata)) {
        let _span = tracing::debug_span!("gossip_metadata", node = %self.identity().node_id, %now)
            .entered();
        let before = self.metadata.clone();
        change(&mut self.metadata);
        self.metadata.sequence = before.sequence.max(self.metadata.sequence) + 1;
        self.broadcast_metadata();
        self.pump();
    }

    /// Leave gracefully: advertise LEAVING to every reachable member, then tell the cluster we
    /// are gone. The driver should keep receiving for a moment (a probe round trip), then stop.
    pub fn leave(&mut self, now: Millis) {
        if self.left {
            return;
        }
        self.update_metadata(now, |metadata| metadata.state = NodeState::Leaving);
        for addr in self.table().reachable_addrs() {
            self.send_metadata_to(addr);
        }
        if let Err(error) = self.swim.leave_cluster(&mut self.runtime) {
            tracing::debug!(%error, "leave_cluster error");
        }
        self.left = true;
        self.pump();
    }

    /// The member table (held by foca's metadata handler, see `metadata.rs`).
    fn table(&self) -> &MemberTable {
        &self.swim.broadcast_handler().members
    }

    /// The metadata handler that owns the member table, to change it.
    fn table_owner(&mut self) -> &mut MetadataHandler {
        self.swim.broadcast_handler_mut()
    }

    fn drop_packet(&mut self, from: SocketAddr, cause: DropCause) {
        tracing::trace!(%from, %cause, "gossip packet dropped");
        self.drops.record(cause);
    }

    fn announcement(&self) -> MetadataAnnouncement {
        MetadataAnnouncement::new(self.swim.identity(), self.metadata.clone())
    }

    fn broadcast_metadata(&mut self) {
        match self.announcement().encode() {
            Ok(bytes) => {
                if let Err(error) = self.swim.add_broadcast(&bytes) {
                    tracing::warn!(%error, "metadata broadcast refused");
                }
                if let Err(error) = self.swim.broadcast(&mut self.runtime) {
                    tracing::debug!(%error, "metadata broadcast not sent");
                }
            }
            Err(error) => tracing::error!(%error, "metadata does not fit a gossip packet"),
        }
    }

    fn send_metadata_to(&mut self, to: SocketAddr) {
        match self.announcement().encode() {
            Ok(bytes) => {
                let packet = self
                    .envelope
                    .wrap(PacketKind::Metadata, &bytes, self.rng.random());
                self.effects.push(GossipEffect::Send { to, packet });
            }
            Err(error) => tracing::error!(%error, "metadata does not fit a gossip packet"),
        }
    }

    fn reannounce(&mut self) {
        let own = self.swim.identity().addr;
        let seeds: Vec<SocketAddr> = self
            .settings
            .seeds
            .iter()
            .copied()
            .filter(|seed| *seed != own)
            .filter(|seed| !self.table().is_reachable(seed))
            .collect();
        for seed in seeds {
            if let Err(error) = self
                .swim
                .announce(GossipIdentity::seed(seed), &mut self.runtime)
            {
                tracing::debug!(%seed, %error, "announce failed");
            }
        }
        // Until we know someone, retry at the probe period so a lost first announce costs
        // little; afterwards the slower period only heals partitions.
        let timing = &self.settings.timing;
        let after_ms = if self.swim.num_members() == 0 {
            timing.gossip_probe_period_ms
        } else {
            timing.reannounce_interval_ms
        };
        self.effects.push(GossipEffect::Schedule {
            after_ms,
            timer: GossipTimer::Reannounce,
        });
    }

    fn refresh_metadata(&mut self) {
        let chosen = self.swim.broadcast_handler().members.sample_reachable(
            &mut self.rng,
            METADATA_REFRESH_FANOUT,
            |_| true,
        );
        for addr in chosen {
            self.send_metadata_to(addr);
        }
        self.effects.push(GossipEffect::Schedule {
            after_ms: self.settings.timing.metadata_refresh_ms,
            timer: GossipTimer::MetadataRefresh,
        });
    }

    fn deliver_swim_timer(&mut self, timer: Timer<GossipIdentity>) {
        self.suspicions.on_delivered(&timer);
        if let Err(error) = self.swim.handle_timer(timer, &mut self.runtime) {
            tracing::debug!(%error, "swim timer error");
        }
    }

    fn send_packet(&mut self, to: SocketAddr, kind: PacketKind, payload: &[u8]) {
        let packet = self.envelope.wrap(kind, payload, self.rng.random());
        self.effects.push(GossipEffect::Send { to, packet });
    }

    fn send_suspicion_message(&mut self, to: SocketAddr, message: &SuspicionMessage) {
        match message.encode() {
            Ok(bytes) => self.send_packet(to, PacketKind::Suspicion, &bytes),
            Err(error) => tracing::debug!(%error, "suspicion message does not fit"),
        }
    }

    fn send_anti_entropy(&mut self, to: SocketAddr, message: &AntiEntropyMessage) {
        match message.encode() {
            Ok(bytes) => self.send_packet(to, PacketKind::AntiEntropy, &bytes),
            Err(error) => tracing::debug!(%error, "anti-entropy message does not fit"),
        }
    }

    fn carry_out(&mut self, step: SuspicionStep) {
        match step {
            SuspicionStep::Hasten { timer } => {
                tracing::debug!(
                    ?timer,
                    "suspicion confirmed by another member; declaring down now"
                );
                self.deliver_swim_timer(timer);
            }
            SuspicionStep::Verify {
                member,
                incarnation,
            } => {
                let to = member.addr;
                let message = SuspicionMessage::Verify {
                    member,
                    incarnation,
                };
                for _ping in 0..VERIFY_PINGS {
                    self.send_suspicion_message(to, &message);
                }
                self.effects.push(GossipEffect::Schedule {
                    after_ms: self.settings.timing.gossip_probe_rtt_ms,
                    timer: GossipTimer::VerifyDeadline(to),
                });
                self.effects.push(GossipEffect::Schedule {
                    after_ms: self.settings.timing.gossip_suspect_to_down_ms,
                    timer: GossipTimer::SuspicionExpired(to),
                });
            }
            SuspicionStep::Confirm {
                member,
                incarnation,
                to,
                fanout,
            } => {
                tracing::debug!(member = %member.node_id, "own verification of a suspect failed");
                let suspect = member.addr;
                let chosen = self.swim.broadcast_handler().members.sample_reachable(
                    &mut self.rng,
                    fanout,
                    |addr| *addr != suspect && !to.contains(addr),
                );
                self.suspicions.told(suspect, &chosen);
                let message = SuspicionMessage::Confirm {
                    member,
                    incarnation,
                };
                for recipient in to.into_iter().chain(chosen) {
                    self.send_suspicion_message(recipient, &message);
                }
            }
        }
    }

    fn on_suspicion_message(&mut self, from: SocketAddr, message: SuspicionMessage) {
        match message {
            SuspicionMessage::Verify {
                member,
                incarnation,
            } => {
                if member != *self.swim.identity() {
                    // About an identity we no longer have: let it be declared down.
                    return;
                }
                // Refute now, through foca, instead of waiting for the suspicion's gossip.
                let suspected = Member::new(member.clone(), incarnation, State::Suspect);
                if let Err(error) =
                    self.swim
                        .apply_many(std::iter::once(suspected), true, &mut self.runtime)
                {
                    tracing::debug!(%error, "refutation failed");
                }
                self.send_suspicion_message(from, &SuspicionMessage::VerifyAck { member });
            }
            SuspicionMessage::VerifyAck { member } => {
                if member.addr == from {
                    self.suspicions.on_answer(&member);
                }
            }
            SuspicionMessage::Confirm {
                member,
                incarnation,
            } => {
                for step in self.suspicions.on_confirm(from, &member, incarnation) {
                    self.carry_out(step);
                }
            }
        }
    }

    /// Our member set for anti-entropy: foca's active members and ourselves.
    fn member_set(&self) -> impl Iterator<Item = &GossipIdentity> {
        self.swim
            .iter_members()
            .map(Member::id)
            .chain(std::iter::once(self.swim.identity()))
    }

    /// The summary and per-bucket digest of [`Self::member_set`], from the digest foca keeps
    /// up to date: O(buckets) per exchange instead of a walk over every member (O(N) per
    /// exchange made anti-entropy O(N^2) per interval for the cluster).
    fn digest(&self) -> (SetSummary, Vec<SetSummary>) {
        let digest = anti_entropy::digest_with(self.swim.active_digest(), self.swim.identity());
        // The kept digest must equal one computed afresh; checked where that is cheap (the
        // simulator's small clusters, with joins, downs and restarts, run with assertions).
        debug_assert!(
            self.swim.num_members() > DIGEST_CHECK_MEMBERS_MAX
                || digest == anti_entropy::summarize(self.member_set()),
            "foca's kept anti-entropy digest differs from the member set's"
        );
        digest
    }

    /// Our members (as foca members, ourselves included) in `buckets`.
    fn members_in(&self, buckets: &[u8]) -> Vec<Member<GossipIdentity>> {
        let mut wanted = [false; anti_entropy::DIGEST_BUCKETS];
        for bucket in buckets {
            if let Some(slot) = wanted.get_mut(usize::from(*bucket)) {
                *slot = true;
            }
        }
        let own = self.swim.identity();
        // Down members too: a member that missed a down hears of it here (the digest counts
        // only active members, so a down one makes the buckets differ until both know it).
        self.swim
            .iter_membership_state()
            .filter(|member| wanted[member.id().digest_bucket()])
            .map(|member| {
                let state = if member.state() == State::Down {
                    State::Down
                } else {
                    State::Alive
                };
                Member::new(member.id().clone(), member.incarnation(), state)
            })
            .chain(
                wanted[anti_entropy::bucket_of(&own.addr)]
                    .then(|| Member::new(own.clone(), 0, State::Alive)),
            )
            .collect()
    }

    fn start_push_pull(&mut self) {
        self.effects.push(GossipEffect::Schedule {
            after_ms: self.settings.push_pull_interval_ms(),
            timer: GossipTimer::PushPull,
        });

        let Some(peer) = self
            .swim
            .broadcast_handler()
            .members
            .sample_reachable(&mut self.rng, 1, |_| true)
            .pop()
        else {
            return;
        };
        let (summary, _) = self.digest();
        self.send_anti_entropy(peer, &AntiEntropyMessage::Summary(summary));
    }

    fn on_anti_entropy(&mut self, from: SocketAddr, message: AntiEntropyMessage) {
        match message {
            AntiEntropyMessage::Summary(theirs) => {
                let (ours, buckets) = self.digest();
                if ours != theirs {
                    self.send_anti_entropy(from, &AntiEntropyMessage::Digest(buckets));
                }
            }
            AntiEntropyMessage::Digest(theirs) => {
                let (_, ours) = self.digest();
                let differing = anti_entropy::differing_buckets(&ours, &theirs);
                if differing.is_empty() {
                    return;
                }
                let members = self.members_in(&differing);
                for bytes in anti_entropy::members_messages(members, differing) {
                    self.send_packet(from, PacketKind::AntiEntropy, &bytes);
                }
            }
            AntiEntropyMessage::Members { members, send_back } => {
                let own = self.swim.identity().clone();
                let applicable: Vec<Member<GossipIdentity>> = members
                    .into_iter()
                    .filter(|member| anti_entropy::is_applicable(member, &own))
                    .collect();
                if !applicable.is_empty()
                    && let Err(error) =
                        self.swim
                            .apply_many(applicable.into_iter(), false, &mut self.runtime)
                {
                    tracing::debug!(%from, %error, "anti-entropy members refused");
                }
                if !send_back.is_empty() {
                    let members = self.members_in(&send_back);
                    for bytes in anti_entropy::members_messages(members, Vec::new()) {
                        self.send_packet(from, PacketKind::AntiEntropy, &bytes);
                    }
                }
            }
        }
    }

    /// Turn everything foca asked for into effects and events, until nothing is left.
    fn pump(&mut self) {
        // Each pass can only produce a bounded amount of follow-up work (a metadata send per
        // new member, one broadcast on becoming active), so this settles in a few passes.
        for _pass in 0..16 {
            let mut progressed = false;
            while let Some((to, data)) = self.runtime.to_send() {
                progressed = true;
                let packet = self
                    .envelope
                    .wrap(PacketKind::Swim, &data, self.rng.random());
                self.effects.push(GossipEffect::Send {
                    to: to.addr,
                    packet,
                });
            }
            while let Some((after, timer)) = self.runtime.to_schedule() {
                progressed = true;
                for step in self.suspicions.on_scheduled(&timer) {
                    self.carry_out(step);
                }
                self.effects.push(GossipEffect::Schedule {
                    after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                    timer: GossipTimer::Swim(timer),
                });
            }
            while let Some(notification) = self.runtime.to_notify() {
                progressed = true;
                self.on_notification(notification);
            }
            for event in self.table_owner().take_events() {
                progressed = true;
                self.publish(event);
            }
            if !progressed {
                return;
            }
        }
        tracing::warn!("gossip pump did not settle in 16 passes");
    }

    fn on_notification(&mut self, notification: OwnedNotification<GossipIdentity>) {
        match notification {
            OwnedNotification::MemberUp(identity) => {
                if let Some(event) = self.table_owner().members.on_up(&identity) {
                    self.publish(event);
                }
                if !self.left {
                    self.send_metadata_to(identity.addr);
                }
            }
            OwnedNotification::MemberDown(identity) => {
                if let Some(event) = self.table_owner().members.on_down(&identity) {
                    self.publish(event);
                }
            }
            OwnedNotification::Rename(_, new) => {
                if let Some(event) = self.table_owner().members.on_rename(&new) {
                    self.publish(event);
                }
            }
            OwnedNotification::Active => {
                if self.metadata.state == NodeState::Joining && !self.left {
                    self.metadata.state = NodeState::Active;
                    self.metadata.sequence += 1;
                    self.broadcast_metadata();
                }
                self.publish(MemberEvent::SelfActive);
            }
            OwnedNotification::Idle => self.publish(MemberEvent::SelfIdle),
            OwnedNotification::Rejoin(identity) => {
                tracing::info!(
                    incarnation = identity.incarnation,
                    "declared down; rejoined"
                );
                self.publish(MemberEvent::SelfRejoined {
                    incarnation: identity.incarnation,
                });
                self.broadcast_metadata();
            }
            OwnedNotification::Defunct => {
                // After a graceful leave foca reports itself down: expected, not a problem.
                if self.left {
                    tracing::debug!("left the cluster");
                } else {
                    tracing::warn!("declared down and cannot renew identity");
                }
            }
        }
    }

    fn publish(&mut self, event: MemberEvent) {
        match &event {
            MemberEvent::Up(member) => {
                tracing::info!(member = %member.id, addr = %member.gossip_addr, "member up")
            }
            MemberEvent::Unreachable(member) => {
                tracing::info!(member = %member.id, "member unreachable")
            }
            MemberEvent::Left(member) => tracing::info!(member = %member.id, "member left"),
            other => tracing::debug!(event = ?other, "membership event"),
        }
        self.effects.push(GossipEffect::Event(event));
    }
}
