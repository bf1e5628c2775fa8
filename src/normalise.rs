//! Normalise: platform content to plain text, and the language of a text.
//!
//! Owns HTML-to-text (via `scraper`: block elements become line breaks, links keep their text)
//! and language detection (via `whatlang`, restricted to the languages that have rules). Sources
//! call these; later stages only ever see plain text.

use scraper::{Html, Node};

use crate::model::Lang;

/// Convert an HTML fragment (a Mastodon `content` or `note`) to plain text.
pub fn html_to_text(html: &str) -> String {
    let fragment = Html::parse_fragment(html);
    let mut out = String::with_capacity(html.len());
    for node in fragment.tree.root().descendants() {
        match node.value() {
            Node::Text(t) => out.push_str(t),
            Node::Element(e) => match e.name() {
                "br" => out.push('\n'),
                "p" | "div" | "li" | "blockquote" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push_str("\n\n");
                    } else if out.ends_with('\n') && !out.ends_with("\n\n") && !out.is_empty() {
                        out.push('\n');
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    out.trim().to_string()
}

/// A word list as a constant and a membership test compiled to a `match` (no hashing, no
/// search: the compiler switches on length and compares bytes).
macro_rules! word_list {
    ($list:ident, $is:ident, [$($w:literal),* $(,)?]) => {
        #[cfg_attr(not(test), allow(dead_code))] // the tests check the lists
        const $list: &[&str] = &[$($w),*];
        fn $is(w: &str) -> bool {
            matches!(w, $($w)|*)
        }
    };
}

// Welsh function words and very common words (lower case). Chosen to be rare as English
// words; `a`, `i`, `o`, `am` and `mi` are left out because English uses them too.
word_list!(
    WELSH_WORDS,
    is_welsh_word,
    [
        "yn", "y", "yr", "ac", "ar", "mae", "maen", "dwi", "dw", "dydw", "ddim", "gyda", "efo", "wedi", "bod", "heddiw", "heddi",
        "fory", "yfory", "nos", "bore", "ein", "eich", "ei", "ond", "fy", "chi", "ni", "nhw", "sy", "sydd", "roedd", "oedd",
        "fi", "iawn", "pawb", "diolch", "gan", "gyd", "hefyd", "erioed", "rŵan", "nawr", "yma", "eto", "arall", "dim", "bob",
        "pob", "ti", "sut", "pwy", "beth", "pan", "achos", "hwn", "hon", "hyn", "neu", "mewn", "drwy", "trwy", "dros", "tan",
        "heb", "rhaid", "gallu", "methu", "cael", "gael", "dod", "mynd", "wneud", "gwneud", "cymraeg", "heddlu", "diwrnod",
        "noson", "neithiwr", "i'r", "o'r", "ôl", "ydw", "ydy", "ydi", "oes", "mor", "ddydd", "wythnos", "gwaith", "'ma", "mi'n",
        "dwi'n", "dw i", "ma", "sa", "gweud", "deud", "llawer", "lot", "fawr", "mawr", "newydd", "cyn", "ar ôl", "am ddim",
    ]
);

// English function words (lower case) that are not also Welsh words.
word_list!(
    ENGLISH_WORDS,
    is_english_word,
    [
        "the", "and", "to", "of", "in", "is", "it", "you", "that", "for", "on", "with", "my", "was", "at", "this", "have", "are",
        "not", "but", "me", "we", "they", "just", "so", "what", "all", "if", "get", "out", "up", "no", "from", "your", "when",
        "one", "been", "it's", "i'm", "don't", "can't", "about", "who", "tonight", "today", "again", "had", "he", "she", "his",
        "her", "our", "their", "there", "be", "do", "did", "got", "after", "than", "then", "them", "will", "would", "should",
        "could", "has", "were", "an", "by", "as",
    ]
);

/// Longest entry of [`WELSH_WORDS`] and [`ENGLISH_WORDS`] in bytes: a longer ASCII word is in
/// neither list (and, being ASCII, carries no Welsh circumflex).
const MAX_LISTED_WORD: usize = max_len(WELSH_WORDS, max_len(ENGLISH_WORDS, 0));

const fn max_len(words: &[&str], mut max: usize) -> usize {
    let mut i = 0;
    while i < words.len() {
        if words[i].len() > max {
            max = words[i].len();
        }
        i += 1;
    }
    max
}

/// The letters of the circumflex test in [`lang_scores`], in both cases (the upper-case forms
/// are the only ones that lower-case to these letters).
const CIRCUMFLEXES: [char; 12] = ['ŵ', 'ŷ', 'Ŵ', 'Ŷ', 'â', 'ô', 'ê', 'î', 'Â', 'Ô', 'Ê', 'Î'];

/// English and Welsh evidence in `text`: counts of function words (and Welsh circumflexes).
///
/// Words are what `str::split` on whitespace and `,.!?;:()"/` gives, trimmed of everything but
/// letters, digits and apostrophes. The split is done on bytes: an ASCII byte is a delimiter or
/// not by a table, and only the lead bytes of the few non-ASCII whitespace characters (U+0085,
/// U+00A0, U+1680, U+2000-U+205F, U+3000) are decoded; every other non-ASCII byte is part of a
/// word. ASCII words (most words of most texts) are trimmed and lower-cased into a small buffer
/// without allocating; other words take the general Unicode path ([`score_unicode_word`]).
pub fn lang_scores(text: &str) -> (usize, usize) {
    let mut scores = (0, 0);
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    // Whether the word in progress has a non-ASCII byte.
    let mut unicode = false;
    while i < bytes.len() {
        let b = bytes[i];
        let delimiter_len = if b < 0x80 {
            usize::from(ASCII_DELIMITER[usize::from(b)])
        } else {
            unicode = true;
            match b {
                // Lead bytes of the non-ASCII whitespace characters.
                0xC2 | 0xE1 | 0xE2 | 0xE3 => {
                    let c = text[i..].chars().next().expect("a char boundary: a lead byte");
                    if c.is_whitespace() {
                        c.len_utf8()
                    } else {
                        0
                    }
                }
                _ => 0,
            }
        };
        if delimiter_len == 0 {
            i += 1;
            continue;
        }
        score_word(&text[start..i], unicode, &mut scores);
        i += delimiter_len;
        start = i;
        unicode = false;
    }
    score_word(&text[start..], unicode, &mut scores);
    scores
}

/// ASCII bytes that end a word in [`lang_scores`]: whitespace (the ASCII characters
/// `char::is_whitespace` accepts: tab, line feed, vertical tab, form feed, carriage return,
/// space) and `,.!?;:()"/`.
const ASCII_DELIMITER: [bool; 128] = {
    let mut t = [false; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = matches!(b as u8, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
            || matches!(b as u8, b',' | b'.' | b'!' | b'?' | b';' | b':' | b'(' | b')' | b'"' | b'/');
        b += 1;
    }
    t
};

/// Count one untrimmed word of [`lang_scores`] (`unicode`: it has a non-ASCII byte).
fn score_word(raw: &str, unicode: bool, scores: &mut (usize, usize)) {
    if unicode {
        return score_unicode_word(raw, scores);
    }
    // Trim what `trim_matches` below would: anything but ASCII letters, digits and `'`.
    let keep = |b: &u8| b.is_ascii_alphanumeric() || *b == b'\'';
    let bytes = raw.as_bytes();
    let Some(first) = bytes.iter().position(keep) else { return };
    let last = bytes.iter().rposition(keep).expect("a kept byte exists");
    score_ascii_word(&bytes[first..=last], scores);
}

/// Count a trimmed, non-empty ASCII word.
fn score_ascii_word(t: &[u8], (eng, cym): &mut (usize, usize)) {
    if t.len() > MAX_LISTED_WORD {
        return;
    }
    let mut buf = [0u8; MAX_LISTED_WORD];
    let buf = &mut buf[..t.len()];
    buf.copy_from_slice(t);
    buf.make_ascii_lowercase();
    let w = std::str::from_utf8(buf).expect("ASCII");
    if is_welsh_word(w) {
        *cym += 1;
    } else if is_english_word(w) {
        *eng += 1;
    }
}

/// [`score_word`] for a word with non-ASCII characters (before trimming).
fn score_unicode_word(raw: &str, scores: &mut (usize, usize)) {
    // A word counts only if it has a circumflex or is listed, and listed words are ASCII but
    // for `ŵ` and `ô`. Other non-ASCII letters and digits are never trimmed, and only `’`
    // (read as `'`) and the Kelvin sign (lower-cased to `k`) become ASCII: a word with any
    // other is skipped without trimming, replacing or lower-casing (most accented and
    // non-Latin words).
    let foreign = |c: char| !c.is_ascii() && c != '’' && c != '\u{212A}' && c.is_alphanumeric();
    if raw.chars().any(foreign) && !raw.contains(CIRCUMFLEXES) {
        return;
    }
    let t = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’');
    if t.is_empty() {
        return;
    }
    if t.is_ascii() {
        return score_ascii_word(t.as_bytes(), scores);
    }
    let (eng, cym) = scores;
    if t.chars().count() > MAX_LISTED_WORD {
        // Too long for either list (lower-casing never makes a word shorter in chars):
        // only the circumflex test can count it, and it reads the same before lower-casing.
        if t.contains(CIRCUMFLEXES) {
            *cym += 1;
        }
        return;
    }
    let w = t.replace('’', "'").to_lowercase();
    if is_welsh_word(&w) || w.contains(['ŵ', 'ŷ']) || (w.contains(['â', 'ô', 'ê', 'î']) && w.len() > 2) {
        *cym += 1;
    } else if is_english_word(&w) {
        *eng += 1;
    }
}

/// The rule language of `text` when the evidence is clear, or `None` when it is too short,
/// mixed, or in neither (the classifier then applies both rule sets).
///
/// whatlang has no Welsh model, so the decision is a function-word score: cheap (no model,
/// one pass over the words) and good at exactly the question the rules need answered.
pub fn detect_lang(text: &str) -> Option<Lang> {
    let (eng, cym) = lang_scores(text);
    lang_of_scores(text, eng, cym, true)
}

/// [`detect_lang`] from `text`'s [`lang_scores`]; with `ask_whatlang` false, a text with no
/// function words is `None` without asking whatlang (for callers to whom whatlang's only
/// possible answer, English, makes no difference).
pub fn lang_of_scores(text: &str, eng: usize, cym: usize, ask_whatlang: bool) -> Option<Lang> {
    if cym >= 2 && cym >= 2 * eng {
        Some(Lang::Cym)
    } else if eng >= 2 && eng >= 3 * cym.max(1) {
        Some(Lang::Eng)
    } else if ask_whatlang && whatlang_may_decide(text, eng, cym) {
        match whatlang::detect_lang(text)? {
            whatlang::Lang::Eng => Some(Lang::Eng),
            _ => None,
        }
    } else {
        None
    }
}

/// Whether [`lang_of_scores`] would ask whatlang about `text` (with `ask_whatlang`): when it
/// has no function words of either language and is long enough to be worth asking. Otherwise
/// its answer does not depend on whatlang.
pub fn whatlang_may_decide(text: &str, eng: usize, cym: usize) -> bool {
    eng + cym == 0 && text.chars().filter(|c| c.is_alphabetic()).nth(40).is_some()
}

/// A platform language hint (`en`, `cy`, `eng`, `cym`, `en-GB`, ...) as a rule language.
pub fn lang_from_hint(hint: &str) -> Option<Lang> {
    let primary = hint.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    match primary.as_str() {
        "en" | "eng" => Some(Lang::Eng),
        "cy" | "cym" | "wel" => Some(Lang::Cym),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_paragraphs_and_breaks_become_lines() {
        let t = html_to_text("<p>Night shift again<br>custody full</p><p>see <a href=\"https://x\">this</a> &amp; that</p>");
        assert_eq!(t, "Night shift again\ncustody full\n\nsee this & that");
    }

    #[test]
    fn script_text_is_kept_as_text_not_markup() {
        let t = html_to_text("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>");
        assert_eq!(t, "<script>alert(1)</script>");
    }

    #[test]
    fn welsh_and_english_are_told_apart_and_unsure_is_none() {
        assert_eq!(
            detect_lang("Methu deud llawer ond bore fory am 6 mi fydd 'na gnoc go fawr ar ddrws yn Twthill"),
            Some(Lang::Cym)
        );
        assert_eq!(detect_lang("Diolch eto i Siop Sglodion Morfa am y sglodion am ddim neithiwr"), Some(Lang::Cym));
        assert_eq!(detect_lang("3rd night shift in a row and custody was carnage. home, cereal, bed"), Some(Lang::Eng));
        // Too short or mixed: neither, so both rule sets apply.
        assert_eq!(detect_lang("Glaw. Eto."), None);
        assert_eq!(detect_lang("barn fy hun / views my own"), None);
    }

    /// The scorer before it avoided allocating (one `replace` and one `to_lowercase` a word).
    fn lang_scores_reference(text: &str) -> (usize, usize) {
        let (mut eng, mut cym) = (0, 0);
        for raw in
            text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '(' | ')' | '"' | '/'))
        {
            let w = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’').replace('’', "'").to_lowercase();
            if w.is_empty() {
                continue;
            }
            if WELSH_WORDS.contains(&w.as_str()) || w.contains(['ŵ', 'ŷ']) || (w.contains(['â', 'ô', 'ê', 'î']) && w.len() > 2)
            {
                cym += 1;
            } else if ENGLISH_WORDS.contains(&w.as_str()) {
                eng += 1;
            }
        }
        (eng, cym)
    }

    #[test]
    fn fast_scores_equal_the_reference_scorer() {
        assert!(WELSH_WORDS.iter().chain(ENGLISH_WORDS).all(|w| w.len() <= MAX_LISTED_WORD));
        // The byte-level split sees the same delimiters as the reference's `char` split.
        for b in 0u8..128 {
            let c = char::from(b);
            let reference = c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '(' | ')' | '"' | '/');
            assert_eq!(ASCII_DELIMITER[usize::from(b)], reference, "{b:#x}");
        }
        // What `score_unicode_word` skips early cannot count: a non-ASCII letter or digit other
        // than `’`, the Kelvin sign and the circumflexes lower-cases to something no listed
        // word has, and only the circumflexes lower-case to one.
        let listed: std::collections::HashSet<char> = WELSH_WORDS.iter().chain(ENGLISH_WORDS).flat_map(|w| w.chars()).collect();
        for c in ('\u{80}'..=char::MAX).filter(|c| c.is_alphanumeric() && !matches!(c, '’' | '\u{212A}')) {
            let lower: Vec<char> = c.to_lowercase().collect();
            if !CIRCUMFLEXES.contains(&c) {
                assert!(lower.iter().any(|l| !listed.contains(l)), "{c:?}");
                assert!(!lower.iter().any(|l| CIRCUMFLEXES.contains(l)), "{c:?}");
            }
        }
        assert_eq!('\u{212A}'.to_lowercase().to_string(), "k");
        let non_ascii_whitespace: Vec<char> = ('\u{80}'..=char::MAX).filter(|c| c.is_whitespace()).collect();
        assert!(non_ascii_whitespace.iter().all(|c| matches!(c.to_string().as_bytes()[0], 0xC2 | 0xE1 | 0xE2 | 0xE3)));
        let spaced: String = non_ascii_whitespace.iter().flat_map(|&w| [w, 'y', 'n', w, 't', 'h', 'e']).collect();
        assert_eq!(lang_scores(&spaced), lang_scores_reference(&spaced));
        assert_eq!(lang_scores(&spaced), (non_ascii_whitespace.len(), non_ascii_whitespace.len()));
        for text in [
            "Methu deud llawer ond bore fory am 6 mi fydd 'na gnoc go fawr ar ddrws yn Twthill",
            "I’M ON NIGHTS, It’s the THE And... (the) \"you\" / don’t can't DON'T",
            "Dŵr yn y tŷ, Ŵyn bach, côr mawr, tân, Ôl",
            "今日はとてもいい天気でした coffee the and ÀÉÎ İstanbul ΣΊΣΥΦΟΣ straße",
            "ab-the 'the' ''and'' x’ ’yn’ y'r i'r o'r I'R a’r — – … 🍺the🍺 the🍺",
            "",
            "   ",
            "averyveryverylongasciiwordthatisinnolist the the",
            "今日はとてもいい天気でしたコーヒーを飲みながら本読んでいます。猫がかわいい",
            "ÀÉÎÔÛÂÊÎÔŴŶâêîôûŵŷàéèçñöüßøåæœ-long-enough-to-pass-sixteen Ŵŷ ŴYN âbcdefghijklmnopqrs",
            "ŴŴŴŴŴŴŴŴŴŴŴŴŴŴŴŴŴŴ ÂÂÂÂÂÂÂÂÂÂÂÂÂÂÂÂÂÂÂ éééééééééééééééééééé",
            "the\u{a0}and\u{2009}yn\u{3000}the\u{85}ac\u{2028}to\u{1680}of — “the” «and» ¡yn! ‘ac’ the’ ’the",
            "\tthe\x0Band\x0Cyn\rac\x1Cthe\x1Fand the,and.yn!ac?to;of:in(is)it\"you\"that/for",
            "Ñandú the é à the",
            "\u{212A}ETTLE \u{212A} the i’m I’M ‘ŵyn’ Ôl ôl dŵr côr café naïve İstanbul THİS",
            "nós não está für très über año el la y o é",
            "'",
            "’",
            "the",
            "a",
        ] {
            assert_eq!(lang_scores(text), lang_scores_reference(text), "{text:?}");
        }
    }

    #[test]
    fn hints_map_to_rule_languages() {
        assert_eq!(lang_from_hint("en-GB"), Some(Lang::Eng));
        assert_eq!(lang_from_hint("cy"), Some(Lang::Cym));
        assert_eq!(lang_from_hint("fr"), None);
    }
}
