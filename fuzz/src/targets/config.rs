//! An operator's config file, parsed and validated as `--config` loads it. Errors must say
//! where: every error names a key, and a line within the file when it gives one.
use std::path::Path;

use exposure_monitor::config::Config;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::from_toml(Path::new("fuzz/config.toml"), text) {
        let lines = text.lines().count().max(1);
        for err in &e.errors {
            assert!(!err.key.is_empty(), "an error with no key: {err:?}");
            if let Some(line) = err.line {
                assert!(line >= 1 && line <= lines + 1, "line {line} outside a {lines}-line file: {err:?}");
            }
        }
        let _ = e.to_string();
    }
}
