//! Redaction: personal data inside post text is masked wherever an excerpt is shown by default
//! (both parts of the digest, `hits show` without `--reveal`, the `hits list` table).
//!
//! Pure and synchronous; the stored evidence is never changed (it is what `hits show --reveal`
//! and `hits export` give, and what the evidence hash covers). Masking is driven by a small,
//! fixed set of simple regexes rather than by the operator's pattern files, so that editing a
//! rule can never un-mask anything:
//!
//! | what | example | shown as |
//! |---|---|---|
//! | email address | `jo.bloggs@mail.example` | `[email]` |
//! | UK phone number (`0…` with 10-11 digits, `+44…`) | `07700 900123` | `[phone]` |
//! | current-format vehicle registration (capitals) | `KE19 XWP` | `KE19 ***` (area and year only) |
//! | full postcode (capitals) | `PE11 2AB` | `PE11 ***` (district only) |
//! | crime / CAD / custody reference | `CU/4471/26`, `log 1234`, `quoting 46/41172/26` | `[ref]` |
//! | house number and street | `12 Mill Lane` | `[address]` |
//! | street named after where someone lives, or after "of" | `lives above the bookies on Cowley Road`, `Lee Danvers, 34, of Cotswold Rise` | `… on [address]`, `… of [address]` |
//! | name next to a victim/suspect/witness word | `the victim is Kelly Brennan` | `the victim is [name]` |
//! | full name with an age | `Leah Mardon, 15,`, `Conal McGrory (24)`, `31-year-old Jordan Keevil` | `[name], 15,` ... |
//!
//! "Victim/suspect/witness words" are: victim, suspect, witness, IP / injured party,
//! complainant, MisPer / missing person, offender, detainee, prisoner, defendant, accused,
//! informant, casualty, deceased, nominal, and arrest words (arrested, nicked, charged,
//! remanded, in custody, wanted), with Welsh dioddefwr/dioddefwraig, tyst, amheuwr, carcharor.
//! A name is one to three capitalised words straight after such a word (with at most a few
//! joining words: "is", "was", "named", "our", a comma), or two to three capitalised words
//! shortly before it in the same sentence ("Connor Maddick has been located and arrested").
//!
//! Limits, on purpose: registrations (current format only: older prefix plates collide with car
//! models and call signs) and postcodes are matched in capitals only (lower-case forms collide
//! with ordinary words); a street with no number is masked only after a word about where
//! someone lives (or straight after "of"); a name on its own, with no such word or age next to
//! it, is not masked.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// What kind of personal data a mask hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    Registration,
    Postcode,
    Reference,
    Address,
    Name,
}

/// One masked stretch of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Byte range in the original text.
    pub range: Range<usize>,
    pub kind: Kind,
    /// What is shown instead.
    pub replacement: String,
}

/// A text with its personal data masked, and the way back from original offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// (range in the original, range of the replacement in `text`), in text order.
    edits: Vec<(Range<usize>, Range<usize>)>,
}

impl Redacted {
    /// How many stretches were masked.
    pub fn masked(&self) -> usize {
        self.edits.len()
    }

    /// Map a byte range of the original text onto `text`. A range that touches a masked
    /// stretch grows to cover its whole replacement, so a matched-word mark on "KE19 XWP"
    /// becomes a mark on "KE19 ***": the mark still shows where the finding is.
    pub fn map_span(&self, r: Range<usize>) -> Range<usize> {
        let start = self.map(r.start, true);
        let end = self.map(r.end.max(r.start), false).max(start);
        start..end
    }

    fn map(&self, p: usize, is_start: bool) -> usize {
        let mut delta: isize = 0;
        for (from, to) in &self.edits {
            let before = if is_start { p < from.start } else { p <= from.start };
            if before {
                break;
            }
            let inside = if is_start { p < from.end } else { p <= from.end };
            if inside {
                return if is_start { to.start } else { to.end };
            }
            delta = to.end as isize - from.end as isize;
        }
        (p as isize + delta).max(0) as usize
    }
}

/// Mask the personal data in `text`.
pub fn redact(text: &str) -> Redacted {
    let masks = find(text);
    let mut out = String::with_capacity(text.len());
    let mut edits = Vec::with_capacity(masks.len());
    let mut pos = 0;
    for m in masks {
        out.push_str(&text[pos..m.range.start]);
        let start = out.len();
        out.push_str(&m.replacement);
        edits.push((m.range.clone(), start..out.len()));
        pos = m.range.end;
    }
    out.push_str(&text[pos..]);
    Redacted { text: out, edits }
}

