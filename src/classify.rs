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
use crate::patterns::{mask_phrases, RuleKind, RuleMatch, RuleSet};
use regex::Regex;

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
    /// Allowlisted phrases, blanked out of a text before the rules run.
    allowed_phrases: Option<Regex>,
}

impl Classifier {
    pub fn new(rules: RuleSet) -> Classifier {
        Classifier { rules, allowed_phrases: None }
    }

    /// Phrases removed before classification (see `[allowlist] phrases` in the pattern files).
    pub fn with_allowed_phrases(mut self, phrases: Option<Regex>) -> Classifier {
        self.allowed_phrases = phrases;
        self
    }

    /// How many category rules are loaded.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The compiled category rules (benchmarks export their regexes for a reference engine).
    pub fn rules(&self) -> &[crate::patterns::Rule] {
        &self.rules.rules
    }

    /// The rule language for a post: a usable platform hint wins unless the text is clearly
    /// in the other rule language; `None` means "apply both".
    pub fn post_lang(post: &Post, text: &str) -> Option<Lang> {
        let (eng, cym) = normalise::lang_scores(text);
        Self::settle_lang(Self::hinted_lang(post), normalise::lang_of_scores(text, eng, cym, true))
    }

    /// The first platform hint that names a rule language.
    fn hinted_lang(post: &Post) -> Option<Lang> {
        post.lang_hints.iter().find_map(|h| normalise::lang_from_hint(h))
    }

    /// [`Classifier::post_lang`] from the hinted and the detected language.
    fn settle_lang(hinted: Option<Lang>, detected: Option<Lang>) -> Option<Lang> {
        match (hinted, detected) {
            (Some(h), Some(d)) if h != d => None,
            (Some(h), _) => Some(h),
            (None, d) => d,
        }
    }

    /// Classify a post: its text and alt texts, in the rule language of [`Classifier::post_lang`].
    ///
    /// The language is settled only as far as the findings need it. whatlang (the slow last
    /// resort of detection) can only answer English, and only for a long text without function
    /// words of either language under no English hint; that answer changes which rules apply
    /// only for rules limited to one language. So for such a text every candidate rule is run,
    /// and whatlang is asked only when one of those limited rules fired (the findings of the
    /// rules that do not apply are then dropped); otherwise `lang` is what the hint and function
    /// words say.
    pub fn classify(&self, post: &Post) -> Classification {
        let text = post.full_text();
        // Same byte offsets as `text`, so spans stay valid for the original.
        let masked = mask_phrases(self.allowed_phrases.as_ref(), &text);
        let candidates = self.rules.candidates(&masked);
        let hinted = Self::hinted_lang(post);
        let (eng, cym) = normalise::lang_scores(&text);
        let lang = Self::settle_lang(hinted, normalise::lang_of_scores(&text, eng, cym, false));
        if candidates.is_empty() || hinted == Some(Lang::Eng) || !normalise::whatlang_may_decide(&text, eng, cym) {
            // whatlang would not be asked (or there is nothing it could change): `lang` is final.
            return self.classify_candidates(&masked, lang, &candidates);
        }
        // Whatever whatlang says, the language is `lang` or one that applies more rules than
        // it (English under a Welsh hint makes it "both"; under no hint `lang` is already
        // "both"): run every candidate, which a rule's result does not depend on.
        let fired = self.rules.matches_among(&masked, &candidates, |_| true);
        let limited = |r: &crate::patterns::Rule| !(r.applies_to(Some(Lang::Eng)) && r.applies_to(Some(Lang::Cym)));
        let lang = if fired.iter().any(|m| limited(m.rule)) {
            Self::settle_lang(hinted, normalise::lang_of_scores(&text, eng, cym, true))
        } else {
            lang
        };
        Self::combine(&masked, lang, fired.into_iter().filter(|m| m.rule.applies_to(lang)))
    }

    /// Classify a plain text whose rule language is `lang` (`None`: both).
    pub fn classify_text(&self, text: &str, lang: Option<Lang>) -> Classification {
        let masked = mask_phrases(self.allowed_phrases.as_ref(), text);
        let candidates = self.rules.candidates(&masked);
        self.classify_candidates(&masked, lang, &candidates)
    }

    /// Run the candidate rules of a masked text that apply to `lang` and combine what fired.
    fn classify_candidates(&self, text: &str, lang: Option<Lang>, candidates: &[usize]) -> Classification {
        if candidates.is_empty() {
            return Classification { lang, ..Default::default() };
        }
        Self::combine(text, lang, self.rules.matches_among(text, candidates, |r| r.applies_to(lang)))
    }

