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

/// The most likely rule language of `text`, or `None` when it is too short or in neither.
pub fn detect_lang(text: &str) -> Option<Lang> {
    // whatlang has no Welsh model; Welsh detection is decided with the classifier work.
    match whatlang::detect_lang(text)? {
        whatlang::Lang::Eng => Some(Lang::Eng),
        _ => None,
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
    fn hints_map_to_rule_languages() {
        assert_eq!(lang_from_hint("en-GB"), Some(Lang::Eng));
        assert_eq!(lang_from_hint("cy"), Some(Lang::Cym));
        assert_eq!(lang_from_hint("fr"), None);
    }
}
