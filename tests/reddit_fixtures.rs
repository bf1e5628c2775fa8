//! The Reddit parsers against every genuine payload in `../shared/fixtures/platforms/reddit`
//! (responses recorded from reddit.com, error bodies included), and the HTTP layer's header
//! parsing against every recorded header sidecar (Reddit's float-string `x-ratelimit-*`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use exposure_monitor::sources::http::{parse_rate_headers, parse_retry_after, HttpResponse};
use exposure_monitor::sources::reddit::{
    error_message, fullname_cmp, parse_listing, parse_token, parse_user, to_account, to_post, ApiUser, Item, Thing,
};
use exposure_monitor::sources::SourceError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn token_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        url: "https://www.reddit.com/api/v1/access_token".parse().unwrap(),
        status: reqwest::StatusCode::OK,
        headers: HeaderMap::new(),
        body,
    }
}

fn sidecar_headers(dir: &Path, name: &str) -> HeaderMap {
    let v: serde_json::Value = serde_json::from_slice(&read(dir, name)).unwrap();
    let mut headers = HeaderMap::new();
    for (k, vals) in v["headers"].as_object().unwrap() {
        for val in vals.as_array().unwrap() {
            headers.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(val.as_str().unwrap()).unwrap());
        }
    }
    headers
}

/// Every body file, and what the parsers make of it. A fixture added to the folder without a
/// check here fails the test, so none is left out.
#[test]
fn every_reddit_payload_parses() {
    let Some(dir) = common::shared("fixtures/platforms/reddit") else {
        return;
    };
    let mut checked: BTreeSet<&str> = BTreeSet::new();
    let mut check = |name: &'static str| {
        checked.insert(name);
        name
    };

    // The token grant: a bearer token for an hour.
    let (token, lasts) =
        parse_token(&token_response(read(&dir, check("oauth_access_token_client_credentials_200.json")))).unwrap();
    assert_eq!((token.as_str(), lasts), ("<ACCESS_TOKEN>", Duration::from_secs(3600)));
    // The token endpoint's 429 body: no token, and a message saying why.
    let body = read(&dir, check("access_token_429.json"));
    assert_eq!(error_message(&body).as_deref(), Some("429: Too Many Requests"));
    let err = parse_token(&token_response(body)).unwrap_err();
    assert!(matches!(err, SourceError::Setup(_)) && err.to_string().contains("Too Many Requests"), "{err}");

    // Profiles: bio = subreddit.public_description, display name = subreddit.title.
    let u = parse_user(&read(&dir, check("user_about_other_user_200.json")), "about").unwrap();
    assert_eq!((u.name.as_str(), u.hide_from_robots, u.id.as_deref()), ("Lil_SpazBot", Some(true), Some("3ebyblla")));
    let a = to_account(&u);
    assert_eq!((a.platform.as_str(), a.platform_id.as_str(), a.handle.as_str()), ("reddit", "Lil_SpazBot", "u/Lil_SpazBot"));
    assert_eq!((a.display_name.as_str(), a.bio.as_str()), ("x", ""));
    assert_eq!(a.profile_url.as_deref(), Some("https://www.reddit.com/user/Lil_SpazBot/"));
    let u = parse_user(&read(&dir, check("user_about_with_public_description_selfview_200.json")), "about").unwrap();
    assert_eq!((u.hide_from_robots, u.is_suspended), (Some(false), Some(false)));
    let a = to_account(&u);
    assert_eq!(
        a.bio,
        "Runs u/RemindMeBot and u/UpdateMeBot, moderates r/CompetitiveOverwatch. Happy to answer any python/praw questions"
    );
    assert_eq!(a.display_name, "");

    // A user search result is a Listing of t2 accounts: not posts, each reported, none dropped
    // silently; the accounts themselves read as profiles.
    let body = read(&dir, check("users_search_200.json"));
    let l = parse_listing(&body, "search").unwrap();
    assert_eq!((l.items.len(), l.bad.len(), l.len), (0, 1, 1));
    assert!(l.bad[0].contains("kind `t2` is not a post or comment"), "{:?}", l.bad);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let t: Thing = serde_json::from_value(v["data"]["children"][0].clone()).unwrap();
    let u: ApiUser = serde_json::from_value(t.data).unwrap();
    assert_eq!((u.name.as_str(), u.hide_from_robots), ("praw", Some(false)));

    // Partial users by id: a map, not an account: a clear error, not a panic.
    let err =
        parse_user(&read(&dir, check("user_data_by_account_ids_200.json")), "GET /api/user_data_by_account_ids").unwrap_err();
    assert!(err.to_string().contains("GET /api/user_data_by_account_ids"), "{err}");

    // A user's submissions, newest first: 100 posts and an `after` cursor (2016 field set).
    let l = parse_listing(&read(&dir, check("user_submitted_new_limit100_200.json")), "submitted").unwrap();
    assert!(l.bad.is_empty(), "{:?}", l.bad);
    assert_eq!((l.items.len(), l.after.as_deref(), l.before.as_deref()), (100, Some("t3_21oo"), None));
    assert_eq!(l.items.last().unwrap().fullname(), "t3_21oo");
    // Newest first by time; but ids do not always grow with time (2006 posts here), so the
    // source orders by `created_utc`, and compares ids only when it has no time.
    assert!(l.items.windows(2).all(|w| w[0].created_utc() >= w[1].created_utc()));
    let id_inversions = l.items.windows(2).filter(|w| fullname_cmp(w[0].fullname(), w[1].fullname()).is_lt()).count();
    assert_eq!(id_inversions, 2);
    let posts: Vec<_> = l.items.iter().filter_map(|i| to_post(i, "spez")).collect();
    assert_eq!(posts.len(), 100);
    assert!(posts.iter().all(|p| p.author_id == "spez" && p.lang_hints.is_empty() && p.alt_texts.is_empty()));
    assert!(posts.iter().all(|p| p.url.as_deref().is_some_and(|u| u.starts_with("https://www.reddit.com/r/"))));
    let first = &posts[0];
    assert_eq!((first.platform_id.as_str(), first.created_at.timestamp()), ("t3_434h6c", 1_454_004_343));
    assert!(first.text.starts_with("Reddit in 2016\n\nHi All,\n\nNow that 2015"), "{}", first.text);
    // raw_json=1: no HTML entities in the text.
    assert!(!posts.iter().any(|p| p.text.contains("&amp;") || p.text.contains("&gt;")));
    // A link post has only its title.
    let link = l.items.iter().find_map(|i| match i {
        Item::Link(p) if p.selftext.is_empty() => Some(p),
        _ => None,
    });
    let link = link.expect("a link post in the listing");
    assert_eq!(to_post(&Item::Link(link.clone()), "spez").unwrap().text, link.title.trim());

    // The last page of a listing: `after` null.
    let l = parse_listing(&read(&dir, check("user_overview_last_page_after_null_200.json")), "overview").unwrap();
    assert_eq!((l.items.len(), l.after), (1, None));
    // Polling with `before` and nothing new: an empty listing.
    let l = parse_listing(&read(&dir, check("user_comments_before_cursor_empty_200.json")), "comments").unwrap();
    assert_eq!((l.items.len(), l.len, l.after, l.before), (0, 0, None, None));

    // Modern field sets: a self post with an empty body, and a comment.
    let l = parse_listing(&read(&dir, check("api_info_submission_t3_200.json")), "info").unwrap();
    let p = to_post(&l.items[0], "Lil_SpazTest").unwrap();
    assert_eq!((p.platform_id.as_str(), p.text.as_str()), ("t3_uflrmv", "Test post"));
    assert_eq!(p.url.as_deref(), Some("https://www.reddit.com/r/<TEST_SUBREDDIT>/comments/uflrmv/test_post/"));
    let l = parse_listing(&read(&dir, check("api_info_comment_t1_200.json")), "info").unwrap();
    assert!(matches!(&l.items[0], Item::Comment(c) if c.link_id.as_deref() == Some("t3_uflrmv")));
    let p = to_post(&l.items[0], "Lil_SpazTest").unwrap();
    assert_eq!((p.platform_id.as_str(), p.text.as_str(), p.created_at.timestamp()), ("t1_i6yklz7", "test reply", 1_651_444_641));
    assert_eq!(p.url.as_deref(), Some("https://www.reddit.com/r/<TEST_SUBREDDIT>/comments/uflrmv/test_post/i6yklz7/"));

    // Error bodies: a readable message each, and never mistaken for a listing or an account.
    for (name, message) in [
        (check("forbidden_403.json"), "403"),
        (check("user_upvoted_other_user_403.json"), "403"),
        (check("invalid_access_token_401.json"), "401"),
        (check("user_data_by_account_ids_404.json"), "404: Not Found"),
        (check("wiki_page_not_found_404.json"), "Not Found: PAGE_NOT_CREATED"),
        (check("user_trophies_nonexistent_user_400.json"), "Bad Request: USER_DOESNT_EXIST: that user doesn't exist"),
    ] {
        let body = read(&dir, name);
        assert_eq!(error_message(&body).as_deref(), Some(message), "{name}");
        let err = parse_listing(&body, &format!("GET /{name}")).unwrap_err();
        assert!(matches!(err, SourceError::Malformed { .. }) && err.to_string().contains(name), "{name}: {err}");
        assert!(parse_user(&body, name).is_err(), "{name}");
    }
    // The 429 answer with an HTML body: no JSON message, a clear error, and Retry-After read.
    let html = read(&dir, "api_me_429_retry_after.html");
    assert_eq!(error_message(&html), None);
    let err = parse_listing(&html, "GET /api/v1/me").unwrap_err();
    assert!(err.to_string().contains("expected a Reddit Listing"), "{err}");
    let h = sidecar_headers(&dir, "api_me_429_retry_after.headers.json");
    assert_eq!(parse_retry_after(h["retry-after"].to_str().unwrap()), Some(Duration::from_secs(4)));

    common::assert_every_payload_checked(&dir, &checked);
}

