//! A network of Linux network namespaces for the chaos tests: one namespace per node and one
//! "switch" namespace holding a bridge, each node joined to it by a veth pair. Partitions and
//! packet loss are nftables rules in the nodes' namespaces, so packets are dropped silently,
//! as on a real network (an unreachable route would fail sends at once instead).
//!
//! ```text
//!   node ns p-n1 (eth0 10.77.0.1) ─veth─┐
//!   node ns p-n2 (eth0 10.77.0.2) ─veth─┼─ br0 10.77.0.254  in switch ns p-sw  ◀── test clients
//!   node ns p-n3 (eth0 10.77.0.3) ─veth─┘
//! ```
//!
//! Nothing is created in the test's own namespace: the veth pairs are made inside the switch
//! namespace and one end is moved into the node's. The test's client threads enter the switch
//! namespace with `setns`, so they reach every node whatever the partition (clients are never
//! cut off: what a node on the wrong side does with their requests is what is tested).
//! Dropping the fabric deletes every namespace it made; processes must be killed first.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sched::{CloneFlags, setns};

/// Why the fabric cannot be built here: under CI the test that needs it fails with this
/// message; elsewhere it is skipped (or runs without network faults) and says so loudly.
#[derive(Debug)]
pub struct Unsupported(pub String);

/// The namespaces, links and filter tables of one test.
pub struct Fabric {
    prefix: String,
    nodes: usize,
    created: Vec<String>,
    /// Partitions, cuts and loss rule sets applied so far (heals not counted).
    applied: AtomicU64,
}

/// Whether the tests run under CI (`CI` set to anything but empty, `0` or `false`, as CI
/// services and `.ci/run` do): there a missing prerequisite of a network test is a failure,
/// not a skip, so a green run always means the partitions were applied.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false" | "FALSE"))
}

/// The subnet every fabric uses: namespaces keep fabrics of concurrent tests apart.
const SUBNET: [u8; 3] = [10, 77, 0];
/// The switch's own address, from which the test's clients connect.
const SWITCH_HOST: u8 = 254;

