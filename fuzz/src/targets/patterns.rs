//! The pattern-file loader: up to three files' text (separated by a line `----`), parsed and
//! compiled as the loader does a directory (rules, allowlists, exceptions across files), then
//! the compiled rules run over the input text itself.
use std::path::{Path, PathBuf};

use exposure_monitor::model::Post;
use exposure_monitor::patterns::{load_texts, Detector};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let files: Vec<(PathBuf, String)> =
        text.splitn(3, "\n----\n").enumerate().map(|(i, t)| (PathBuf::from(format!("p{i}.toml")), t.to_string())).collect();
    let dir = Path::new("fuzz");
    let Ok((rules, allowlist)) = load_texts(dir, &files) else { return };
    let Ok(detector) = Detector::from_rules(rules, allowlist, super::forces(), dir) else { return };
    let post = Post {
        platform: "fuzz".into(),
        platform_id: "fuzz:1".into(),
        author_id: "fuzz".into(),
        created_at: chrono::DateTime::UNIX_EPOCH,
        text: text.to_string(),
        alt_texts: vec![],
        lang_hints: vec![],
        url: None,
    };
    let _ = detector.identifier.post_signals(&post);
    let _ = detector.classifier.classify(&post);
}