/// Mask `text` and map `spans` (byte ranges of the original) onto the masked text.
pub fn apply(text: &str, spans: impl IntoIterator<Item = Range<usize>>) -> (String, Vec<Range<usize>>) {
    let r = redact(text);
    let spans = spans.into_iter().map(|s| r.map_span(s)).collect();
    (r.text, spans)
}

/// Every stretch of personal data in `text`: sorted, non-overlapping, on char boundaries.
/// Where two candidates overlap, the one starting first (then the longer) wins.
pub fn find(text: &str) -> Vec<Mask> {
    let mut c: Vec<Mask> = vec![];
    emails(text, &mut c);
    phones(text, &mut c);
    registrations(text, &mut c);
    postcodes(text, &mut c);
    references(text, &mut c);
    addresses(text, &mut c);
    names(text, &mut c);
    c.sort_by(|a, b| a.range.start.cmp(&b.range.start).then(b.range.end.cmp(&a.range.end)).then(a.kind.cmp(&b.kind)));
    let mut out: Vec<Mask> = Vec::with_capacity(c.len());
    for m in c {
        if m.range.is_empty() || out.last().is_some_and(|l| m.range.start < l.range.end) {
            continue;
        }
        out.push(m);
    }
    out
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in redaction regex does not compile: {e}"))
}

fn mask(range: Range<usize>, kind: Kind, replacement: impl Into<String>) -> Mask {
    Mask { range, kind, replacement: replacement.into() }
}

fn emails(text: &str, out: &mut Vec<Mask>) {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"));
    for m in RE.find_iter(text) {
        // `@user@instance.social` is a public fediverse handle, not an email address.
        if text[..m.start()].ends_with('@') {
            continue;
        }
        out.push(mask(m.range(), Kind::Email, "[email]"));
    }
}

fn phones(text: &str, out: &mut Vec<Mask>) {
    static RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?:\+44[ -]?(?:\(0\)[ -]?)?|\(0|\b0)\d{2,5}\)?[ -]?\d{3,4}[ -]?\d{3,4}"));
    for m in RE.find_iter(text) {
        let s = m.as_str();
        let before_ok = !text[..m.start()].ends_with(|c: char| c.is_ascii_digit());
        let after_ok = !text[m.end()..].starts_with(|c: char| c.is_ascii_alphanumeric());
        let digits = s.chars().filter(char::is_ascii_digit).count();
        let national = if let Some(rest) = s.strip_prefix("+44") {
            // Digits after the country code, not counting a "(0)".
            rest.chars().filter(char::is_ascii_digit).count() - usize::from(rest.contains("(0)"))
        } else {
            digits - 1
        };
        if before_ok && after_ok && (9..=10).contains(&national) {
            out.push(mask(m.range(), Kind::Phone, "[phone]"));
        }
    }
}

fn registrations(text: &str, out: &mut Vec<Mask>) {
    static CURRENT: LazyLock<Regex> = LazyLock::new(|| re(r"\b([A-Z]{2}[0-9]{2}) ?[A-Z]{3}\b"));
    for c in CURRENT.captures_iter(text) {
        let (all, memory) = (c.get(0).expect("match"), &c[1]);
        out.push(mask(all.range(), Kind::Registration, format!("{memory} ***")));
    }
}

fn postcodes(text: &str, out: &mut Vec<Mask>) {
    static RE: LazyLock<Regex> = LazyLock::new(|| re(r"\b([A-Z]{1,2}[0-9][A-Z0-9]?) ?[0-9][A-Z]{2}\b"));
    for c in RE.captures_iter(text) {
        let (all, outward) = (c.get(0).expect("match"), &c[1]);
        out.push(mask(all.range(), Kind::Postcode, format!("{outward} ***")));
    }
}