fn run(program: &str, arguments: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Fabric {
    /// Build namespaces for `nodes` nodes. Needs root, `ip` (iproute2) and `nft` (nftables).
    ///
    /// # Errors
    /// [`Unsupported`] when this machine or user cannot build it; the caller skips its test.
    pub fn build(label: &str, nodes: usize) -> Result<Self, Unsupported> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(Unsupported("not root: network namespaces need root".into()));
        }
        for (program, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            if run(program, &["-V"]).is_err() {
                return Err(Unsupported(format!(
                    "`{program}` not found: install Debian's {package}"
                )));
            }
        }
        let prefix = format!("ha{}{label}", std::process::id() % 100_000);
        let mut fabric = Self {
            prefix,
            nodes,
            created: Vec::new(),
            applied: AtomicU64::new(0),
        };
        fabric.create().map_err(Unsupported)?;
        Ok(fabric)
    }

    /// [`build`](Self::build) with the CI rule for test `what`: under CI ([`in_ci`]) a fabric
    /// that cannot be built fails the test with the reason and the fix; elsewhere the reason
    /// is printed in a banner on stdout and straight to stderr (so `cargo test` shows it
    /// without `--nocapture`) and `None` is returned for the caller to skip or degrade.
    ///
    /// # Panics
    /// Under CI, when the fabric cannot be built.
    pub fn build_or_skip(label: &str, nodes: usize, what: &str) -> Option<Self> {
        match Self::build(label, nodes) {
            Ok(fabric) => Some(fabric),
            Err(why) => {
                let reason = format!(
                    "{what} needs network namespaces and cannot build them here: {}. \
                     Run as root with `ip` and `nft` installed \
                     (`apt-get install -y iproute2 nftables`).",
                    why.0
                );
                assert!(
                    !in_ci(),
                    "CI is set, so this is a failure, not a skip: {reason}"
                );
                let banner = format!(
                    "\n!!!!!!!! NETWORK FAULTS NOT TESTED !!!!!!!!\n{reason}\n\
                     (set CI=true to make this a failure)\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                );
                println!("{banner}");
                // Straight to the file descriptor: the test harness captures `eprintln!` of
                // passing tests, and a skip must be seen.
                let _ = std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes());
                None
            }
        }
    }

    /// How many partitions, cuts and loss rule sets have been applied (heals not counted).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The namespace of node `index` (0-based).
    pub fn namespace(&self, index: usize) -> String {
        format!("{}-n{}", self.prefix, index + 1)
    }

    /// The address of node `index` (0-based).
    pub fn address(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], index as u8 + 1)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        run("ip", &["netns", "add", name])?;
        self.created.push(name.to_string());
        run("ip", &["-n", name, "link", "set", "lo", "up"])
    }

    fn create(&mut self) -> Result<(), String> {
        let switch = self.switch();
        self.add_namespace(&switch)?;
        let sw = |arguments: &[&str]| {
            let mut all = vec!["-n", switch.as_str()];
            all.extend_from_slice(arguments);
            run("ip", &all)
        };
        sw(&["link", "add", "br0", "type", "bridge"])?;
        let switch_address = format!("{}.{}.{}.{SWITCH_HOST}/24", SUBNET[0], SUBNET[1], SUBNET[2]);
        sw(&["addr", "add", &switch_address, "dev", "br0"])?;
        sw(&["link", "set", "br0", "up"])?;
        for index in 0..self.nodes {
            let namespace = self.namespace(index);
            self.add_namespace(&namespace)?;
            let port = format!("p{}", index + 1);
            sw(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])?;
            sw(&["link", "set", &port, "master", "br0", "up"])?;
            let address = format!("{}/24", self.address(index));
            run(
                "ip",
                &["-n", &namespace, "addr", "add", &address, "dev", "eth0"],
            )?;
            run("ip", &["-n", &namespace, "link", "set", "eth0", "up"])?;
            self.nft(
                index,
                "add table inet chaos; \
                 add chain inet chaos input { type filter hook input priority 0; policy accept; }",
            )?;
        }
        Ok(())
    }

    fn nft(&self, index: usize, script: &str) -> Result<(), String> {
        run(
            "ip",
            &["netns", "exec", &self.namespace(index), "nft", script],
        )
    }

    /// Move the calling thread (and threads it spawns afterwards) into the switch namespace,
    /// from where every node is reachable whatever the partition. Other threads are unaffected.
    ///
    /// # Panics
    /// When the namespace cannot be entered.
    pub fn enter_switch(&self) {
        let path = format!("/var/run/netns/{}", self.switch());
        let file = File::open(&path).unwrap_or_else(|error| panic!("open {path}: {error}"));
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|error| panic!("setns: {error}"));
    }

    /// The command prefix that runs a program inside node `index`'s namespace. `ip netns exec`
    /// execs the program in place, so the process id is the program's.
    pub fn exec_prefix(&self, index: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespace(index),
        ]
    }

    /// Cut the network into `sides`: nodes on different sides cannot exchange any packet
    /// (nodes in no side stay connected to everyone). Replaces any earlier partition or loss.
    ///
    /// # Panics
    /// When a rule cannot be installed.
    pub fn partition(&self, sides: &[&[usize]]) {
        self.heal();
        self.applied.fetch_add(1, Ordering::Relaxed);
        for (side_index, side) in sides.iter().enumerate() {
            for (other_index, other) in sides.iter().enumerate() {
                if side_index == other_index {
                    continue;
                }
                for &node in *side {
                    for &peer in *other {
                        self.block(node, peer);
                    }
                }
            }
        }
    }

    /// Drop every packet `node` receives from `peer` (one direction).
    ///
    /// # Panics
    /// When the rule cannot be installed.
    pub fn block(&self, node: usize, peer: usize) {
        let rule = format!(
            "add rule inet chaos input ip saddr {} drop",
            self.address(peer)
        );
        self.nft(node, &rule)
            .unwrap_or_else(|error| panic!("partition: {error}"));
    }

    /// Cut `pairs` of nodes apart (both directions), leaving every other link up.
    ///
    /// # Panics
    /// When a rule cannot be installed.
    pub fn cut(&self, pairs: &[(usize, usize)]) {
        self.heal();
        self.applied.fetch_add(1, Ordering::Relaxed);
        for &(a, b) in pairs {
            self.block(a, b);
            self.block(b, a);
        }
    }

    /// Drop `percent` of the packets each node receives from the other nodes, at random.
    ///
    /// # Panics
    /// When the rule cannot be installed.
    pub fn lossy(&self, percent: u8) {
        self.heal();
        self.applied.fetch_add(1, Ordering::Relaxed);
        let switch_host = format!("{}.{}.{}.{SWITCH_HOST}", SUBNET[0], SUBNET[1], SUBNET[2]);
        for node in 0..self.nodes {
            let rule = format!(
                "add rule inet chaos input ip saddr != {switch_host} numgen random mod 100 < {percent} drop"
            );
            self.nft(node, &rule)
                .unwrap_or_else(|error| panic!("loss: {error}"));
        }
    }

    /// Remove every partition and loss rule.
    ///
    /// # Panics
    /// When the rules cannot be flushed.
    pub fn heal(&self) {
        for node in 0..self.nodes {
            self.nft(node, "flush chain inet chaos input")
                .unwrap_or_else(|error| panic!("heal: {error}"));
        }
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces (and the veth peers with them).
        for name in self.created.iter().rev() {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}
