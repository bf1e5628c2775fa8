//! A Reddit `/user/NAME/about` body (a `t2` thing): parsed, read as an account, identified.
use exposure_monitor::sources::reddit::{parse_user, to_account};

pub fn run(data: &[u8]) {
    if let Ok(user) = parse_user(data, "fuzz") {
        super::account(&to_account(&user));
    }
}
