//! exposure-monitor: early sight, for a police force's Professional Standards Department, of
//! officers and staff who put integrity at risk on public social media.
//!
//! # Architecture
//! Data flows through six stages, each a module behind a small interface:
//!
//! 1. [`sources`]: platform connectors, each a paged, resumable [`sources::Source`];
//! 2. [`normalise`]: platform HTML to plain text, and language detection;
//! 3. [`identify`]: does the author self-identify as police? ([`identify::Identifier`]);
//! 4. [`classify`]: which SPEC.md categories does a post fall into? ([`classify::Classifier`]),
//!    both driven by the operator's rules in [`patterns`] and the [`forces`] list;
//! 5. [`store`]: SQLite via sqlx; hits with evidence, reviews, cursors, runs;
//! 6. [`digest`]: one message per PSD route, via a file outbox or SMTP.
//!
//! [`scan`] drives stages 1 to 5 for every configured source; [`eval`] runs 3 and 4 over a
//! labelled corpus; [`cli`] is the command line; [`config`] the validated TOML config.

pub mod classify;
pub mod cli;
pub mod config;
pub mod digest;
pub mod eval;
pub mod forces;
pub mod identify;
pub mod model;
pub mod normalise;
pub mod patterns;
pub mod redact;
pub mod scan;
pub mod sources;
pub mod store;
