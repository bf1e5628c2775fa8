//! Forces: the UK police forces, their canonical names and aliases.
//!
//! Owns resolving any way a force is written ("GMP", "Greater Manchester Police", "Heddlu
//! Gogledd Cymru") to one canonical name, because digests are routed by it. The list is data
//! (`config/forces.toml`, embedded as the default), so operators can extend it.

use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Forces {}

impl Forces {
    pub fn embedded() -> Forces {
        Forces {}
    }
    pub fn load(_path: &Path) -> anyhow::Result<Forces> {
        Ok(Forces {})
    }
    /// The canonical name for an alias or name, case-insensitively.
    pub fn canonical(&self, _name: &str) -> Option<&str> {
        None
    }
}
