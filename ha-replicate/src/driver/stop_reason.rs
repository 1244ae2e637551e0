//! Why a replica's task ended, shared by the node handle, its clients and the task itself, so
//! that a call made after the task is gone still says whether the store stopped it.

use std::sync::{Arc, OnceLock};

use crate::replica::ClientError;
use crate::storage::{StorageError, StorageFailure};

/// Set once, by the task, when its store stopped it; unset for a shutdown.
#[derive(Clone, Debug, Default)]
pub(crate) struct StopReason(Arc<OnceLock<(StorageFailure, Arc<StorageError>)>>);

impl StopReason {
    /// Record the storage failure that stopped the replica (the first one wins).
    pub(crate) fn set_fatal(&self, failure: StorageFailure, error: Arc<StorageError>) {
        let _ = self.0.set((failure, error));
    }

    /// The store's error that stopped the replica, if it did.
    pub(crate) fn storage_error(&self) -> Option<Arc<StorageError>> {
        self.0.get().map(|(_, error)| error.clone())
    }

    /// What a request to the stopped replica is answered: [`ClientError::Fatal`] when its
    /// store stopped it, [`ClientError::Stopped`] when it was shut down.
    pub(crate) fn error(&self) -> ClientError {
        match self.0.get() {
            Some((failure, _)) => ClientError::Fatal(failure.clone()),
            None => ClientError::Stopped("the replica has stopped".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_is_stopped_and_a_storage_failure_is_fatal_from_then_on() {
        let reason = StopReason::default();
        let shared = reason.clone();
        assert!(matches!(reason.error(), ClientError::Stopped(_)));
        assert!(reason.storage_error().is_none());
        let error = StorageError::Misuse("gap".into());
        let failure = StorageFailure::from(&error);
        shared.set_fatal(failure.clone(), Arc::new(error));
        assert_eq!(reason.error(), ClientError::Fatal(failure));
        let kept = reason.storage_error().expect("kept");
        assert_eq!(kept.to_string(), "storage misuse: gap");
    }
}
