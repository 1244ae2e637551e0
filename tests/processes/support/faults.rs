//! Random faults for the mixed chaos run and the soak: one step at a time, chosen by a seeded
//! RNG, applied, held for a while, then healed (killed nodes restarted from their data dirs,
//! paused ones continued, the network healed). A step may combine two faults.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::cluster::TestCluster;
use super::fabric::Fabric;

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL the leader.
    KillLeader,
    /// SIGKILL a follower.
    KillFollower,
    /// SIGSTOP the leader for longer than the election timeout.
    PauseLeader,
    /// SIGSTOP a follower.
    PauseFollower,
    /// Cut a minority (with the leader) from the majority.
    PartitionMinority,
    /// Cut the leader from everyone.
    IsolateLeader,
    /// Two halves that only one node bridges.
    Bridge,
    /// 20% packet loss between nodes.
    Loss,
}

const PROCESS_FAULTS: [Fault; 4] = [
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::PauseLeader,
    Fault::PauseFollower,
];
const NETWORK_FAULTS: [Fault; 4] = [
    Fault::PartitionMinority,
    Fault::IsolateLeader,
    Fault::Bridge,
    Fault::Loss,
];

/// Injects faults into one cluster.
pub struct FaultInjector<'a> {
    fabric: Option<&'a Fabric>,
    rng: StdRng,
    killed: Vec<usize>,
    paused: Vec<usize>,
    /// How many faults of each kind were injected.
    pub injected: BTreeMap<Fault, u64>,
    /// Steps run.
    pub steps: u64,
}

impl<'a> FaultInjector<'a> {
    /// Faults chosen from `seed`; network faults only with a `fabric`.
    pub fn new(fabric: Option<&'a Fabric>, seed: u64) -> Self {
        Self {
            fabric,
            rng: StdRng::seed_from_u64(seed),
            killed: Vec::new(),
            paused: Vec::new(),
            injected: BTreeMap::new(),
            steps: 0,
        }
    }

    /// Network faults injected so far.
    pub fn network_faults(&self) -> u64 {
        NETWORK_FAULTS
            .iter()
            .filter_map(|fault| self.injected.get(fault))
            .sum()
    }

    /// Half the faults are network faults when there is a fabric, and the first fault of a
    /// run with a fabric always is one, so no run, however short, can miss them by chance.
    fn choose(&mut self) -> Fault {
        let coin = self.rng.random_range(0..2) == 0;
        let overdue = self.network_faults() == 0;
        let network = self.fabric.is_some() && (coin || overdue);
        let kinds = if network {
            &NETWORK_FAULTS
        } else {
            &PROCESS_FAULTS
        };
        kinds[self.rng.random_range(0..kinds.len())]
    }

    fn follower(&mut self, cluster: &TestCluster, leader: Option<usize>) -> Option<usize> {
        let candidates: Vec<usize> = (0..cluster.specs.len())
            .filter(|index| Some(*index) != leader)
            .filter(|index| cluster.running(*index) && !self.paused.contains(index))
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.random_range(0..candidates.len())])
    }

    fn apply(&mut self, cluster: &mut TestCluster, fault: Fault) -> String {
        let nodes = cluster.specs.len();
        // Paused nodes are not asked: their answer would wait for them to wake.
        let leader = cluster.leader(&self.paused);
        let target = match fault {
            Fault::KillLeader | Fault::PauseLeader | Fault::IsolateLeader => leader,
            Fault::KillFollower | Fault::PauseFollower => self.follower(cluster, leader),
            _ => leader.or(Some(0)),
        };
        let Some(target) = target else {
            return format!("{fault:?}: no target");
        };
        let id = cluster.specs[target].id.clone();
        match fault {
            Fault::KillLeader | Fault::KillFollower => {
                cluster.kill(target);
                self.killed.push(target);
            }
            Fault::PauseLeader | Fault::PauseFollower => {
                cluster.signal(target, Signal::SIGSTOP);
                self.paused.push(target);
            }
            Fault::PartitionMinority => {
                let minority: Vec<usize> = (0..(nodes - 1) / 2)
                    .map(|offset| (target + offset) % nodes)
                    .collect();
                let majority: Vec<usize> = (0..nodes).filter(|i| !minority.contains(i)).collect();
                self.fabric().partition(&[&minority, &majority]);
            }
            Fault::IsolateLeader => {
                let others: Vec<usize> = (0..nodes).filter(|&i| i != target).collect();
                self.fabric().partition(&[&[target], &others]);
            }
            Fault::Bridge => {
                // `target` bridges: the others split in two halves that cannot talk.
                let others: Vec<usize> =
                    (1..nodes).map(|offset| (target + offset) % nodes).collect();
                let (left, right) = others.split_at(others.len() / 2);
                let cuts: Vec<(usize, usize)> = left
                    .iter()
                    .flat_map(|&a| right.iter().map(move |&b| (a, b)))
                    .collect();
                self.fabric().cut(&cuts);
            }
            Fault::Loss => self.fabric().lossy(20),
        }
        *self.injected.entry(fault).or_default() += 1;
        format!("{fault:?} {id}")
    }

    fn fabric(&self) -> &'a Fabric {
        self.fabric.expect("network faults only with a fabric")
    }

    /// Undo every fault: restart killed nodes, continue paused ones, heal the network.
    pub fn heal(&mut self, cluster: &mut TestCluster) {
        for index in self.paused.drain(..) {
            cluster.signal(index, Signal::SIGCONT);
        }
        for index in self.killed.drain(..) {
            cluster.spawn(index);
        }
        if let Some(fabric) = self.fabric {
            fabric.heal();
        }
    }

    /// One step: one fault (sometimes two), held for 1 to 3 s, then healed, then 1 s of calm.
    /// Returns what was done, for the log.
    pub fn step(&mut self, cluster: &mut TestCluster) -> String {
        self.steps += 1;
        let started = Instant::now();
        let first = self.choose();
        let mut done = vec![self.apply(cluster, first)];
        if self.rng.random_range(0..3) == 0 {
            let second = self.choose();
            done.push(self.apply(cluster, second));
        }
        std::thread::sleep(Duration::from_millis(self.rng.random_range(1_000..3_000)));
        self.heal(cluster);
        std::thread::sleep(Duration::from_secs(1));
        format!("{} ({:?})", done.join(" + "), started.elapsed())
    }
}
