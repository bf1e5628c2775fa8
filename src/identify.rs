//! Identify: decide whether an account's owner self-identifies as police.
//!
//! Owns the identity resolver: identity signals (rank and role words, collar numbers, force
//! names, "views my own" disclaimers) and counter-signals (former, family, fiction, official
//! accounts, "grammar police", ...) found in the display name, bio and posts, combined into one
//! SPEC.md identity label with a score, the canonical force and the evidence. Pure and
//! synchronous; it never touches storage or the network.
//!
//! # How a verdict is reached
//! The signal definitions are pattern rules (`signal = "serving"`, `"former"`, `"family"`,
//! `"associated"`, `"official"`, `"not_police"`, `"disclaimer"`) with a `weight`, in the
//! operator's pattern files. Each kind gets a score: the profile (display name and bio)
//! counts in full; posts count per post (a post's evidence for one kind is capped) and at a
//! discount, so evidence spread over several posts adds up while one chatty post cannot
//! decide alone. Force names (via [`Forces`]) strengthen a police reading of the profile. The
//! kinds then compete in a fixed order (official, former, family/associated, not-police,
//! serving), each needing a threshold and to beat the serving score where they conflict.

use std::collections::HashMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::forces::{Forces, MentionKind};
use crate::model::{Account, Identity, Post};
use crate::patterns::{AccountAllowlist, RuleKind, RuleSet};

/// Where an identity rule's signal points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// Self-identifies as serving police (rank, role, collar number, job vocabulary).
    Serving,
    /// Retired, ex-, former police.
    Former,
    /// Family or partner of an officer.
    Family,
    /// Linked to policing without being staff: journalists, writers, PCC staff, security, ...
    Associated,
    /// A corporate force, unit or team account.
    Official,
    /// Nothing to do with policing: figurative "police", PC the computer, other jobs.
    NotPolice,
    /// "Views my own": supports a police reading, decides nothing alone.
    Disclaimer,
}

impl SignalKind {
    pub const ALL: &'static [SignalKind] = &[
        SignalKind::Serving,
        SignalKind::Former,
        SignalKind::Family,
        SignalKind::Associated,
        SignalKind::Official,
        SignalKind::NotPolice,
        SignalKind::Disclaimer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Serving => "serving",
            SignalKind::Former => "former",
            SignalKind::Family => "family",
            SignalKind::Associated => "associated",
            SignalKind::Official => "official",
            SignalKind::NotPolice => "not_police",
            SignalKind::Disclaimer => "disclaimer",
        }
    }
}

impl FromStr for SignalKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignalKind::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| {
            format!(
                "unknown signal `{s}` (expected one of: {})",
                SignalKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

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

/// The evidence signal id used for force mentions in posts (text = canonical force name).
pub const FORCE_SIGNAL: &str = "force";

/// The evidence signal id of an allowlisted account (text = the allowlist entry).
pub const ALLOWLIST_SIGNAL: &str = "allowlist.account";

/// Most evidence items kept per signal id across an account's posts: enough to decide and to
/// show a reviewer, while what the store keeps between scans stays small.
const MAX_PER_SIGNAL: usize = 4;
/// Longest matched text kept in one evidence item.
const MAX_EVIDENCE_CHARS: usize = 60;

/// Identity signals accumulated from an account's posts. Small, mergeable and serialisable so
/// the store can keep it between scans without keeping post text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostSignals {
    pub evidence: Vec<Evidence>,
}

impl PostSignals {
    /// Add `other`, keeping at most a few items per signal and no exact duplicates.
    pub fn merge(&mut self, other: PostSignals) {
        for e in other.evidence {
            if self.evidence.contains(&e) {
                continue;
            }
            let n = self.evidence.iter().filter(|x| x.signal == e.signal).count();
            if n < MAX_PER_SIGNAL {
                self.evidence.push(e);
            }
        }
    }
    pub fn is_empty(&self) -> bool {
        self.evidence.is_empty()
    }
}

/// Thresholds of the verdict (see the module docs).
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Discount applied to post evidence.
    pub post_factor: f32,
    /// Most one post can add to one kind.
    pub post_cap: f32,
    /// Serving score needed for `serving`.
    pub serving: f32,
    /// Score a counter-signal kind needs to decide.
    pub counter: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { post_factor: 0.6, post_cap: 3.0, serving: 3.0, counter: 2.0 }
    }
}

