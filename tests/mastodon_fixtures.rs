//! The Mastodon parsers against every genuine payload in `../shared/fixtures/platforms/mastodon`
//! (recorded responses, documentation examples and error bodies), and the HTTP layer's header
//! parsing against every recorded header sidecar.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use exposure_monitor::sources::http::parse_rate_headers;
use exposure_monitor::sources::mastodon::{
    account_bio, error_message, hashtag_feeds_public, link_param, parse_items, to_account, to_post, ApiAccount, ApiMedia,
    ApiSearch, ApiStatus,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

const INSTANCE: &str = "http://localhost:3000";

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn statuses(dir: &Path, name: &str) -> Vec<ApiStatus> {
    let (good, bad) = parse_items::<ApiStatus>(&read(dir, name), name).unwrap();
    assert!(bad.is_empty(), "{name}: {bad:?}");
    good
}

fn accounts(dir: &Path, name: &str) -> Vec<ApiAccount> {
    let (good, bad) = parse_items::<ApiAccount>(&read(dir, name), name).unwrap();
    assert!(bad.is_empty(), "{name}: {bad:?}");
    good
}

fn account(dir: &Path, name: &str) -> ApiAccount {
    serde_json::from_slice(&read(dir, name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn status(dir: &Path, name: &str) -> ApiStatus {
    serde_json::from_slice(&read(dir, name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn texts(list: &[ApiStatus]) -> Vec<String> {
    list.iter().filter_map(|s| to_post(s, "author", INSTANCE)).map(|p| p.text).collect()
}

/// Every body file, and what the parsers make of it. A fixture added to the folder without a
/// check here fails the test, so none is left out.
#[test]
fn every_mastodon_payload_parses() {
    let Some(dir) = common::shared("fixtures/platforms/mastodon") else {
        return;
    };
    let mut checked: BTreeSet<&str> = BTreeSet::new();
    let mut check = |name: &'static str| {
        checked.insert(name);
        name
    };

    // Accounts: bio is the note as text plus the profile fields.
    let a = account(&dir, check("account_lookup_200.json"));
    let acc = to_account(&a, INSTANCE, "localhost:3000");
    assert_eq!(acc.bio, "I walk funny\nbread: toasty.\nlasagna: no!!!");
    assert_eq!(acc.handle, "@mastodonpy_test@localhost:3000");
    assert_eq!(acc.platform_id, "http://localhost:3000/ap/users/117020565966271181");
    assert_eq!((a.noindex, a.indexable), (Some(false), Some(true)));

    let a = account(&dir, check("mastodon_social_account_remote_200.json"));
    let acc = to_account(&a, "https://mastodon.social", "mastodon.social");
    assert_eq!(acc.handle, "@halcy@icosahedron.website");
    assert!(acc.bio.starts_with("i am exactly like all the other guys.\n\nideal for"), "{}", acc.bio);
    assert!(acc.bio.contains("\nWeb: https://halcy.de/"), "{}", acc.bio);
    assert!(acc.bio.contains("\nPronouns: He/Him"), "{}", acc.bio);
    assert!(!acc.bio.contains('<'), "{}", acc.bio);

    let a = account(&dir, check("docs_entity_Account_example.json"));
    let bio = account_bio(&a);
    assert!(bio.contains("Pronouns: they/them"), "{bio}");
    assert!(bio.contains("Website: http://shork.xyz"), "{bio}");
    assert_eq!(a.uri, None);
    let acc = to_account(&a, "https://mastodon.social", "mastodon.social");
    assert_eq!(acc.platform_id, format!("https://mastodon.social/api/v1/accounts/{}", a.id));

    for (name, n) in
        [(check("accounts_by_ids_200.json"), 2), (check("accounts_search_200.json"), 2), (check("directory_200.json"), 1)]
    {
        let list = accounts(&dir, name);
        assert_eq!(list.len(), n, "{name}");
        assert!(list.iter().all(|a| !a.id.is_empty() && !a.acct.is_empty()), "{name}");
    }
    let dir_acc = &accounts(&dir, "directory_200.json")[0];
    assert_eq!(dir_acc.last_status_at.as_deref(), Some("2026-08-01"));

    // Search results (v2): accounts inside an object.
    for (name, n) in [(check("search_v2_local_200.json"), 2), (check("mastodon_social_search_v2_200.json"), 18)] {
        let s: ApiSearch = serde_json::from_slice(&read(&dir, name)).unwrap();
        let body = serde_json::to_vec(&s.accounts).unwrap();
        let (good, bad) = parse_items::<ApiAccount>(&body, name).unwrap();
        assert!(bad.is_empty(), "{name}: {bad:?}");
        assert_eq!(good.len(), n, "{name}");
    }

    // Status lists: content HTML to text, newest first, none of them reblogs.
    let page1 = statuses(&dir, check("account_statuses_page1_200.json"));
    assert_eq!(texts(&page1)[0], "Toot number 9!");
    assert_eq!(page1[0].language.as_deref(), Some("en"));
    let older = statuses(&dir, check("account_statuses_max_id_200.json"));
    let newer = statuses(&dir, check("account_statuses_min_id_200.json"));
    assert_eq!((page1.len(), older.len(), newer.len()), (5, 5, 5));
    for (name, n) in [(check("timeline_public_anonymous_200.json"), 8), (check("timeline_tag_200.json"), 1)] {
        let list = statuses(&dir, name);
        assert_eq!(list.len(), n, "{name}");
        let posts = texts(&list);
        assert_eq!(posts.len(), n, "{name}: a status was dropped");
        assert!(posts.iter().all(|t| !t.contains("<p>")), "{name}: {posts:?}");
    }
    assert!(statuses(&dir, check("timeline_home_empty_page_200.json")).is_empty());

    // Single statuses: alt text, language, content warnings, private visibility dropped.
    let s = status(&dir, check("mastodon_social_status_with_image_alt_200.json"));
    assert_eq!(s.visibility.as_deref(), Some("private"));
    assert_eq!(to_post(&s, "a", INSTANCE), None, "a private status is never read");
    let mut public = s.clone();
    public.visibility = Some("public".into());
    let p = to_post(&public, "a", INSTANCE).unwrap();
    assert_eq!(
        (p.text.as_str(), p.alt_texts.clone(), p.lang_hints.clone()),
        ("image post", vec!["furry cube".to_string()], vec!["de".to_string()])
    );
    assert_eq!(p.platform_id, s.uri.clone().unwrap());

    let s = status(&dir, check("mastodon_social_status_200.json"));
    let p = to_post(&s, "a", INSTANCE).unwrap();
    assert!(p.text.starts_with("test post for mastodon.py stuff\n\n@halcy you're a doo-doo head"), "{}", p.text);
    assert_eq!(p.lang_hints, ["de"]);
    assert_eq!(p.url, s.url);

    let s = status(&dir, check("docs_entity_Status_example.json"));
    let p = to_post(&s, "a", INSTANCE).unwrap();
    assert!(p.text.starts_with("\"I lost my inheritance with one wrong digit on my sort code\""), "{}", p.text);
    let mut boosted = s.clone();
    boosted.reblog = Some(serde_json::json!({"id": "1"}));
    assert_eq!(to_post(&boosted, "a", INSTANCE), None, "a reblog is not the author's words");

    let m: ApiMedia = serde_json::from_slice(&read(&dir, check("docs_entity_MediaAttachment_image_example.json"))).unwrap();
    assert_eq!(m.description.as_deref(), Some("test media description"));

    // Error bodies.
    assert_eq!(error_message(&read(&dir, check("account_lookup_404.json"))).as_deref(), Some("Record not found"));
    assert_eq!(error_message(&read(&dir, check("status_404.json"))).as_deref(), Some("Not Found"));
    assert_eq!(
        error_message(&read(&dir, check("timeline_home_anonymous_401.json"))).as_deref(),
        Some("The access token is invalid")
    );
    let e = error_message(&read(&dir, check("docs_entity_Error_example.json"))).unwrap();
    assert!(e.starts_with("invalid_grant: The provided authorization grant is invalid"), "{e}");
    // An error body is not a list of statuses: a clear error, not a panic.
    let err = parse_items::<ApiStatus>(&read(&dir, "status_404.json"), "GET /x").unwrap_err();
    assert!(err.to_string().contains("GET /x") && err.to_string().contains("expected a JSON array"), "{err}");

    // Instance: mastodon.social made hashtag feeds public when recorded.
    assert_eq!(hashtag_feeds_public(&read(&dir, check("mastodon_social_instance_v2_200.json"))).unwrap(), Some(true));

    common::assert_every_payload_checked(&dir, &checked);
}

/// Every recorded header sidecar: rate-limit headers parse (ISO-8601 reset), and `Link` headers
/// give the ids the source pages with.
#[test]
fn every_recorded_header_set_parses() {
    let Some(dir) = common::shared("fixtures/platforms/mastodon") else {
        return;
    };
    let mut sidecars = 0;
    let mut links = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".headers.json") {
            continue;
        }
        sidecars += 1;
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut headers = HeaderMap::new();
        for (k, vals) in v["headers"].as_object().unwrap() {
            for val in vals.as_array().unwrap() {
                headers
                    .append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(val.as_str().unwrap()).unwrap());
            }
        }
        let reset: chrono::DateTime<chrono::Utc> =
            headers["x-ratelimit-reset"].to_str().unwrap().parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        // Seen a minute before the recorded reset, the window has a minute left.
        let now: SystemTime = (reset - chrono::Duration::seconds(60)).into();
        let r = parse_rate_headers(&headers, now);
        assert_eq!(r.limit, Some(300.0), "{name}");
        assert!(r.remaining.is_some_and(|n| n <= 300.0), "{name}");
        assert_eq!(r.reset_in.map(|d| d.as_secs()), Some(60), "{name}");
        if let Some(link) = headers.get("link") {
            links += 1;
            let link = link.to_str().unwrap();
            let next = link_param(link, "next", "max_id").unwrap_or_else(|| panic!("{name}: no next max_id in {link}"));
            let prev = link_param(link, "prev", "min_id").unwrap_or_else(|| panic!("{name}: no prev min_id in {link}"));
            // The page's body holds exactly the ids between the two.
            let body = std::fs::read(dir.join(v["body_file"].as_str().unwrap())).unwrap();
            let (list, _) = parse_items::<ApiStatus>(&body, &name).unwrap();
            assert_eq!(list.first().map(|s| s.id.clone()), Some(prev), "{name}");
            assert_eq!(list.last().map(|s| s.id.clone()), Some(next), "{name}");
        }
    }
    assert!(sidecars >= 19 && links >= 5, "{sidecars} sidecars, {links} with Link");
}
