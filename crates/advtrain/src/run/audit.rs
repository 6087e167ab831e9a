//! `audit.json`: a run's side-effects audit ([`crate::eval::audit`]) with what it measured,
//! so that a report shows it only beside the weights it audited, and a smaller or foreign
//! audit never replaces the run's own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dir::{model_sha256_of, RunDir};
use super::files;
use crate::error::{Error, Result};
use crate::eval::audit::Audit;
use crate::io::{read_json, write_json};

/// `audit.json`: the audit and the weights and test points it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// SHA-256 of the weights audited ([`RunDir::model_sha256`]).
    pub model_sha256: Option<String>,
    /// Fingerprint of the test points ([`crate::data::Dataset::fingerprint`]).
    pub test_data_sha256: String,
    /// What was measured.
    pub audit: Audit,
}

impl RunDir {
    /// Writes the audit of the run's current weights on test points with fingerprint
    /// `test_data_sha256`, and returns the file written. `own_data`: those are the run's
    /// own test points (all of them, or the first `audit.n` when `subset`). The run's
    /// `audit.json` holds an audit of its own full test set; one on fewer points goes to
    /// `audit-n<N>.json` and one on other data to `audit-data<hash8>.json`, so neither can
    /// replace it.
    pub fn write_audit(
        &self,
        audit: &Audit,
        test_data_sha256: &str,
        own_data: bool,
        subset: bool,
    ) -> Result<PathBuf> {
        let record = AuditRecord {
            model_sha256: self.model_sha256()?,
            test_data_sha256: test_data_sha256.to_string(),
            audit: audit.clone(),
        };
        let name = match (own_data, subset) {
            (true, false) => files::AUDIT.to_string(),
            (true, true) => format!("audit-n{}.json", audit.n),
            (false, _) => format!(
                "audit-data{}.json",
                &test_data_sha256[..8.min(test_data_sha256.len())]
            ),
        };
        let path = self.file(&name);
        write_json(&path, &record)?;
        Ok(path)
    }
}

/// Reads an audit file; `None` when it does not exist.
pub fn read_audit_record(path: &Path) -> Result<Option<AuditRecord>> {
    if !path.exists() {
        return Ok(None);
    }
    let value: serde_json::Value = read_json(path)?;
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| Error::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The audit of `dir`'s current weights on its own test set: `audit.json` unless it audited
/// other weights (the run was trained again since), which a report must not show.
pub fn current_audit(dir: &Path) -> Result<Option<AuditRecord>> {
    let Some(record) = read_audit_record(&dir.join(files::AUDIT))? else {
        return Ok(None);
    };
    let current = model_sha256_of(dir)?;
    match (&record.model_sha256, &current) {
        (Some(a), Some(b)) if a != b => Ok(None),
        _ => Ok(Some(record)),
    }
}