/// The compiled identity resolver.
pub struct Identifier {
    rules: RuleSet,
    forces: Forces,
    kinds: HashMap<String, (SignalKind, f32, Option<String>)>,
    allowed: AccountAllowlist,
    pub thresholds: Thresholds,
}

fn clip(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= MAX_EVIDENCE_CHARS {
        s
    } else {
        let mut t: String = s.chars().take(MAX_EVIDENCE_CHARS - 1).collect();
        t.push('…');
        t
    }
}

#[derive(Debug, Default)]
struct Tally {
    profile: HashMap<SignalKind, f32>,
    posts: HashMap<SignalKind, f32>,
}

impl Tally {
    fn p(&self, k: SignalKind) -> f32 {
        self.profile.get(&k).copied().unwrap_or(0.0)
    }
    fn q(&self, k: SignalKind) -> f32 {
        self.posts.get(&k).copied().unwrap_or(0.0)
    }
}

impl Identifier {
    pub fn new(rules: RuleSet, forces: Forces) -> Identifier {
        let kinds = rules
            .rules
            .iter()
            .filter_map(|r| match r.kind {
                RuleKind::Signal(k) => Some((r.id.clone(), (k, r.weight, r.role.clone()))),
                RuleKind::Category(_) => None,
            })
            .collect();
        Identifier { rules, forces, kinds, allowed: AccountAllowlist::default(), thresholds: Thresholds::default() }
    }

    /// Accounts that are never read as serving (official force accounts, authorised
    /// communications staff): they get the `official` label, so they never produce a hit.
    pub fn with_allowed_accounts(mut self, allowed: AccountAllowlist) -> Identifier {
        self.allowed = allowed;
        self
    }

    /// How many identity rules are loaded.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Identity signals in one post (cheap; called for every post read).
    pub fn post_signals(&self, post: &Post) -> PostSignals {
        let text = post.full_text();
        let mut out = PostSignals::default();
        let source = || EvidenceSource::Post { platform_id: post.platform_id.clone() };
        for m in self.rules.matches(&text, |r| r.fields.posts) {
            let first = &m.spans[0];
            out.evidence.push(Evidence { source: source(), signal: m.rule.id.clone(), text: clip(&text[first.clone()]) });
        }
        // Area names ("Essex", "Bolton") are no evidence in a post: not even looked for.
        for f in self.forces.find_named(&text) {
            out.evidence.push(Evidence { source: source(), signal: FORCE_SIGNAL.into(), text: f.force });
        }
        out
    }