fn references(text: &str, out: &mut Vec<Mask>) {
    // Formats: 46/41172/26, KT/1234/26, CU/4471/26 (three digits or more in the middle, so a
    // date such as 12/11/26 is not one).
    static FORMATTED: LazyLock<Regex> =
        LazyLock::new(|| re(r"\b(?:[A-Z]{1,3}/)?[0-9]{2,4}/[0-9]{3,6}/[0-9]{2}\b|\b[A-Z]{2,3}/[0-9]{3,6}/[0-9]{2}\b"));
    // A number after a word that introduces a reference: "crime ref 13260081442", "log 1234".
    static LED: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)\b(?:crime ref(?:erence)?|ref(?:erence)?|log|incident|quoting|cad|custody (?:number|record|ref)|occurrence|urn|crime number|dyfynnu|cyfeirnod)\b(?:\s*(?:number|no\.?|rhif))?\s*[:#]?\s*([a-z]{0,3}[0-9]{4,}[a-z0-9]*)\b",
        )
    });
    for m in FORMATTED.find_iter(text) {
        out.push(mask(m.range(), Kind::Reference, "[ref]"));
    }
    for c in LED.captures_iter(text) {
        let number = c.get(1).expect("group");
        out.push(mask(number.range(), Kind::Reference, "[ref]"));
    }
}

/// Street-type words, English then Welsh (which come before the name: "Heol y Bont").
const STREET: &str = "Street|St|Road|Rd|Drive|Close|Crescent|Avenue|Ave|Lane|Walk|Fold|Terrace|Rise|Mount|Way|Grove|\
                      Court|Place|Gardens|Mews|Row|Square|Parade|Hill|View|Green|Park";

fn addresses(text: &str, out: &mut Vec<Mask>) {
    static NUMBERED: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"\b[0-9]{{1,4}}[a-zA-Z]?,? (?:[A-Z][\p{{L}}'’-]* ){{0,3}}[A-Z][\p{{L}}'’-]* (?:{STREET})\b|\b[0-9]{{1,4}}[a-zA-Z]?,? (?:Heol|Ffordd|Stryd|Lôn|Rhodfa|Teras|Cilgant) (?:[a-zA-Z]{{1,3}} )?[A-Z][\p{{L}}'’-]*"
        ))
    });
    static STREET_NAME: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"\b(?:[A-Z][\p{{L}}'’-]* ){{1,3}}(?:{STREET})\b|\b(?:Heol|Ffordd|Stryd|Lôn|Rhodfa|Teras|Cilgant) (?:[a-zA-Z]{{1,3}} )?[A-Z][\p{{L}}'’-]*"
        ))
    });
    // Words about where someone lives; a street named within a few words after one is masked.
    static HOME: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)\b(?:lives?|living|lived|address|addresses|home|house|flat|staying|stays|moved|resides|neighbours?|byw|cyfeiriad|tŷ)\b",
        )
    });
    for m in NUMBERED.find_iter(text) {
        out.push(mask(m.range(), Kind::Address, "[address]"));
    }
    for m in STREET_NAME.find_iter(text) {
        let lead = words_before(text, m.start(), 6);
        // "… of Larch Grove" (court results); Welsh "o Stryd y Felin".
        if HOME.is_match(lead) || text[..m.start()].ends_with(" of ") || text[..m.start()].ends_with(" o ") {
            out.push(mask(m.range(), Kind::Address, "[address]"));
        }
    }
}

/// The stretch of `text` before `at` holding at most `n` words, not crossing a sentence end.
fn words_before(text: &str, at: usize, n: usize) -> &str {
    let head = &text[..at];
    let sentence_start = head.rfind(['.', '!', '?', '\n']).map(|i| i + 1).unwrap_or(0);
    let mut start = at;
    let mut words = 0;
    for (i, c) in head[sentence_start..].char_indices().rev() {
        if c.is_whitespace() {
            words += 1;
            if words > n {
                break;
            }
        }
        start = sentence_start + i;
    }
    &text[start..at]
}

/// A capitalised name word ("Kelly", "McGrory", "O'Neil", "Smith-Jones", "Ŵyn").
const NAME_WORD: &str = r"(?:Mc|Mac|O'|O’)?\p{Lu}\p{Ll}+(?:-\p{Lu}\p{Ll}+)?";

/// Words that point at a person whose name must not be shown.
const ROLE: &str = r"(?i:victims?|suspects?|witness(?:es)?|injured party|complainants?|mispers?|missing person|offenders?|\
                     detainees?|prisoners?|defendants?|accused|informants?|casualt(?:y|ies)|deceased|nominals?|arrested|nicked|\
                     charged|remanded|in custody|custody|wanted|dioddefwr|dioddefwraig|tyst|tystion|amheuwr|carcharor)|IP|IPs";

