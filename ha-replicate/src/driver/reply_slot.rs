//! A caller's answer channel shared by the replica loop and the apply thread (issue 17,
//! sequential write latency): the apply thread answers a routed QUORUM write as soon as it
//! has applied its entry (`replica/reply_route.rs`), while the loop may still answer the same
//! request another way (its deadline passed, the node lost its quorum or stopped). Whichever
//! sends first is the answer the caller gets; the other finds the slot empty.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::replica::ClientReply;

/// One waiting caller's answer channel, sent to at most once by any of its clones.
#[derive(Clone, Debug)]
pub(crate) struct ReplySlot(Arc<Mutex<Option<oneshot::Sender<ClientReply>>>>);

impl ReplySlot {
    /// A slot holding `sender`.
    pub(crate) fn new(sender: oneshot::Sender<ClientReply>) -> Self {
        Self(Arc::new(Mutex::new(Some(sender))))
    }

    /// Answer the caller, unless a clone answered already. Returns whether this call
    /// answered (a caller that gave up waiting still counts as answered).
    pub(crate) fn send(&self, reply: ClientReply) -> bool {
        // Held for one `take`: never across an await, never while sending.
        let sender = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        match sender {
            Some(sender) => {
                let _ = sender.send(reply);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::ClientError;

    #[test]
    fn the_first_answer_wins_and_the_second_is_dropped() {
        let (sender, mut receiver) = oneshot::channel();
        let slot = ReplySlot::new(sender);
        let other = slot.clone();
        assert!(other.send(ClientReply::Failed(ClientError::Timeout)));
        assert!(!slot.send(ClientReply::Failed(ClientError::LeadershipLost)));
        assert_eq!(
            receiver.try_recv().expect("one answer"),
            ClientReply::Failed(ClientError::Timeout)
        );
    }
}