    /// The verdict for an account given everything known of its posts.
    pub fn identify(&self, account: &Account, posts: &PostSignals) -> IdentityVerdict {
        let th = &self.thresholds;
        if let Some(entry) = self.allowed.matching(account) {
            return IdentityVerdict {
                identity: Identity::Official,
                score: 1.0,
                force: self.profile_force(account).map(|(_, f)| f),
                role: None,
                evidence: vec![Evidence { source: EvidenceSource::DisplayName, signal: ALLOWLIST_SIGNAL.into(), text: entry }],
            };
        }
        // Nothing to go on: no name or bio (an author known only by id, as most authors of a
        // stream post are) and no signal in their posts. Every score below would be zero, and
        // with positive thresholds a zero score is `none`: answered without the work (the
        // common case of a whole-network stream).
        if account.display_name.is_empty() && account.bio.is_empty() && posts.is_empty() && th.serving > 0.0 && th.counter > 0.0 {
            return IdentityVerdict { identity: Identity::None, score: 0.0, force: None, role: None, evidence: vec![] };
        }
        let mut evidence = Vec::new();
        let mut tally = Tally::default();
        let mut role: Option<(f32, String)> = None;
        let mut note_role = |r: &Option<String>, w: f32| {
            if let Some(r) = r {
                if role.as_ref().map_or(true, |(bw, _)| w > *bw) {
                    role = Some((w, r.clone()));
                }
            }
        };

        // Profile: display name and bio, each rule counted once.
        let mut profile_fired: HashMap<String, f32> = HashMap::new();
        for (field, text) in [(EvidenceSource::DisplayName, &account.display_name), (EvidenceSource::Bio, &account.bio)] {
            let is_name = matches!(field, EvidenceSource::DisplayName);
            for m in self.rules.matches(text, |r| if is_name { r.fields.display_name } else { r.fields.bio }) {
                let RuleKind::Signal(kind) = m.rule.kind else {
                    continue;
                };
                evidence.push(Evidence {
                    source: field.clone(),
                    signal: m.rule.id.clone(),
                    text: clip(&text[m.spans[0].clone()]),
                });
                if kind == SignalKind::Serving {
                    note_role(&m.rule.role, m.rule.weight);
                }
                let e = profile_fired.entry(m.rule.id.clone()).or_insert(0.0);
                *e = e.max(m.rule.weight);
            }
        }
        for (id, w) in &profile_fired {
            if let Some((kind, _, _)) = self.kinds.get(id) {
                *tally.profile.entry(*kind).or_insert(0.0) += w;
            }
        }

        // Posts: per post, per kind, capped; then discounted.
        let mut per_post: HashMap<(&str, SignalKind), f32> = HashMap::new();
        let mut seen_rule_post = std::collections::HashSet::new();
        let mut post_forces: HashMap<&str, usize> = HashMap::new();
        for e in &posts.evidence {
            let pid = match &e.source {
                EvidenceSource::Post { platform_id } => platform_id.as_str(),
                _ => "",
            };
            if e.signal == FORCE_SIGNAL {
                *post_forces.entry(e.text.as_str()).or_insert(0) += 1;
                continue;
            }
            let Some((kind, w, r)) = self.kinds.get(&e.signal) else {
                continue;
            };
            if !seen_rule_post.insert((pid, e.signal.as_str())) {
                continue;
            }
            if *kind == SignalKind::Serving {
                note_role(r, *w * 0.5);
            }
            *per_post.entry((pid, *kind)).or_insert(0.0) += w;
        }
        for ((_, kind), w) in per_post {
            *tally.posts.entry(kind).or_insert(0.0) += w.min(th.post_cap);
        }
        evidence.extend(posts.evidence.iter().cloned());

        // Force: profile names beat abbreviations beat areas; posts as a fallback.
        let profile_force = self.profile_force(account);
        let post_force = post_forces.iter().max_by_key(|(f, n)| (**n, std::cmp::Reverse(**f))).map(|(f, _)| f.to_string());

        let force_bonus = match &profile_force {
            Some((MentionKind::Name | MentionKind::Abbreviation, _)) => 1.5,
            Some((MentionKind::Area, _)) => 0.5,
            None => 0.0,
        };
        let pf = th.post_factor;
        let sv_profile = tally.p(SignalKind::Serving);
        let sv_posts = tally.q(SignalKind::Serving) * pf;
        let any_police = sv_profile > 0.0 || sv_posts > 0.0;
        let mut serving = sv_profile + sv_posts;
        if any_police {
            serving += force_bonus + tally.p(SignalKind::Disclaimer).min(1.0);
        }
        let official = tally.p(SignalKind::Official) + tally.q(SignalKind::Official) * pf * 0.5;
        let former = tally.p(SignalKind::Former) + tally.q(SignalKind::Former) * pf;
        let family = tally.p(SignalKind::Family) + tally.q(SignalKind::Family) * pf;
        let associated = tally.p(SignalKind::Associated) + tally.q(SignalKind::Associated) * pf;
        let not_police = tally.p(SignalKind::NotPolice) + tally.q(SignalKind::NotPolice) * pf;

        // Counter-signals decide when they are strong enough and at least as strong as the
        // serving reading they contradict.
        let sv_rival = sv_profile.max(serving - 1.0);
        let (identity, score) = if official >= th.counter {
            (Identity::Official, official)
        } else if former >= th.counter && former >= 0.5 * sv_profile {
            (Identity::Former, former)
        } else if family >= th.counter && family >= sv_profile - 1.0 {
            (Identity::Associated, family)
        } else if associated >= th.counter && associated >= sv_rival {
            (Identity::Associated, associated)
        } else if not_police >= th.counter && not_police >= sv_rival {
            (Identity::None, not_police)
        } else if serving - 0.5 * (associated + not_police + family + former) >= th.serving {
            (Identity::Serving, serving)
        } else if former > 0.0 && former >= associated {
            (Identity::Former, former)
        } else if associated + family > not_police || (serving >= 2.0 && not_police == 0.0) || force_bonus >= 1.5 {
            (Identity::Associated, associated + family + serving)
        } else {
            (Identity::None, not_police)
        };
        tracing::debug!(
            account = %account.handle,
            serving, sv_profile, sv_posts, official, former, family, associated, not_police,
            identity = %identity,
            "identity scores"
        );
        let score = (score / (score + 2.0)).clamp(0.0, 1.0);
        let force = match identity {
            Identity::None => None,
            _ => profile_force.map(|(_, f)| f).or(post_force),
        };
        let role = if identity == Identity::Serving { role.map(|(_, r)| r) } else { None };
        IdentityVerdict { identity, score, force, role, evidence }
    }
}