    /// The classification of a text in `lang` whose rules `fired`.
    fn combine<'a>(text: &str, lang: Option<Lang>, fired: impl IntoIterator<Item = RuleMatch<'a>>) -> Classification {
        let mut out = Classification { lang, ..Default::default() };
        for m in fired {
            let RuleKind::Category(category) = m.rule.kind else {
                continue;
            };
            let matched = m.spans.iter().map(|s| text[s.clone()].trim()).collect::<Vec<_>>().join(" … ");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forces::Forces;
    use crate::patterns::Detector;
    use chrono::Utc;
    use std::path::Path;

    fn classifier() -> Classifier {
        Detector::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns"), &Forces::embedded())
            .expect("patterns load")
            .classifier
    }

    fn post(text: &str, alt: &[&str], hints: &[&str]) -> Post {
        Post {
            platform: "mastodon".into(),
            platform_id: "1".into(),
            author_id: "a".into(),
            created_at: Utc::now(),
            text: text.into(),
            alt_texts: alt.iter().map(|s| s.to_string()).collect(),
            lang_hints: hints.iter().map(|s| s.to_string()).collect(),
            url: None,
        }
    }

    #[test]
    fn spans_point_into_full_text_including_alt_text() {
        let c = classifier();
        let p = post("Saturday vibes", &["man in boxer shorts and a police hat"], &[]);
        let r = c.classify(&p);
        assert_eq!(r.categories, vec![Category::SexualNudity], "{r:?}");
        let full = p.full_text();
        let f = &r.findings[0];
        assert!(f.spans.iter().all(|s| full.get(s.clone()).is_some()));
        assert!(f.spans.iter().any(|s| &full[s.clone()] == "boxer shorts"), "{f:?}");
        assert_eq!(f.matched, "boxer shorts");
    }

    #[test]
    fn uk_disclosure_formats_are_found() {
        let c = classifier();
        let r = c.classify(&post("Pulled over a blue Golf, LB21 XRT, for the third time, same dealer as always", &[], &[]));
        assert!(r.categories.contains(&Category::PersonalData), "{r:?}");
        assert_eq!(r.severity, Some(Severity::High));
        let r = c.classify(&post("Search warrant going in on the Fairfield estate tomorrow at 5, keep it quiet", &[], &[]));
        assert!(r.categories.contains(&Category::Operational), "{r:?}");
        let r = c.classify(&post("Any reporters want the inside story on Friday's stabbing? DM me, off the record", &[], &[]));
        assert!(r.categories.contains(&Category::MediaContact), "{r:?}");
        // Past-tense press release wording is not a disclosure.
        let r = c.classify(&post("Officers executed a warrant in Ashford this morning and two men were arrested.", &[], &[]));
        assert!(!r.categories.contains(&Category::Operational), "{r:?}");
    }

    #[test]
    fn welsh_posts_get_welsh_rules_and_mixed_posts_get_both() {
        let c = classifier();
        let r = c.classify(&post("Sglodion am ddim eto gan y caffi ar y sgwâr, chwarae teg iddyn nhw", &[], &[]));
        assert_eq!(r.lang, Some(Lang::Cym));
        assert_eq!(r.categories, vec![Category::GiftsHospitality], "{r:?}");
        // A wrong platform hint (en) on a Welsh post: unsure, so Welsh rules still apply.
        let r = c.classify(&post("Dw i dal yn feddw o neithiwr ac ar shifft am 7 bore fory", &[], &["en"]));
        assert!(r.categories.contains(&Category::AlcoholDrugs), "{r:?}");
        // Short, mixed: both rule sets.
        let r = c.classify(&post("pen mawr 🍺🍺🍺", &[], &[]));
        assert_eq!(r.lang, None);
        assert!(r.categories.contains(&Category::AlcoholDrugs), "{r:?}");
    }

    #[test]
    fn exceptions_keep_quoted_slurs_and_unrelated_words_out() {
        let c = classifier();
        for text in [
            "Some idiot in the lobby called me a slur, reported and muted",
            "Fixed a laptop for the PC club and made everyone a brew",
            "Strike ballot result tomorrow, fingers crossed",
            "Pothole on Mill Road reported again",
        ] {
            let r = c.classify(&post(text, &[], &[]));
            assert!(r.categories.is_empty(), "{text}: {r:?}");
        }
    }
}