/// Every recorded header sidecar: where Reddit sent `x-ratelimit-*` (used as an integer,
/// remaining as a float string, reset in seconds), the window's limit is used + remaining (600
/// in older recordings, 1000 in newer ones) and the reset is that many seconds away.
#[test]
fn every_recorded_header_set_parses() {
    let Some(dir) = common::shared("fixtures/platforms/reddit") else {
        return;
    };
    let mut sidecars = 0;
    let mut with_limits = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".headers.json") {
            continue;
        }
        sidecars += 1;
        let headers = sidecar_headers(&dir, &name);
        let r = parse_rate_headers(&headers, SystemTime::now());
        let Some(remaining) = headers.get("x-ratelimit-remaining") else {
            assert_eq!((r.limit, r.remaining), (None, None), "{name}");
            continue;
        };
        with_limits += 1;
        let remaining: f64 = remaining.to_str().unwrap().parse().unwrap();
        let used: f64 = headers["x-ratelimit-used"].to_str().unwrap().parse().unwrap();
        let reset: u64 = headers["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert_eq!(r.remaining, Some(remaining), "{name}");
        assert!(matches!(r.limit, Some(l) if l == 600.0 || l == 1000.0), "{name}: {:?}", r.limit);
        assert_eq!(r.reset_in, Some(Duration::from_secs(reset)), "{name}");
        assert_eq!(r.limit, Some(used + remaining), "{name}");
    }
    assert!(sidecars >= 18 && with_limits >= 8, "{sidecars} sidecars, {with_limits} with rate-limit headers");
}