impl Identifier {
    /// The force named in the profile: names beat abbreviations beat areas.
    fn profile_force(&self, account: &Account) -> Option<(MentionKind, String)> {
        let mut best: Option<(MentionKind, String)> = None;
        for text in [&account.display_name, &account.bio] {
            for m in self.forces.find(text) {
                if best.as_ref().map_or(true, |(k, _)| m.kind > *k) {
                    best = Some((m.kind, m.force.clone()));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::Detector;
    use chrono::Utc;
    use std::path::Path;

    fn detector() -> Detector {
        Detector::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns"), &Forces::embedded()).expect("patterns load")
    }

    fn account(name: &str, bio: &str) -> Account {
        Account {
            platform: "mastodon".into(),
            platform_id: "x1".into(),
            handle: "@x@example".into(),
            display_name: name.into(),
            bio: bio.into(),
            profile_url: None,
        }
    }

    fn post(id: &str, text: &str) -> Post {
        Post {
            platform: "mastodon".into(),
            platform_id: id.into(),
            author_id: "x1".into(),
            created_at: Utc::now(),
            text: text.into(),
            alt_texts: vec![],
            lang_hints: vec![],
            url: None,
        }
    }

    fn verdict(d: &Detector, name: &str, bio: &str, posts: &[&str]) -> IdentityVerdict {
        let mut s = PostSignals::default();
        for (i, t) in posts.iter().enumerate() {
            s.merge(d.identifier.post_signals(&post(&format!("p{i}"), t)));
        }
        d.identifier.identify(&account(name, bio), &s)
    }

    #[test]
    fn serving_profiles_resolve_force_and_role() {
        let d = detector();
        let v = verdict(&d, "Jo", "PS 2231 | Neighbourhood, Salford | GMP | tweets my own", &[]);
        assert_eq!(v.identity, Identity::Serving, "{v:?}");
        assert_eq!(v.force.as_deref(), Some("Greater Manchester Police"));
        assert_eq!(v.role.as_deref(), Some("constable"));
        assert!(v.evidence.iter().any(|e| e.source == EvidenceSource::Bio && e.signal == "id.rank_with_number"));
        let v = verdict(&d, "Cerys", "Rhingyll gyda Heddlu De Cymru. Swyddog heddlu ers 2011. Barn fy hun.", &[]);
        assert_eq!(v.identity, Identity::Serving, "{v:?}");
        assert_eq!(v.force.as_deref(), Some("South Wales Police"));
    }

    #[test]
    fn counter_signals_win_over_police_words() {
        let d = detector();
        let cases = [
            ("Retired Inspector, Lancashire Constabulary. Now a bowls bore.", Identity::Former),
            ("Husband is a copper in the Met, I just do the school runs", Identity::Associated),
            ("Married to a police officer. Nurse. Tired.", Identity::Associated),
            ("Author of the DCI Hale crime novels. Tea drinker.", Identity::Associated),
            ("Court reporter for the Valley Gazette. Tips in confidence.", Identity::Associated),
            ("Official account of the Wirral neighbourhood team, Merseyside Police. Not monitored 24/7.", Identity::Official),
            ("Self-styled grammar police, professional proofreader.", Identity::None),
            ("Gaming PC builds and benchmarks. DC Comics collector.", Identity::None),
            ("Sergeant Major, Royal Engineers. 20 years in.", Identity::None),
        ];
        for (bio, want) in cases {
            let v = verdict(&d, "", bio, &[]);
            assert_eq!(v.identity, want, "{bio}: {v:?}");
        }
    }

    #[test]
    fn evidence_spread_over_posts_adds_up_but_one_post_does_not_decide() {
        let d = detector();
        let posts = [
            "Earlies again. Parade room coffee is a crime in itself.",
            "Tutor signed off my last competency today, probie no more",
            "Two hours on a cordon in the sleet. Stab vest does nothing for warmth.",
            "Ran out of pocket notebook pages mid statement. Rookie error.",
        ];
        let v = verdict(&d, "nightowl", "", &posts);
        assert_eq!(v.identity, Identity::Serving, "{v:?}");
        assert!(v.evidence.iter().filter(|e| matches!(e.source, EvidenceSource::Post { .. })).count() >= 3);
        let v = verdict(&d, "nightowl", "", &posts[..1]);
        assert_ne!(v.identity, Identity::Serving, "{v:?}");
        // A partner's shift talk is family evidence, not serving.
        let v = verdict(
            &d,
            "",
            "",
            &[
                "Hubby's on nights all week again",
                "He's away on a course so it's me and the kids",
                "Because he's police everyone asks him for favours",
            ],
        );
        assert_ne!(v.identity, Identity::Serving, "{v:?}");
    }

    #[test]
    fn an_author_with_nothing_to_go_on_is_none_as_the_full_reckoning_says() {
        let d = detector();
        let quick = verdict(&d, "", "", &[]);
        assert_eq!(quick, IdentityVerdict { identity: Identity::None, score: 0.0, force: None, role: None, evidence: vec![] });
        // A blank bio is not empty: it goes through every step, to the same answer.
        assert_eq!(verdict(&d, "", " ", &[]), quick);
        assert_eq!(verdict(&d, "", "", &["Lovely weather for the match today"]), quick);
    }

    #[test]
    fn post_signals_stay_small_when_merged_over_many_scans() {
        let d = detector();
        let mut s = PostSignals::default();
        for i in 0..50 {
            s.merge(d.identifier.post_signals(&post(&format!("p{i}"), "Lates again, custody rammed, my skipper is a legend")));
        }
        let sig = "id.post.job_vocabulary";
        assert!(s.evidence.iter().filter(|e| e.signal == sig).count() <= MAX_PER_SIGNAL);
        assert!(s.evidence.len() <= 4 * MAX_PER_SIGNAL, "{}", s.evidence.len());
    }
}
