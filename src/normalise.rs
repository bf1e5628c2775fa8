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
const MAX_LISTED_WORD: usize = 16;

/// English and Welsh evidence in `text`: counts of function words (and Welsh circumflexes).
///
/// One pass without allocating for ASCII words (most words of most texts): they are
/// lower-cased into a small buffer; other words take the general Unicode path.
pub fn lang_scores(text: &str) -> (usize, usize) {
    let (mut eng, mut cym) = (0, 0);
    let mut ascii = [0u8; MAX_LISTED_WORD];
    for raw in text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '(' | ')' | '"' | '/')) {
        let t = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’');
        if t.is_empty() {
            continue;
        }
        if t.is_ascii() {
            if t.len() > MAX_LISTED_WORD {
                continue;
            }
            let buf = &mut ascii[..t.len()];
            buf.copy_from_slice(t.as_bytes());
            buf.make_ascii_lowercase();
            let w = std::str::from_utf8(buf).expect("ASCII");
            if is_welsh_word(w) {
                cym += 1;
            } else if is_english_word(w) {
                eng += 1;
            }
            continue;
        }
        if t.chars().count() > MAX_LISTED_WORD {
            // Too long for either list (lower-casing never makes a word shorter in chars):
            // only the circumflex test can count it, and it reads the same before lower-casing
            // (the upper-case forms are the only ones that lower-case to these letters).
            if t.contains(['ŵ', 'ŷ', 'Ŵ', 'Ŷ', 'â', 'ô', 'ê', 'î', 'Â', 'Ô', 'Ê', 'Î']) {
                cym += 1;
            }
            continue;
        }
        let w = t.replace('’', "'").to_lowercase();
        if is_welsh_word(&w) || w.contains(['ŵ', 'ŷ']) || (w.contains(['â', 'ô', 'ê', 'î']) && w.len() > 2) {
            cym += 1;
        } else if is_english_word(&w) {
            eng += 1;
        }
    }
    (eng, cym)
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
    } else if ask_whatlang && eng + cym == 0 && text.chars().filter(|c| c.is_alphabetic()).nth(40).is_some() {
        // No function words of either: only a long text is worth asking whatlang about.
        match whatlang::detect_lang(text)? {
            whatlang::Lang::Eng => Some(Lang::Eng),
            _ => None,
        }
    } else {
        None
    }
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
