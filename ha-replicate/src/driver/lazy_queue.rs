//! A bounded queue from the event loop to one of the driver's threads (storage, apply) whose
//! memory grows with what is queued, not with its bound.
//!
//! `std::sync::mpsc::sync_channel(n)` allocates and writes all `n` slots when it is made: the
//! apply queue's bound of 70,656 tasks cost every idle node 1.6 MiB of resident memory
//! (measured with heaptrack and `/proc/<pid>/smaps`, issue 17's idle-memory regression). Here
//! the values travel on an unbounded channel, which allocates blocks of slots as they fill
//! and frees them as they drain, and a counter of the values queued keeps the bound: the
//! same limit, paid for only while a disk or a state machine is behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvError, SendError, TryRecvError, TrySendError};
use std::time::Duration;

/// How long a sender facing a full queue sleeps before it looks again. A full queue means a
/// disk or a state machine far behind (the bounds upstream keep a healthy node from ever
/// filling it), so a millisecond more of waiting is nothing next to that.
const FULL_QUEUE_POLL: Duration = Duration::from_millis(1);

/// A queue of at most `capacity` values; see the module documentation.
pub(crate) fn lazy_queue<T>(capacity: usize) -> (LazySender<T>, LazyReceiver<T>) {
    let (sender, receiver) = mpsc::channel();
    let room = Arc::new(Room {
        queued: AtomicUsize::new(0),
        receiver_gone: AtomicBool::new(false),
    });
    (
        LazySender {
            sender,
            room: Arc::clone(&room),
            capacity: capacity.max(1),
        },
        LazyReceiver { receiver, room },
    )
}

/// What the two ends share: the count that bounds the queue.
struct Room {
    /// Values sent and not yet received.
    queued: AtomicUsize,
    /// Set when the receiver is dropped (also when its thread panics), so that a sender
    /// waiting for room stops waiting.
    receiver_gone: AtomicBool,
}

/// The sending end. There is one sender per queue (the driver's event loop), so the check
/// for room and the send that follows cannot race with another sender.
pub(crate) struct LazySender<T> {
    sender: mpsc::Sender<T>,
    room: Arc<Room>,
    capacity: usize,
}

impl<T> LazySender<T> {
    /// Queue `value` if there is room.
    ///
    /// # Errors
    /// [`TrySendError::Full`] when `capacity` values are queued; [`TrySendError::Disconnected`]
    /// when the receiver is gone. Either way the value is handed back and nothing is queued.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.room.receiver_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Disconnected(value));
        }
        if self.room.queued.load(Ordering::Acquire) >= self.capacity {
            return Err(TrySendError::Full(value));
        }
        // Counted before it is sent: the receiver subtracts only what it has taken, so the
        // count never goes below zero.
        self.room.queued.fetch_add(1, Ordering::AcqRel);
        self.sender.send(value).map_err(|SendError(value)| {
            self.room.queued.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(value)
        })
    }

    /// Queue `value`, waiting for room while the receiver lives (back-pressure, as a full
    /// `sync_channel` gives).
    ///
    /// # Errors
    /// [`SendError`] with the value when the receiver is gone.
    pub(crate) fn send(&self, mut value: T) -> Result<(), SendError<T>> {
        loop {
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => {
                    value = back;
                    std::thread::sleep(FULL_QUEUE_POLL);
                }
            }
        }
    }
}

/// The receiving end, owned by the thread that works through the queue.
pub(crate) struct LazyReceiver<T> {
    receiver: mpsc::Receiver<T>,
    room: Arc<Room>,
}

impl<T> LazyReceiver<T> {
    /// The next value, waiting for one.
    ///
    /// # Errors
    /// [`RecvError`] once the sender is gone and the queue is empty.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        let value = self.receiver.recv()?;
        self.room.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(value)
    }

    /// The next value if one is queued.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when none is; [`TryRecvError::Disconnected`] once the sender
    /// is gone and the queue is empty.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let value = self.receiver.try_recv()?;
        self.room.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(value)
    }
}

impl<T> Drop for LazyReceiver<T> {
    fn drop(&mut self) {
        self.room.receiver_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_room_comes_back_as_values_are_taken() {
        let (sender, receiver) = lazy_queue(3);
        for value in 0..3 {
            assert!(sender.try_send(value).is_ok());
        }
        assert!(matches!(sender.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(receiver.recv(), Ok(0));
        assert!(sender.try_send(3).is_ok());
        assert!(matches!(sender.try_send(4), Err(TrySendError::Full(4))));
        let taken: Vec<i32> = std::iter::from_fn(|| receiver.try_recv().ok()).collect();
        assert_eq!(taken, vec![1, 2, 3], "in order, each once");
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_sender_waiting_for_room_is_released_by_a_receive_or_by_the_receiver_going() {
        let (sender, receiver) = lazy_queue(1);
        assert!(sender.send(1).is_ok());
        let taker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let first = receiver.recv();
            std::thread::sleep(Duration::from_millis(20));
            drop(receiver);
            first
        });
        // Full: waits until the taker receives 1.
        assert!(sender.send(2).is_ok());
        assert_eq!(taker.join().ok(), Some(Ok(1)));
        // The receiver is gone with 2 still queued: a send hands its value back at once
        // instead of waiting for room forever.
        assert_eq!(sender.send(3), Err(SendError(3)));
        assert!(matches!(
            sender.try_send(4),
            Err(TrySendError::Disconnected(4))
        ));
    }

    #[test]
    fn the_receiver_sees_the_end_once_the_sender_is_gone_and_the_queue_drained() {
        let (sender, receiver) = lazy_queue(4);
        assert!(sender.send("last").is_ok());
        drop(sender);
        assert_eq!(receiver.recv(), Ok("last"));
        assert_eq!(receiver.recv(), Err(RecvError));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    }
}
