//! Bluesky profile payloads (`getProfiles`, `searchActors`, one `getProfile`) and an XRPC
//! error body: each profile read as the source does, then identified.
use exposure_monitor::sources::bluesky::{
    error_message, parse_values, to_account, wants_no_unauthenticated, ApiProfile, ApiProfiles, ApiSearchActors,
};

fn read(profiles: &[ApiProfile]) {
    for p in profiles {
        let _ = wants_no_unauthenticated(p);
        super::account(&to_account(p, "https://bsky.app"));
    }
}

pub fn run(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<ApiProfiles>(data) {
        read(&parse_values::<ApiProfile>(body.profiles, "fuzz").0);
    }
    if let Ok(body) = serde_json::from_slice::<ApiSearchActors>(data) {
        read(&parse_values::<ApiProfile>(body.actors, "fuzz").0);
    }
    if let Ok(p) = serde_json::from_slice::<ApiProfile>(data) {
        read(&[p]);
    }
    let _ = error_message(data);
}
