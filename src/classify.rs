//! Classify: which SPEC.md post categories a post's content falls into, and why.
//!
//! Owns running the compiled category rules (see [`crate::patterns`]) over a post's text and
//! alt texts, in the languages that apply, and combining what fired into categories, a severity
//! and findings with matched spans. Pure and synchronous; allocation-light on posts that match
//! nothing.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::model::{Category, Lang, Post, Severity};

/// One rule that fired on a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule_id: String,
    pub category: Category,
    pub severity: Severity,
    /// Byte ranges into `Post::full_text()` of the matched words.
    pub spans: Vec<Range<usize>>,
    /// The matched words, joined with " … " when there are several.
    pub matched: String,
}

/// The classifier's answer for one post.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// The language whose rules were decisive (detected or hinted), when known.
    pub lang: Option<Lang>,
    /// Distinct categories, in taxonomy order.
    pub categories: Vec<Category>,
    /// The most urgent severity of the findings; `None` when nothing fired.
    pub severity: Option<Severity>,
    pub findings: Vec<Finding>,
}

impl Classification {
    pub fn is_hit_content(&self) -> bool {
        !self.categories.is_empty()
    }
}

/// The compiled category rules.
pub struct Classifier {}

impl Classifier {
    pub fn classify(&self, _post: &Post) -> Classification {
        Classification::default()
    }
}
