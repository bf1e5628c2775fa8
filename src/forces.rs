//! Forces: the UK police forces, their canonical names and aliases.
//!
//! Owns resolving any way a force is written ("GMP", "Greater Manchester Police", "Heddlu
//! Gogledd Cymru") to one canonical name, because digests are routed by it. The list is data
//! (`config/forces.toml`, embedded as the default), so operators can extend it.
//!
//! Besides [`Forces::canonical`] (exact look-up of a name or alias), [`Forces::find`] scans free
//! text for force mentions with one Aho-Corasick pass per kind of name: full names and aliases
//! case-insensitively, abbreviations ("GMP", "Met") and area names ("Essex", "Bolton")
//! case-sensitively, always on whole words.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use anyhow::{bail, Context};
use serde::Deserialize;

const EMBEDDED: &str = include_str!("../config/forces.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    force: Vec<RawForce>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForce {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    abbreviations: Vec<String>,
    #[serde(default)]
    areas: Vec<String>,
}

/// How a force was named in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MentionKind {
    /// A place the force covers ("Essex", "Bolton"): weak, only meaningful for police accounts.
    Area,
    /// An abbreviation ("GMP", "Met").
    Abbreviation,
    /// The full name or an alias ("Greater Manchester Police", "Heddlu Gwent").
    Name,
}

/// One force mention found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub span: Range<usize>,
    pub force: String,
    pub kind: MentionKind,
}

#[derive(Debug)]
struct Matchers {
    names: AhoCorasick,
    names_to: Vec<usize>,
    abbrevs: AhoCorasick,
    abbrevs_to: Vec<usize>,
    areas: AhoCorasick,
    areas_to: Vec<usize>,
}

/// The forces list: canonical names, aliases and the text matchers built from them.
#[derive(Debug, Clone)]
pub struct Forces {
    names: Vec<String>,
    /// Lower-cased name, alias or abbreviation → index into `names`.
    lookup: HashMap<String, usize>,
    matchers: Arc<Matchers>,
}

impl Default for Forces {
    fn default() -> Self {
        Forces::embedded()
    }
}

impl Forces {
    /// The list bundled with the program (`config/forces.toml`).
    pub fn embedded() -> Forces {
        Forces::parse(EMBEDDED, "config/forces.toml (embedded)").expect("the embedded forces list is valid")
    }

