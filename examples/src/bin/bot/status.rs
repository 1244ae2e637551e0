//! `bot status --http ADDR`: the cluster table, once the admin HTTP API exists.

use crate::cli::StatusArgs;
use crate::error::BotError;

/// Refuse clearly: the admin HTTP API (DESIGN.md section 8) does not exist yet, and printing a
/// table made from anything else would pass for the real thing. The subcommand is kept so the
/// command line stays stable for scripts.
///
/// # Errors
/// Always [`BotError::NotAvailable`] (exit code 2) in this version.
pub fn run(args: &StatusArgs) -> Result<(), BotError> {
    Err(BotError::NotAvailable(format!(
        "status: not available yet. It reads GET /v1/cluster from a node's admin HTTP API, \
         which arrives with a later version of ha; nothing was contacted at {}. Until then, \
         watch the EVENT lines a node prints on stdout.",
        args.http
    )))
}
