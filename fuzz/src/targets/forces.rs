//! An operator's forces file (`forces.toml`: names, aliases, abbreviations, areas), parsed as
//! the config's `forces = "..."` loads it; when it parses, its mentions are looked for in the
//! file's own text and every mention found must canonicalise to one of its forces.
use exposure_monitor::forces::Forces;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(forces) = Forces::parse(text, "fuzz/forces.toml") else { return };
    for m in forces.find(text) {
        assert!(forces.canonical(&m.force).is_some(), "mention of unknown force {:?}", m.force);
    }
}
