//! The `Link` header of a Mastodon page (RFC 8288), as the source reads it to page back
//! (`rel="next"`, `max_id`) and forward (`rel="prev"`, `min_id`). The header is the server's,
//! so hostile: whatever it says, reading it does not panic, and a value found is the named
//! parameter of a URL that the header puts between `<` and `>`.
use exposure_monitor::sources::mastodon::link_param;

pub fn run(data: &[u8]) {
    let Ok(link) = std::str::from_utf8(data) else { return };
    for (rel, param) in [("next", "max_id"), ("prev", "min_id"), ("next", "min_id")] {
        let Some(value) = link_param(link, rel, param) else { continue };
        // Every `<` to the next `>`: the targets the header can name.
        let targets = link.match_indices('<').filter_map(|(i, _)| link[i + 1..].split_once('>').map(|(t, _)| t));
        let found = targets
            .filter_map(|t| url::Url::parse(t).ok())
            .any(|u| u.query_pairs().any(|(k, v)| k == param && v == value));
        assert!(found, "{link:?}: {rel} {param} = {value:?} is no URL parameter of the header");
    }
}