    /// An operator's own forces file, in the format of `config/forces.toml`.
    pub fn load(path: &Path) -> anyhow::Result<Forces> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Forces::parse(&text, &path.display().to_string())
    }

    /// Parse a forces list; every problem (bad TOML, an alias claimed by two forces, an empty
    /// name) is reported with the file name.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Forces> {
        let raw: RawFile = toml::from_str(text).with_context(|| format!("parsing forces list {origin}"))?;
        if raw.force.is_empty() {
            bail!("{origin}: no [[force]] entries");
        }
        let mut names = Vec::new();
        let mut lookup: HashMap<String, usize> = HashMap::new();
        let mut problems = Vec::new();
        let (mut name_pats, mut names_to) = (Vec::new(), Vec::new());
        let (mut abbrev_pats, mut abbrevs_to) = (Vec::new(), Vec::new());
        let (mut area_pats, mut areas_to) = (Vec::new(), Vec::new());
        for f in raw.force {
            let name = f.name.trim().to_string();
            if name.is_empty() {
                problems.push("a force with an empty name".to_string());
                continue;
            }
            let idx = names.len();
            names.push(name.clone());
            let mut add_lookup = |s: &str, problems: &mut Vec<String>| {
                let key = s.trim().to_lowercase();
                if key.is_empty() {
                    return;
                }
                if let Some(&other) = lookup.get(&key) {
                    if other != idx {
                        problems.push(format!("`{s}` is given for both `{}` and `{name}`", names[other]));
                    }
                } else {
                    lookup.insert(key, idx);
                }
            };
            add_lookup(&name, &mut problems);
            name_pats.push(name.clone());
            names_to.push(idx);
            // A blank entry would be an empty pattern, which the matchers find at every byte
            // of every text (inside multi-byte characters too): a mistake, said as one.
            for (field, list) in [("aliases", &f.aliases), ("abbreviations", &f.abbreviations), ("areas", &f.areas)] {
                if list.iter().any(|a| a.trim().is_empty()) {
                    problems.push(format!("`{name}`: an empty string in `{field}`"));
                }
            }
            for a in &f.aliases {
                add_lookup(a, &mut problems);
                name_pats.push(a.trim().to_string());
                names_to.push(idx);
            }
            for a in &f.abbreviations {
                add_lookup(a, &mut problems);
                abbrev_pats.push(a.trim().to_string());
                abbrevs_to.push(idx);
            }
            for a in &f.areas {
                area_pats.push(a.trim().to_string());
                areas_to.push(idx);
            }
        }
        if !problems.is_empty() {
            bail!("{origin}: {}", problems.join("; "));
        }
        // Always a DFA: left to itself the builder makes one only for up to 100 patterns and
        // otherwise walks a (contiguous) NFA, several times slower a byte. The names (100+)
        // and areas (200+) have too many first letters for a prefilter to skip text, and every
        // post read is scanned, so the walk is the cost; the DFAs take a few hundred KB.
        let build = |pats: &[String], ci: bool| -> anyhow::Result<AhoCorasick> {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(ci)
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(AhoCorasickKind::DFA))
                .build(pats)
                .with_context(|| format!("building force matcher for {origin}"))
        };
        let matchers = Matchers {
            names: build(&name_pats, true)?,
            names_to,
            abbrevs: build(&abbrev_pats, false)?,
            abbrevs_to,
            areas: build(&area_pats, false)?,
            areas_to,
        };
        Ok(Forces { names, lookup, matchers: Arc::new(matchers) })
    }

    /// The canonical name for an alias or name, case-insensitively.
    pub fn canonical(&self, name: &str) -> Option<&str> {
        let key = name.trim().to_lowercase();
        self.lookup.get(&key).map(|&i| self.names[i].as_str())
    }

    /// Every canonical force name, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Every force mentioned in `text`, on whole words, in text order.
    pub fn find(&self, text: &str) -> Vec<Mention> {
        self.find_kinds(text, true)
    }

    /// [`Forces::find`] without area mentions: names and abbreviations only, for callers that
    /// pass areas over (post signals). Areas are matched last and never hide a name or an
    /// abbreviation, so the mentions found are exactly those of `find` that are not areas; the
    /// area automaton (over 200 place names) is simply not run.
    pub fn find_named(&self, text: &str) -> Vec<Mention> {
        self.find_kinds(text, false)
    }

    fn find_kinds(&self, text: &str, areas: bool) -> Vec<Mention> {
        let m = &self.matchers;
        let mut out = Vec::new();
        let kinds = [
            (&m.names, &m.names_to, MentionKind::Name),
            (&m.abbrevs, &m.abbrevs_to, MentionKind::Abbreviation),
            (&m.areas, &m.areas_to, MentionKind::Area),
        ];
        for (ac, to, kind) in &kinds[..if areas { 3 } else { 2 }] {
            let kind = *kind;
            for hit in ac.find_iter(text) {
                let span = hit.start()..hit.end();
                if !whole_word(text, &span) {
                    continue;
                }
                // Names already cover this text (e.g. "Met" inside "Met Police").
                if out.iter().any(|o: &Mention| o.span.start < span.end && span.start < o.span.end) {
                    continue;
                }
                out.push(Mention { span, force: self.names[to[hit.pattern().as_usize()]].clone(), kind });
            }
        }
        out.sort_by_key(|m| m.span.start);
        out
    }
}

