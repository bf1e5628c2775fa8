//! The RSS/Atom/JSON Feed source: the parser on every genuine feed in
//! `../shared/fixtures/platforms/rss`, and fetching against a loopback server (wiremock):
//! conditional GET, de-duplication by entry id, a broken feed skipped while the others go on.

mod common;

use exposure_monitor::sources::rss::{parse_feed, Cursor, RssConfig, RssSource};
use exposure_monitor::sources::{BuildContext, Page, SourceError};
use wiremock::matchers::{header, header_exists, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FEED: &str = "https://feeds.example/feed";

#[test]
fn every_feed_fixture_parses() {
    let Some(dir) = common::shared("fixtures/platforms/rss") else {
        return;
    };
    // file → (feed title, entries, a text the first entry starts with)
    let expected: &[(&str, &str, usize, &str)] = &[
        ("debian_news.rss1.rdf.xml", "Debian News", 1, "Updated Debian 11: 11.6 released\n\nThe Debian project"),
        ("ghost_changelog.rss2.xml", "Changelog", 1, "Send emails without publishing\n\nYou can now choose"),
        ("jsonfeed_example_1.json", "Daring Fireball", 2, "How Jeff Bezos’s iPhone X Was Hacked\n\nGood summary"),
        ("matrix_org_blog.rss2.xml", "matrix.org", 1, "This Week in Matrix 2022-09-23\n\n"),
        ("reddit_search_results.atom.xml", "reddit.com: search results - site:kevincox.ca", 1, "Announcing FeedMail\n\n"),
        ("reddit_subreddit_r_rust.atom.xml", "The Rust Programming Language", 1, "Hey Rustaceans! Got an easy question?"),
        ("rss2_spec_sample.xml", "Liftoff News", 4, "Star City\n\nHow do Americans get ready"),
        ("youtube_channel_mediarss.atom.xml", "PBS Space Time", 1, "Navigating with Quantum Entanglement"),
    ];
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    files.sort();
    let covered: Vec<String> = expected.iter().map(|e| e.0.to_string()).collect();
    assert_eq!(files, covered, "every fixture has an expectation");
    for (file, title, n, start) in expected {
        let (account, posts) =
            parse_feed(FEED, &std::fs::read(dir.join(file)).unwrap()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((account.platform.as_str(), account.platform_id.as_str()), ("rss", FEED), "{file}");
        assert_eq!(account.display_name, *title, "{file}");
        assert_eq!(posts.len(), *n, "{file}");
        assert!(posts[0].text.starts_with(start), "{file}: {:?}", posts[0].text);
        for p in &posts {
            assert_eq!(p.author_id, FEED, "{file}");
            assert!(p.platform_id.starts_with(&format!("{FEED}#")) && p.platform_id.len() > FEED.len() + 1, "{file}");
            assert!(!p.text.contains("<p>") && !p.text.contains("<br"), "{file}: markup left in {:?}", p.text);
        }
        let mut ids: Vec<&str> = posts.iter().map(|p| p.platform_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), posts.len(), "{file}: entry ids are unique");
    }
    // Specific fields: guid, RFC 822 date, language, Reddit fullname ids, media description.
    let (acc, posts) = parse_feed(FEED, &std::fs::read(dir.join("rss2_spec_sample.xml")).unwrap()).unwrap();
    assert_eq!(acc.bio, "Liftoff to Space Exploration.");
    assert_eq!(posts[0].platform_id, format!("{FEED}#http://liftoff.msfc.nasa.gov/2003/06/03.html#item573"));
    assert_eq!(posts[0].created_at.to_rfc3339(), "2003-06-03T09:39:21+00:00");
    assert_eq!(posts[0].lang_hints, ["en-us"]);
    assert!(posts[1].text.starts_with("Sky watchers in Europe"), "an item without a title is its description");
    let (_, posts) = parse_feed(FEED, &std::fs::read(dir.join("reddit_search_results.atom.xml")).unwrap()).unwrap();
    assert_eq!(posts[0].platform_id, format!("{FEED}#t3_qksbf1"));
    let (_, posts) = parse_feed(FEED, &std::fs::read(dir.join("youtube_channel_mediarss.atom.xml")).unwrap()).unwrap();
    assert!(posts[0].alt_texts[0].starts_with("Check Out Weathered on PBS Terra"), "{:?}", posts[0].alt_texts);

    let err = parse_feed(FEED, b"<html><body>not a feed</body></html>").unwrap_err();
    assert!(matches!(err, SourceError::Malformed { .. }) && err.to_string().contains(FEED), "{err}");
}

fn rss(items: &[(&str, &str)]) -> String {
    let mut s = String::from("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Nights on response</title><link>https://blog.example/</link><description>PC in &lt;b&gt;Kent&lt;/b&gt;. Views my own.</description>");
    for (guid, text) in items {
        s.push_str(&format!("<item><guid isPermaLink=\"false\">{guid}</guid><title>{text}</title><description>&lt;p&gt;{text} body&lt;/p&gt;</description><pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>"));
    }
    s.push_str("</channel></rss>");
    s
}

fn source(feeds: &[String]) -> RssSource {
    let list = feeds.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
    let mut cfg: RssConfig =
        toml::from_str(&format!("feeds = [{list}]\nretry_backoff_ms = 10\nmax_requests_per_second = 100\nmax_retries = 1"))
            .unwrap();
    cfg.validate().unwrap();
    RssSource::new("feeds".into(), cfg, &BuildContext::new("psd-test@example.invalid"))
}

async fn run(src: &mut RssSource, cursor: &mut Option<String>) -> Vec<Page> {
    let (pages, last) = common::pages_until_done(src, cursor.take(), 20).await;
    *cursor = last;
    pages
}

fn titles(pages: &[Page]) -> Vec<String> {
    pages.iter().flat_map(|p| p.posts.iter().map(|p| p.text.lines().next().unwrap().to_string())).collect()
}

#[tokio::test]
async fn conditional_get_dedupe_and_a_broken_feed_skipped() {
    let server = MockServer::start().await;
    let good = format!("{}/good.xml", server.uri());
    let broken = format!("{}/broken.xml", server.uri());
    // Second fetch with the validators: 304.
    Mock::given(path("/good.xml"))
        .and(header("if-none-match", "\"v1\""))
        .respond_with(ResponseTemplate::new(304))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/good.xml"))
        .and(header_exists("if-none-match"))
        .respond_with(ResponseTemplate::new(200).insert_header("etag", "\"v2\"").set_body_string(rss(&[
            ("c", "Third"),
            ("b", "Second"),
            ("a", "First"),
        ])))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path("/good.xml"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("etag", "\"v1\"").set_body_string(rss(&[("b", "Second"), ("a", "First")])),
        )
        .with_priority(3)
        .mount(&server)
        .await;
    Mock::given(path("/broken.xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<rss><channel><item>"))
        .mount(&server)
        .await;

    let mut cursor = None;
    let mut src = source(&[broken.clone(), good.clone()]);
    let pages = run(&mut src, &mut cursor).await;
    assert_eq!(pages.len(), 2);
    assert!(pages[0].skipped.iter().any(|s| s.contains("broken.xml")), "{:?}", pages[0].skipped);
    assert_eq!(titles(&pages), ["Second", "First"]);
    let acc = &pages[1].accounts[0];
    assert_eq!((acc.display_name.as_str(), acc.bio.as_str()), ("Nights on response", "PC in Kent. Views my own."));
    assert_eq!(pages[1].posts[0].text, "Second\n\nSecond body");
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert_eq!(c.feeds[&good].etag.as_deref(), Some("\"v1\""));
    assert!(!c.feeds.contains_key(&broken), "a broken feed keeps no state");

    // Not modified: nothing read.
    let pages = run(&mut source(&[broken.clone(), good.clone()]), &mut cursor).await;
    assert!(titles(&pages).is_empty());
    // Changed: only the new entry.
    let pages = run(&mut source(&[broken.clone(), good.clone()]), &mut cursor).await;
    assert_eq!(titles(&pages), ["Third"]);
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert_eq!(c.feeds[&good].etag.as_deref(), Some("\"v2\""));
    assert_eq!(c.feeds[&good].seen.len(), 3);
    // Same content again (no 304 this time): de-duplicated by id.
    let pages = run(&mut source(&[broken, good]), &mut cursor).await;
    assert!(titles(&pages).is_empty());
    let sent: Vec<_> = server.received_requests().await.unwrap().into_iter().filter(|r| r.url.path() == "/good.xml").collect();
    assert_eq!(sent.len(), 4);
    assert!(sent[0].headers.get("if-none-match").is_none());
    let ua = sent[0].headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(ua.starts_with("exposure-monitor/") && ua.contains("psd-test@example.invalid"), "{ua}");
}
