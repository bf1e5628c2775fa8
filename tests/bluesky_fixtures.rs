//! The Bluesky parsers against every genuine payload in `../shared/fixtures/platforms/bluesky/`
//! (XRPC responses recorded from bsky.social by the MarshalX SDK's fetch script, and Jetstream
//! captures whose commits carry the same `app.bsky.feed.post` / `app.bsky.actor.profile`
//! records the AppView returns). Skips visibly without `../shared` (fails under
//! REQUIRE_PEERS=1).

mod common;

use exposure_monitor::sources::bluesky::{
    embed_alts, error_message, is_did, normalise_handle, parse_time, parse_values, read_feed_item, to_account,
    wants_no_unauthenticated, ApiFeedItem, ApiPostRecord, ApiProfile,
};
use serde_json::{json, Value};

const WEB: &str = "https://bsky.app";

fn load(name: &str) -> Option<Value> {
    let p = common::shared(&format!("fixtures/platforms/bluesky/{name}"))?;
    Some(serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn lines(name: &str) -> Option<Vec<Value>> {
    let p = common::shared(&format!("fixtures/platforms/bluesky/{name}"))?;
    Some(
        std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

#[test]
fn every_fixture_is_covered() {
    let Some(dir) = common::shared("fixtures/platforms/bluesky") else {
        return;
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.ends_with(".jsonl"))
        .collect();
    names.sort();
    // The lexicons/ folder holds schemas, not payloads; README.md is prose. Every payload file is
    // read by a test below; a new one must get a test too.
    let covered = [
        "app.bsky.feed.getPostThread_with_image_embed_200.json",
        "app.bsky.graph.getFollows_200.json",
        "com.atproto.identity.resolveHandle_200.json",
        "com.atproto.repo.describeRepo_200.json",
        "com.atproto.repo.getRecord_post_200.json",
        "com.atproto.repo.getRecord_post_extended_200.json",
        "jetstream_v1_capture_152_events.jsonl",
        "jetstream_v1_capture_manifest.json",
        "jetstream_v1_golden_10_events.jsonl",
    ];
    assert_eq!(names, covered, "payload files changed: cover the new ones");
}

#[test]
fn profile_views_become_accounts() {
    let Some(v) = load("app.bsky.graph.getFollows_200.json") else {
        return;
    };
    let follows = v["follows"].as_array().unwrap().clone();
    let n = follows.len();
    assert!(n > 0);
    let (profiles, bad) = parse_values::<ApiProfile>(follows, "getFollows");
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(profiles.len(), n);
    let why = profiles.iter().find(|p| p.handle == "why.bsky.team").expect("why.bsky.team is followed");
    let a = to_account(why, WEB);
    assert_eq!(a.platform, "bluesky");
    assert_eq!(a.platform_id, "did:plc:vpkhqolt662uhesyj6nxm7ys");
    assert_eq!(a.handle, "@why.bsky.team");
    assert_eq!(a.display_name, "Why");
    assert_eq!(a.bio, "Technical advisor to @bluesky, first engineer at Protocol Labs. Wizard Utopian.");
    assert_eq!(a.profile_url.as_deref(), Some("https://bsky.app/profile/did:plc:vpkhqolt662uhesyj6nxm7ys"));
    for p in &profiles {
        assert!(is_did(&p.did), "{}", p.did);
        assert!(normalise_handle(&p.handle).is_some(), "{}", p.handle);
        // None of these accounts set the opt-out self-label.
        assert!(!wants_no_unauthenticated(p), "{}", p.handle);
    }
}

#[test]
fn opt_out_self_label_is_read_from_a_genuine_profile() {
    let Some(v) = load("app.bsky.graph.getFollows_200.json") else {
        return;
    };
    let mut profile = v["follows"][0].clone();
    let did = profile["did"].as_str().unwrap().to_string();
    let label = json!({"src": did, "uri": format!("at://{did}/app.bsky.actor.profile/self"), "val": "!no-unauthenticated", "cts": "2024-01-01T00:00:00.000Z"});
    profile["labels"] = json!([label.clone()]);
    let p: ApiProfile = serde_json::from_value(profile.clone()).unwrap();
    assert!(wants_no_unauthenticated(&p));
    let mut neg = label;
    neg["neg"] = json!(true);
    profile["labels"].as_array_mut().unwrap().push(neg);
    let p: ApiProfile = serde_json::from_value(profile).unwrap();
    assert!(!wants_no_unauthenticated(&p), "a negation label withdraws it");
}

#[test]
fn a_post_view_with_record_with_media() {
    let Some(v) = load("app.bsky.feed.getPostThread_with_image_embed_200.json") else {
        return;
    };
    let post = v["thread"]["post"].clone();
    let did = post["author"]["did"].as_str().unwrap().to_string();
    let item: ApiFeedItem = serde_json::from_value(json!({ "post": post })).unwrap();
    let entry = read_feed_item(&item, &did, WEB).unwrap();
    let p = entry.post.expect("the author's own post");
    assert_eq!(p.platform_id, "at://did:plc:kvwvcn5iqfooopmyzvb4qzba/app.bsky.feed.post/3kaheyt6vpc22");
    assert_eq!(p.author_id, did);
    assert_eq!(p.text, "");
    assert_eq!(p.lang_hints, ["en"]);
    assert_eq!(p.created_at, parse_time("2023-09-28T12:49:36.735Z").unwrap());
    assert_eq!(p.url.as_deref(), Some("https://bsky.app/profile/did:plc:kvwvcn5iqfooopmyzvb4qzba/post/3kaheyt6vpc22"));
    // The image's alt is empty in the recording: no alt text, not an empty one.
    assert!(p.alt_texts.is_empty(), "{:?}", p.alt_texts);
    // The quoted record (someone's "test" post) is not this author's words.
    assert!(!p.full_text().contains("test"));

    // The same genuine post, with alt text written on its image: read from the record's
    // recordWithMedia, and from the hydrated view when the record has none.
    let mut with_alt = v["thread"]["post"].clone();
    with_alt["record"]["embed"]["media"]["images"][0]["alt"] = json!("Custody whiteboard, names visible");
    let item: ApiFeedItem = serde_json::from_value(json!({ "post": with_alt })).unwrap();
    assert_eq!(read_feed_item(&item, &did, WEB).unwrap().post.unwrap().alt_texts, ["Custody whiteboard, names visible"]);
    let mut view_alt = v["thread"]["post"].clone();
    view_alt["embed"]["media"]["images"][0]["alt"] = json!("from the view");
    let item: ApiFeedItem = serde_json::from_value(json!({ "post": view_alt })).unwrap();
    assert_eq!(read_feed_item(&item, &did, WEB).unwrap().post.unwrap().alt_texts, ["from the view"]);

    // As another account's feed item (a repost, or not the author): not a post of theirs.
    let item: ApiFeedItem = serde_json::from_value(json!({
        "post": v["thread"]["post"].clone(),
        "reason": {"$type": "app.bsky.feed.defs#reasonRepost", "by": {"did": "did:plc:other", "handle": "o.test"}, "indexedAt": "2024-01-01T00:00:00.000Z"}
    }))
    .unwrap();
    let entry = read_feed_item(&item, "did:plc:other", WEB).unwrap();
    assert!(entry.post.is_none());
    assert_eq!(entry.sort_at, parse_time("2024-01-01T00:00:00Z").unwrap(), "a repost sorts by when it was reposted");
    let item: ApiFeedItem = serde_json::from_value(json!({ "post": v["thread"]["post"].clone() })).unwrap();
    assert!(read_feed_item(&item, "did:plc:someone-else", WEB).unwrap().post.is_none());
}

#[test]
fn raw_post_records_including_unknown_fields_and_zoneless_times() {
    for (name, text, langs) in [
        ("com.atproto.repo.getRecord_post_200.json", "new text114", vec![]),
        ("com.atproto.repo.getRecord_post_extended_200.json", "regress test", vec!["en".to_string()]),
    ] {
        let Some(v) = load(name) else {
            return;
        };
        let r: ApiPostRecord = serde_json::from_value(v["value"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.text, text);
        assert_eq!(r.langs, langs);
        assert!(parse_time(&r.created_at).is_some(), "{name}: {}", r.created_at);
        // As the record of a post view, it reads as a post.
        let uri = v["uri"].as_str().unwrap();
        let did = uri.trim_start_matches("at://").split('/').next().unwrap();
        let item: ApiFeedItem = serde_json::from_value(json!({
            "post": {"uri": uri, "cid": v["cid"], "author": {"did": did, "handle": "test.marshal.dev"}, "record": v["value"], "indexedAt": "2024-03-01T00:00:00.000Z"}
        }))
        .unwrap();
        let post = read_feed_item(&item, did, WEB).unwrap().post.unwrap();
        assert_eq!(post.text, text);
        assert_eq!(post.created_at, parse_time(&r.created_at).unwrap());
    }
    // "2023-07-21T01:33:51.481951" has no zone: taken as UTC.
    assert_eq!(parse_time("2023-07-21T01:33:51.481951").unwrap().to_rfc3339(), "2023-07-21T01:33:51.481951+00:00");
}

#[test]
fn identity_payloads() {
    let (Some(repo), Some(resolved)) =
        (load("com.atproto.repo.describeRepo_200.json"), load("com.atproto.identity.resolveHandle_200.json"))
    else {
        return;
    };
    assert!(is_did(repo["did"].as_str().unwrap()));
    assert_eq!(normalise_handle(repo["handle"].as_str().unwrap()).as_deref(), Some("test.marshal.dev"));
    assert!(is_did(resolved["did"].as_str().unwrap()));
}

/// Every post and profile record in the Jetstream captures (production data in many languages,
/// with external links, images with empty alts, replies, and a `+00:00` time) parses.
#[test]
fn every_captured_post_and_profile_record_parses() {
    let (Some(capture), Some(golden), Some(manifest)) = (
        lines("jetstream_v1_capture_152_events.jsonl"),
        lines("jetstream_v1_golden_10_events.jsonl"),
        load("jetstream_v1_capture_manifest.json"),
    ) else {
        return;
    };
    assert!(manifest.is_object());
    let mut posts = 0;
    let mut profiles = 0;
    let mut langs = std::collections::BTreeSet::new();
    for e in capture.iter().chain(golden.iter()) {
        let Some(c) = e.get("commit") else { continue };
        if c["operation"] == "delete" {
            continue;
        }
        let did = e["did"].as_str().unwrap();
        match c["collection"].as_str() {
            Some("app.bsky.feed.post") => {
                let r: ApiPostRecord = serde_json::from_value(c["record"].clone()).unwrap_or_else(|err| panic!("{c}: {err}"));
                assert!(parse_time(&r.created_at).is_some(), "{}", r.created_at);
                if let Some(embed) = &r.embed {
                    assert!(embed_alts(embed).iter().all(|a| !a.trim().is_empty()));
                }
                langs.extend(r.langs.iter().cloned());
                let uri = format!("at://{did}/app.bsky.feed.post/{}", c["rkey"].as_str().unwrap());
                let item: ApiFeedItem = serde_json::from_value(json!({
                    "post": {"uri": uri, "cid": c["cid"], "author": {"did": did, "handle": "x.test"}, "record": c["record"], "indexedAt": "2026-07-04T14:38:09.000Z"}
                }))
                .unwrap();
                let post = read_feed_item(&item, did, WEB).unwrap().post.unwrap();
                assert_eq!(post.text, r.text);
                assert_eq!(post.lang_hints, r.langs);
                posts += 1;
            }
            Some("app.bsky.actor.profile") => {
                let mut view = c["record"].clone();
                view["did"] = json!(did);
                view["handle"] = json!("x.test");
                let p: ApiProfile = serde_json::from_value(view).unwrap();
                assert!(p.description.starts_with("Damian Lokison"), "{}", p.description);
                profiles += 1;
            }
            _ => {}
        }
    }
    assert_eq!((posts, profiles), (18, 1));
    assert!(langs.contains("ja") && langs.contains("ko") && langs.contains("en-US"), "{langs:?}");
}

#[test]
fn xrpc_error_bodies() {
    // The shape documented in API-NOTES.md (S30, S31, S32); no Bluesky error body was recorded.
    assert_eq!(
        error_message(br#"{"error":"AuthMissing","message":"Authentication Required"}"#).as_deref(),
        Some("AuthMissing: Authentication Required")
    );
    assert_eq!(error_message(br#"{"error":"BlockedActor"}"#).as_deref(), Some("BlockedActor"));
    assert_eq!(error_message(b"<html>502 Bad Gateway</html>"), None);
}
