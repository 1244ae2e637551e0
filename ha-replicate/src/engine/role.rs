//! Raft roles.

use std::fmt;

/// What part an engine plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking whether it could win, before raising its term.
    PreCandidate,
    /// Campaigning in a new term.
    Candidate,
    /// Leading its term.
    Leader,
    /// Replicates without voting (not yet promoted).
    Learner,
}

impl Role {
    /// The lower-case name used in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}
