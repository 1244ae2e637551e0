//! Three facade nodes in one process on loopback: they find each other by gossip, elect one
//! leader, replicate the host's state machine, publish role and membership events, advertise
//! LEADER in gossip, and a graceful shutdown hands leadership over, frees the node's locks at
//! once (no TTL wait) and leaves gossip. Every wait polls with a deadline.

use std::time::{Duration, Instant};

use ha::{
    Config, Consistency, LogIndex, MemberEvent, Node, NodeEvent, NodeId, NodeState, Priority, Role,
    StateMachine, StateMachineError,
};

const WAIT: Duration = Duration::from_secs(20);

/// A register of the last value written.
#[derive(Default)]
struct Register(String);

impl StateMachine for Register {
    type Command = String;
    type Response = String;
    type Query = ();
    type QueryResponse = String;
    fn apply(&mut self, _index: LogIndex, value: String) -> String {
        std::mem::replace(&mut self.0, value)
    }
    fn query(&self, _: &()) -> String {
        self.0.clone()
    }
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        Ok(self.0.as_bytes().to_vec())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
        self.0 = String::from_utf8(bytes.to_vec())
            .map_err(|error| StateMachineError::Corrupt(error.to_string()))?;
        Ok(())
    }
}

async fn start(index: usize, seed: Option<std::net::SocketAddr>) -> Node<Register> {
    let id = NodeId::new(format!("n{index}")).unwrap();
    // The first node has no one to join yet; a validated 3-voter config needs a seed.
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())];
    let mut config = Config::full_ha(id, "127.0.0.1:0".parse().unwrap(), seeds);
    config.priority = Priority(1);
    Node::builder(config)
        .state_machine(Register::default())
        // Each drain step (hand over leadership, revoke leases, leave) may take this long: a
        // transfer cut short on a busy machine would make the failover cause `leader_lost`
        // instead of the `shutdown` the test checks. A drain that works takes milliseconds.
        .drain_timeout(Duration::from_secs(10))
        .start()
        .await
        .expect("starts")
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_publish_events_and_drain_gracefully() {
    let first = start(1, None).await;
    let mut events = first.events();
    let seed = Some(first.gossip_addr());
    let nodes = [first, start(2, seed).await, start(3, seed).await];
    wait_until("one leader", || {
        nodes.iter().filter(|node| node.is_leader()).count() == 1
    })
    .await;
    let leader = nodes.iter().position(Node::is_leader).unwrap();
    let follower = (leader + 1) % 3;

    // Writes through a follower, read back linearizably elsewhere.
    let written = nodes[follower]
        .propose("a".to_string(), Consistency::Quorum)
        .await
        .unwrap();
    assert_eq!(written.response.as_deref(), Some(""));
    let other = (leader + 2) % 3;
    assert_eq!(
        nodes[other].read((), Consistency::Strong).await.unwrap(),
        "a"
    );

    // The leader advertises LEADER; the others see it.
    wait_until("LEADER advertised", || {
        nodes[follower]
            .members()
            .iter()
            .any(|member| member.id == *nodes[leader].id() && member.state() == NodeState::Leader)
    })
    .await;
    // Node 1's event stream saw its peers and a role change.
    let mut saw_member = false;
    let mut saw_role = false;
    while let Ok(event) = events.try_recv() {
        match event {
            NodeEvent::Member(MemberEvent::Up(_)) => saw_member = true,
            NodeEvent::RoleChanged { .. } => saw_role = true,
            _ => {}
        }
    }
    assert!(
        saw_member && saw_role,
        "member {saw_member}, role {saw_role}"
    );

    // The leader holds a lock with a long TTL, then shuts down gracefully.
    let guard = nodes[leader]
        .locks()
        .acquire("duty", Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap();
    let token = guard.token();
    std::mem::forget(guard); // as if the host still held it at shutdown
    let stopping = nodes[leader].clone();
    let stopped_at = Instant::now();
    stopping.shutdown().await;
    let drained_in = stopped_at.elapsed();
    let survivors: Vec<&Node<Register>> = (0..3)
        .filter(|index| *index != leader)
        .map(|index| &nodes[index])
        .collect();
    wait_until("a new leader", || {
        survivors.iter().any(|node| node.is_leader())
    })
    .await;
    let new_leader = survivors.iter().find(|node| node.is_leader()).unwrap();
    let history = new_leader.failover_history().await.unwrap();
    assert_eq!(history.last().unwrap().cause, "shutdown", "{history:?}");
    // The lock was released by the drain: granted at once, not after its 30 s TTL.
    let next = new_leader
        .locks()
        .try_acquire("duty", Duration::from_secs(5))
        .await
        .expect("the drained node's lock is free");
    assert!(next.token() > token);
    // Gossip saw it leave rather than fail.
    wait_until("the stopped node gone from gossip", || {
        !new_leader
            .members()
            .iter()
            .any(|member| member.id == *stopping.id() && member.reachable)
    })
    .await;
    assert_eq!(new_leader.role().role, Role::Leader);
    println!("graceful drain took {drained_in:?}");
    for node in survivors {
        node.shutdown().await;
    }
}
