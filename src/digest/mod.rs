//! Digest: turn unsent hits into one message per PSD route and hand it to a mail transport.
//!
//! Owns grouping (force, then account), rendering plain-text and HTML parts with an
//! auto-escaping template engine (post content is hostile), the coverage section, and the
//! transports (`file` outbox of `.eml` files, `smtp` via lettre). A hit is marked sent only
//! after the transport accepted the message that carries it.

use crate::config::Config;
use crate::store::Store;

/// What a digest run did, per route.
#[derive(Debug, Clone, Default)]
pub struct DigestOutcome {
    pub messages_sent: usize,
    pub hits_sent: usize,
    /// Routes whose message failed, with the error.
    pub failures: Vec<(String, String)>,
}

/// Build and send (or, with `dry_run`, print to `out`) the digest of every unsent hit.
pub async fn run(
    _config: &Config,
    _store: &Store,
    _dry_run: bool,
    _out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<DigestOutcome> {
    Ok(DigestOutcome::default())
}