/// Capitalised words that are not names (sentence starters, titles of rank, places' kinds),
/// separated by whitespace.
const NOT_NAMES: &str = "I The A An He She They We You It His Her Their Our My This That These Those There Then When \
     Who What Why How And But So If Not No Yes Also Just Today Tonight Tomorrow Yesterday Monday Tuesday Wednesday Thursday \
     Friday Saturday Sunday January February March April May June July August September October November December Police \
     Station Court Crown Magistrates Custody Sgt Sergeant Insp Inspector Constable Officer Officers Detective Pc Street St \
     Road Rd Drive Close Crescent Avenue Ave Lane Walk Fold Terrace Rise Mount Way Grove Place Gardens Mews Row Square Parade \
     Hill View Green Park Estate Hospital Prison Victim Suspect Witness Hmp Lol Can Could Do Does Did Have Has Had Is Are Was \
     Were Will Would Should Please Call Contact Anyone Anybody Someone Everyone Nobody Update Appeal Wanted Missing Charged \
     Arrested Named Thanks Thank Cheers Happy Dear Meet Welcome Well Oh Ok Okay Here Where Now Still Got Get Went Back After \
     Before At In On Of For From To With By Mae Y Yr";

fn names(text: &str, out: &mut Vec<Mask>) {
    // Joining words allowed between a role word and the name after it.
    const JOIN: &str = r"(?i:is|was|named|called|name|the|a|an|our|my|their|his|her|being|now|aka|man|woman|male|female|lad|boy|girl|person|yw|oedd|ydy|sef)";
    static AFTER: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"\b(?:{ROLE})\b(?:[ \t]*[,:(–-]?[ \t]*\b{JOIN}\b){{0,3}}[ \t]*[,:(–-]?[ \t]*(?P<name>(?:(?:Mr|Mrs|Ms|Miss|Dr)\.? )?{NAME_WORD}(?: {NAME_WORD}){{0,2}})\b"
        ))
    });
    static BEFORE: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"(?P<name>\b(?:(?:Mr|Mrs|Ms|Miss|Dr)\.? )?{NAME_WORD}(?: {NAME_WORD}){{1,2}})\b(?:[ \t]*[,(]?[ \t]*(?:[a-z]+|[0-9]{{1,2}})){{0,4}}[ \t]*[,(:–-]?[ \t]*\b(?:{ROLE})\b"
        ))
    });
    // A full name with an age: "Leah Mardon, 15,", "Conal McGrory (24)", "31-year-old Jordan Keevil".
    static AGED: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"(?P<name>\b{NAME_WORD}(?: {NAME_WORD}){{1,2}})(?:, (?:aged )?[0-9]{{1,2}}\b| \([0-9]{{1,2}}\))|\b[0-9]{{1,2}}-year-old (?:[a-z]+ )?(?P<after>{NAME_WORD}(?: {NAME_WORD}){{1,2}})\b"
        ))
    });
    for c in AGED.captures_iter(text) {
        let found = match (c.name("name"), c.name("after")) {
            // Not a time or a range ("Oxford Circus, 7–10pm").
            (Some(_), _) if text[c.get(0).expect("match").end()..].starts_with(['–', '-', ':', '.', '/', 'a', 'p']) => None,
            (Some(name), _) => name_run(text, name.range(), false, 2),
            (None, Some(after)) => name_run(text, after.range(), true, 2),
            (None, None) => None,
        };
        if let Some(r) = found {
            out.push(mask(r, Kind::Name, "[name]"));
        }
    }
    let mut at = 0;
    while let Some(c) = AFTER.captures_at(text, at) {
        let name = c.name("name").expect("group");
        if let Some(r) = name_run(text, name.range(), true, 1) {
            out.push(mask(r, Kind::Name, "[name]"));
        }
        at = name.start().max(c.get(0).expect("match").start() + 1);
    }
    let mut at = 0;
    while let Some(c) = BEFORE.captures_at(text, at) {
        let name = c.name("name").expect("group");
        if let Some(r) = name_run(text, name.range(), false, 2) {
            out.push(mask(r, Kind::Name, "[name]"));
        }
        // Look again from the next word: a role word can also start a name run after it.
        at = text[name.start()..].find(' ').map(|i| name.start() + i + 1).unwrap_or(text.len());
    }
}

