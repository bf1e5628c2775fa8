//! Classify: which SPEC.md post categories a post's content falls into, and why.
//!
//! Owns running the compiled category rules (see [`crate::patterns`]) over a post's text and
//! alt texts, in the languages that apply, and combining what fired into categories, a severity
//! and findings with matched spans. Pure and synchronous; allocation-light on posts that match
//! nothing.
//!
//! Language: a platform hint decides when it names a rule language; otherwise
//! [`normalise::detect_lang`] (a cheap English/Welsh function-word score) does. When neither is
//! sure (short, mixed or other-language posts) both rule sets apply, so nothing falls between
//! languages.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::model::{Category, Lang, Post, Severity};
use crate::normalise;
use crate::patterns::{RuleKind, RuleSet};

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
pub struct Classifier {
    rules: RuleSet,
}

impl Classifier {
    pub fn new(rules: RuleSet) -> Classifier {
        Classifier { rules }
    }

    /// How many category rules are loaded.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The rule language for a post: a usable platform hint wins unless the text is clearly
    /// in the other rule language; `None` means "apply both".
    pub fn post_lang(post: &Post, text: &str) -> Option<Lang> {
        let hinted = post
            .lang_hints
            .iter()
            .find_map(|h| normalise::lang_from_hint(h));
        let detected = normalise::detect_lang(text);
        match (hinted, detected) {
            (Some(h), Some(d)) if h != d => None,
            (Some(h), _) => Some(h),
            (None, d) => d,
        }
    }

    pub fn classify(&self, post: &Post) -> Classification {
        let text = post.full_text();
        self.classify_text(&text, Self::post_lang(post, &text))
    }

    /// Classify a plain text whose rule language is `lang` (`None`: both).
    pub fn classify_text(&self, text: &str, lang: Option<Lang>) -> Classification {
        let mut out = Classification {
            lang,
            ..Default::default()
        };
        for m in self.rules.matches(text, |r| r.applies_to(lang)) {
            let RuleKind::Category(category) = m.rule.kind else {
                continue;
            };
            let matched = m
                .spans
                .iter()
                .map(|s| text[s.clone()].trim())
                .collect::<Vec<_>>()
                .join(" … ");
            out.severity = out.severity.max(Some(m.rule.severity));
            if !out.categories.contains(&category) {
                out.categories.push(category);
            }
            out.findings.push(Finding {
                rule_id: m.rule.id.clone(),
                category,
                severity: m.rule.severity,
                spans: m.spans,
                matched,
            });
        }
        out.categories.sort();
        out
    }
}
