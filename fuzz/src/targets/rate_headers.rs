//! Rate-limit headers of a response, as the HTTP client reads them after every request:
//! `name: value` lines (the server's, so hostile). Whatever they say, the waits they give are
//! bounded, and the client's time arithmetic on them cannot overflow.
use std::time::{Duration, Instant, SystemTime};

use exposure_monitor::sources::http::{parse_rate_headers, parse_reset, parse_retry_after, MAX_RATE_WAIT};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub fn run(data: &[u8]) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_347_000);
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..])) else {
            continue;
        };
        if let Ok(v) = value.to_str() {
            for wait in [parse_reset(v, now), parse_retry_after(v)].into_iter().flatten() {
                assert!(wait <= MAX_RATE_WAIT, "{v:?} gave {wait:?}");
                let _ = Instant::now() + wait;
            }
        }
        headers.append(name, value);
    }
    let r = parse_rate_headers(&headers, now);
    if let Some(wait) = r.reset_in {
        assert!(wait <= MAX_RATE_WAIT, "reset {wait:?}");
        let _ = Instant::now() + wait;
    }
}