/// The part of a candidate name that is made of name words: the leading run (a name after a
/// role word) or the trailing run (a name before one), with at least `min` words.
fn name_run(text: &str, range: Range<usize>, leading: bool, min: usize) -> Option<Range<usize>> {
    let s = &text[range.clone()];
    let mut words: Vec<(usize, &str)> = s
        .split(' ')
        .scan(0, |off, w| {
            let here = *off;
            *off += w.len() + 1;
            Some((here, w))
        })
        .collect();
    let is_name = |w: &str| {
        let bare = w.trim_end_matches('.');
        !NOT_NAMES.split_whitespace().any(|n| n.eq_ignore_ascii_case(bare))
    };
    let is_title = |w: &str| matches!(w.trim_end_matches('.'), "Mr" | "Mrs" | "Ms" | "Miss" | "Dr");
    if leading {
        let n = words.iter().take_while(|(_, w)| is_title(w) || is_name(w)).count();
        words.truncate(n);
    } else {
        let n = words.iter().rev().take_while(|(_, w)| is_title(w) || is_name(w)).count();
        words.drain(..words.len() - n);
    }
    let real = words.iter().filter(|(_, w)| !is_title(w)).count();
    if real < min {
        return None;
    }
    let (first, _) = words.first()?;
    let (last, lw) = words.last()?;
    Some(range.start + first..range.start + last + lw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> String {
        redact(text).text
    }

    #[test]
    fn registrations_keep_only_area_and_year() {
        assert_eq!(r("Stopped a silver Astra, reg KE19 XWP, on the A20"), "Stopped a silver Astra, reg KE19 ***, on the A20");
        assert_eq!(r("plate KE19XWP"), "plate KE19 ***");
        assert_eq!(r("new BMW X5 ARV on the M6"), "new BMW X5 ARV on the M6", "no prefix-format plates");
        // Roads and lower case are not plates.
        assert_eq!(r("the A34 at J25, ab12 cde"), "the A34 at J25, ab12 cde");
    }

    #[test]
    fn phones_emails_postcodes_and_references() {
        assert_eq!(r("ring her on 07700 900123 or 07700900123."), "ring her on [phone] or [phone].");
        assert_eq!(r("call +44 (0)20 7946 0018 now"), "call [phone] now");
        assert_eq!(r("landline (0161) 496 0000"), "landline [phone]");
        assert_eq!(r("call 101 or 999, shift 0600-1400"), "call 101 or 999, shift 0600-1400");
        assert_eq!(r("mail jo.bloggs+x@mail.example.co.uk today"), "mail [email] today");
        assert_eq!(r("cc @pc_a@social.example"), "cc @pc_a@social.example", "a fediverse handle is public");
        assert_eq!(r("lives at PE11 2AB."), "lives at PE11 ***.");
        assert_eq!(r("custody ref CU/4471/26, crime 46/41172/26"), "custody ref [ref], crime [ref]");
        assert_eq!(r("Contact 101 quoting crime ref 13260081442"), "Contact 101 quoting crime ref [ref]");
        assert_eq!(r("quoting log 1234 of 3 March"), "quoting log [ref] of 3 March");
        assert_eq!(r("on 12/11/26 at 10"), "on 12/11/26 at 10", "a date is not a reference");
    }

    #[test]
    fn addresses_with_a_number_or_a_home_word() {
        assert_eq!(
            r("lives with his nan at 12 Mill Lane, Spalding."),
            "lives with his nan at [address], Spalding.",
            "numbered street"
        );
        assert_eq!(r("He lives above the bookies on Cowley Road. Guilty"), "He lives above the bookies on [address]. Guilty");
        assert_eq!(
            r("Darren Fawley, 44 Kestrel Mount, Rawmarsh"),
            "[name], [address], Rawmarsh",
            "a name then a number reads as an age: masked too"
        );
        assert_eq!(r("mae'n byw ar Heol y Bont"), "mae'n byw ar [address]");
        // A street with no number and nothing about anyone living there stays.
        assert_eq!(r("Raid at Elmtree Close tomorrow"), "Raid at Elmtree Close tomorrow");
        assert_eq!(r("Pothole on Chapel Rise reported"), "Pothole on Chapel Rise reported");
    }

    #[test]
    fn names_next_to_victim_suspect_witness_words() {
        assert_eq!(
            r("Job on Elmtree Close tonight: the victim is Kelly Brennan, 34, same bloke"),
            "Job on Elmtree Close tonight: the victim is [name], 34, same bloke"
        );
        assert_eq!(r("Interviewed our suspect, Marcus Vell, for six hours."), "Interviewed our suspect, [name], for six hours.");
        assert_eq!(r("witness Sarah saw it all"), "witness [name] saw it all");
        assert_eq!(r("IP is Mrs Patel from the shop"), "IP is [name] from the shop");
        assert_eq!(r("Connor Maddick has been located and arrested"), "[name] has been located and arrested");
        assert_eq!(r("The fella we nicked, Jordan Pike, custody ref"), "The fella we nicked, [name], custody ref");
        assert_eq!(r("y dioddefwr yw Gareth Morgan"), "y dioddefwr yw [name]");
        assert_eq!(r("WANTED: Can you help find Aled Price? Call 101"), "WANTED: Can you help find Aled Price? Call 101");
        assert_eq!(r("Appeal for wanted man Rhys Ellery"), "Appeal for wanted man [name]");
        // A full name with an age, and the court-result "of <street>".
        assert_eq!(
            r("Court: Tom Varley, 41, of Larch Grove, Leeds, jailed today"),
            "Court: [name], 41, of [address], Leeds, jailed today"
        );
        assert_eq!(r("welfare of Amy Rusk, 15, last seen"), "welfare of [name], 15, last seen");
        assert_eq!(r("Do you know where Kian O'Dowd (19) is?"), "Do you know where [name] (19) is?");
        assert_eq!(r("find 31-year-old Ben Tarrant now"), "find 31-year-old [name] now");
        assert_eq!(r("Manchester 10k, 640 runners"), "Manchester 10k, 640 runners");
        assert_eq!(r("op at Oxford Circus, 7–10pm and Canary Wharf, 6pm"), "op at Oxford Circus, 7–10pm and Canary Wharf, 6pm");
        assert_eq!(r("Llys: Iwan Jones, 29, o Stryd y Felin, Bala"), "Llys: [name], 29, o [address], Bala");
        assert_eq!(
            r("Bank Holiday, 2 days off"),
            "Bank Holiday, 2 days off".replace("Bank Holiday", "[name]"),
            "a known over-mask: two capitalised words before \", N\" read as a name and age"
        );
        // Not names: sentence starters, ranks, streets; and no role word, no mask.
        assert_eq!(r("the victim. He was shaken"), "the victim. He was shaken");
        assert_eq!(r("suspect Tuesday morning"), "suspect Tuesday morning");
        assert_eq!(r("Kelly Brennan ran the 10k"), "Kelly Brennan ran the 10k");
        assert_eq!(r("ip address logged"), "ip address logged");
    }

    #[test]
    fn spans_follow_the_masks() {
        let text = "reg KE19 XWP near 12 Mill Lane today";
        let reg = text.find("KE19").unwrap();
        let today = text.find("today").unwrap();
        let red = redact(text);
        assert_eq!(red.text, "reg KE19 *** near [address] today");
        assert_eq!(red.masked(), 2);
        // A mark on the plate covers its masked form; one on part of it too.
        let m = red.map_span(reg..reg + 8);
        assert_eq!(&red.text[m], "KE19 ***");
        let m = red.map_span(reg + 5..reg + 8);
        assert_eq!(&red.text[m], "KE19 ***");
        // A mark over several masks and plain words keeps its edges.
        let m = red.map_span(0..today + 5);
        assert_eq!(&red.text[m], red.text.as_str());
        let m = red.map_span(today..today + 5);
        assert_eq!(&red.text[m], "today");
        // Out-of-range spans stay out of range (the excerpt drops them), never panic.
        let m = red.map_span(500..600);
        assert!(m.start >= red.text.len());
    }

    #[test]
    fn masks_never_overlap_and_sit_on_char_boundaries() {
        let text = "Ŵyn: victim Siân Owen, 07700 900123, KE19 XWP, 3 Heol Y Bont 🚓 suspect Dafydd";
        let masks = find(text);
        for w in masks.windows(2) {
            assert!(w[0].range.end <= w[1].range.start, "{masks:?}");
        }
        for m in &masks {
            assert!(text.is_char_boundary(m.range.start) && text.is_char_boundary(m.range.end));
        }
        let out = r(text);
        assert!(!out.contains("Siân") && !out.contains("900123") && !out.contains("XWP") && !out.contains("Dafydd"), "{out}");
        assert!(out.contains("🚓"), "{out}");
    }
}
