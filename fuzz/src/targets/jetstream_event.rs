//! One Jetstream frame, parsed as the whole-network source does; a post or profile then goes
//! through the detector.
use exposure_monitor::sources::jetstream::{parse_event, JetstreamEvent};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_event(text) {
        Ok(JetstreamEvent::Post { post, .. }) => super::post(&post, None),
        Ok(JetstreamEvent::Profile { account, .. }) => super::account(&account),
        Ok(JetstreamEvent::Other { .. }) | Err(_) => {}
    }
}
