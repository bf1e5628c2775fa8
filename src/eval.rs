//! Eval: identify and classify over a labelled corpus (placeholder until detection lands).
use std::path::Path;

use crate::forces::Forces;
use crate::patterns::Detector;

pub struct EvalReport {}
impl std::fmt::Display for EvalReport {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
impl EvalReport {
    pub fn write_predictions(&self, _w: &mut dyn std::io::Write) -> std::io::Result<()> {
        Ok(())
    }
}
pub fn run(_corpus_dir: &Path, _detector: &Detector) -> anyhow::Result<EvalReport> {
    anyhow::bail!("not yet")
}
pub struct CompareReport {}
impl std::fmt::Display for CompareReport {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
pub fn compare(_old: &Path, _new: &Path, _corpus: &Path, _forces: &Forces) -> anyhow::Result<CompareReport> {
    anyhow::bail!("not yet")
}