/// True when `span` is not glued to letters or digits on either side (and, as a match of
/// whole characters, starts and ends on character boundaries).
fn whole_word(text: &str, span: &Range<usize>) -> bool {
    if span.is_empty() || !text.is_char_boundary(span.start) || !text.is_char_boundary(span.end) {
        return false;
    }
    let before = text[..span.start].chars().next_back();
    let after = text[span.end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    !glued(before) && !glued(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_has_every_territorial_and_national_force() {
        let f = Forces::embedded();
        // 43 England & Wales, Police Scotland, PSNI, BTP, MDP, CNC.
        assert_eq!(f.names().count(), 48);
        assert_eq!(f.canonical("GMP"), Some("Greater Manchester Police"));
        assert_eq!(f.canonical("gmp"), Some("Greater Manchester Police"));
        assert_eq!(f.canonical("Met"), Some("Metropolitan Police Service"));
        assert_eq!(f.canonical("Heddlu De Cymru"), Some("South Wales Police"));
        assert_eq!(f.canonical("heddlu gogledd cymru"), Some("North Wales Police"));
        assert_eq!(f.canonical("Heddlu Dyfed-Powys"), Some("Dyfed-Powys Police"));
        assert_eq!(f.canonical("Heddlu Gwent"), Some("Gwent Police"));
        assert_eq!(f.canonical("PSNI"), Some("Police Service of Northern Ireland"));
        assert_eq!(f.canonical("Kent Police"), Some("Kent Police"));
        assert_eq!(f.canonical("Gotham PD"), None);
        // Areas are evidence, not aliases: "Bolton" is not a force name.
        assert_eq!(f.canonical("Bolton"), None);
    }

    #[test]
    fn finds_mentions_on_whole_words_with_abbreviations_case_sensitive() {
        let f = Forces::embedded();
        let m = f.find("PC 7719 | Response, Bolton | GMP | views my own");
        let got: Vec<_> = m.iter().map(|m| (m.force.as_str(), m.kind)).collect();
        assert_eq!(
            got,
            vec![("Greater Manchester Police", MentionKind::Area), ("Greater Manchester Police", MentionKind::Abbreviation)]
        );
        let m = f.find("Met Police officer");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].kind, MentionKind::Name);
        assert!(f.find("we met at the gmpx meetup").is_empty());
        let m = f.find("Heddwas efo Heddlu Gogledd Cymru 🚓");
        assert_eq!(m[0].force, "North Wales Police");
    }

    #[test]
    fn find_named_is_find_without_the_areas() {
        let f = Forces::embedded();
        for text in [
            "PC 7719 | Response, Bolton | GMP | views my own",
            "Essex Police in Chelmsford, then the Met, then Kent Police at Maidstone",
            "Greater Manchester Police covers Bolton, Wigan and Salford; GMP for short",
            "Heddlu Gogledd Cymru yn Wrecsam, Heddlu De Cymru yng Nghaerdydd",
            "Cumbria, Durham, Dorset: no force named here",
            "",
        ] {
            let all: Vec<Mention> = f.find(text).into_iter().filter(|m| m.kind != MentionKind::Area).collect();
            assert_eq!(f.find_named(text), all, "{text}");
        }
    }

    #[test]
    fn operator_file_errors_name_the_file_and_duplicate_aliases_are_rejected() {
        let err = Forces::parse(
            "[[force]]\nname = \"A Police\"\naliases = [\"X\"]\n[[force]]\nname = \"B Police\"\naliases = [\"x\"]\n",
            "my.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("my.toml") && err.to_string().contains("`x`"), "{err}");
        let err = Forces::parse("[[force]]\nnom = \"A\"\n", "bad.toml").unwrap_err();
        assert!(format!("{err:#}").contains("bad.toml"), "{err:#}");
    }

    /// Found by the `forces` fuzz target: a blank alias or area became an empty pattern, which
    /// matched inside a multi-byte character of a text, and slicing the text there panicked (a
    /// bio with any non-ASCII letter would have stopped a scan).
    #[test]
    fn a_blank_alias_abbreviation_or_area_is_an_error_not_a_panic_later() {
        for field in ["aliases", "abbreviations", "areas"] {
            let file = format!("[[force]]\nname = \"Kent Police\"\n{field} = [\"Kent\", \" \"]\n");
            let err = Forces::parse(&file, "forces.toml").unwrap_err().to_string();
            assert!(err.contains("forces.toml") && err.contains("Kent Police") && err.contains(field), "{err}");
        }
        let forces = Forces::parse("[[force]]\nname = \"Kent Police\"\nareas = [\"Kent\"]\n", "forces.toml").unwrap();
        let text = "Heddlu \u{5cd}\u{5cd} Kent — Maidstone ✓ Kent Police";
        let found: Vec<&str> = forces.find(text).iter().map(|m| &text[m.span.clone()]).collect();
        assert_eq!(found, ["Kent", "Kent Police"]);
        // Any offsets at all: not whole words, and no panic.
        for i in 0..=text.len() {
            assert!(!whole_word(text, &(i..i)));
            let _ = whole_word(text, &(i..text.len()));
        }
    }
}
