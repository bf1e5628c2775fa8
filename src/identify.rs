//! Identify: decide whether an account's owner self-identifies as police.
//!
//! Owns the identity resolver: identity signals (rank and role words, collar numbers, force
//! names, "views my own" disclaimers) and counter-signals (former, family, fiction, official
//! accounts, "grammar police", ...) found in the display name, bio and posts, combined into one
//! SPEC.md identity label with a score, the canonical force and the evidence. Pure and
//! synchronous; it never touches storage or the network.

use serde::{Deserialize, Serialize};

use crate::model::{Account, Identity, Post};

/// Where a piece of identity evidence was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum EvidenceSource {
    DisplayName,
    Bio,
    Post { platform_id: String },
}

/// One signal that contributed to a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub source: EvidenceSource,
    /// The pattern rule (or signal) id that fired.
    pub signal: String,
    /// The words that matched.
    pub text: String,
}

/// The resolver's answer for one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityVerdict {
    pub identity: Identity,
    /// Confidence in `identity`, 0.0 to 1.0.
    pub score: f32,
    /// Canonical force name (see [`crate::forces`]), when known.
    pub force: Option<String>,
    pub role: Option<String>,
    pub evidence: Vec<Evidence>,
}

/// Identity signals accumulated from an account's posts. Small, mergeable and serialisable so
/// the store can keep it between scans without keeping post text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostSignals {
    pub evidence: Vec<Evidence>,
}

impl PostSignals {
    pub fn merge(&mut self, other: PostSignals) {
        self.evidence.extend(other.evidence);
    }
    pub fn is_empty(&self) -> bool {
        self.evidence.is_empty()
    }
}

/// The compiled identity resolver.
pub struct Identifier {}

impl Identifier {
    /// Identity signals in one post (cheap; called for every post read).
    pub fn post_signals(&self, _post: &Post) -> PostSignals {
        PostSignals::default()
    }

    /// The verdict for an account given everything known of its posts.
    pub fn identify(&self, _account: &Account, _posts: &PostSignals) -> IdentityVerdict {
        IdentityVerdict { identity: Identity::None, score: 0.0, force: None, role: None, evidence: vec![] }
    }
}
