//! `[secrets]`, and a webhook's signing secrets, as configured inline or in
//! a file, held so that a reload swaps the whole set at once: a request loads
//! one set and is verified against it alone, never a mix of old and new.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::{SettingsError, invalid};
use crate::fastpix::signature::{SigningSecret, Verifier};

/// `[secrets]`: how signing secrets files are watched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// How often every `signing_secrets_file` is checked for a change
    /// (SIGHUP reloads at once).
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for SecretsSettings {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(5),
        }
    }
}

impl SecretsSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.check_interval.is_zero() {
            return Err(invalid("secrets.check_interval", "must be above 0"));
        }
        Ok(())
    }
}

/// Why a secrets file could not be (re)loaded. Names the file and the line,
/// never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsFileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} line {line}: the secret {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: crate::fastpix::signature::InvalidSecret,
    },
    #[error(
        "{path} holds no secret, and allow_unsigned is not set for this webhook: keeping the secrets loaded before"
    )]
    Empty { path: PathBuf },
}

/// Reads a secrets file: one base64 secret per line; blank lines and lines
/// starting with `#` are skipped (base64 has no `#`).
pub fn read_secrets_file(path: &Path) -> Result<Vec<SigningSecret>, SecretsFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| SecretsFileError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse_secrets(path, &text)
}

fn parse_secrets(path: &Path, text: &str) -> Result<Vec<SigningSecret>, SecretsFileError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(line, secret)| {
            SigningSecret::from_base64(secret).map_err(|reason| SecretsFileError::Invalid {
                path: path.to_owned(),
                line,
                reason,
            })
        })
        .collect()
}

/// The secrets one webhook accepts right now; clones share the set, so a
/// reload through any clone is seen by all.
#[derive(Clone)]
pub struct Secrets {
    current: Arc<ArcSwap<Verifier>>,
    file: Option<PathBuf>,
    allow_unsigned: bool,
}

impl Secrets {
    pub fn new(verifier: Verifier, file: Option<PathBuf>, allow_unsigned: bool) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(verifier)),
            file,
            allow_unsigned,
        }
    }

    /// The set in force; a request keeps this one set to the end.
    pub fn current(&self) -> Arc<Verifier> {
        self.current.load_full()
    }

    /// `signing_secrets_file`, when the secrets come from a file.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads the file again and swaps the set in whole; on any failure the
    /// set in force stays. Returns how many secrets are now in force.
    /// Without a file there is nothing to reload: the set stays.
    pub fn reload(&self) -> Result<usize, SecretsFileError> {
        let Some(path) = &self.file else {
            return Ok(self.current().secrets().len());
        };
        let secrets = read_secrets_file(path)?;
        if secrets.is_empty() && !self.allow_unsigned {
            return Err(SecretsFileError::Empty { path: path.clone() });
        }
        let count = secrets.len();
        self.current.store(Arc::new(Verifier::new(secrets)));
        Ok(count)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("count", &self.current().secrets().len())
            .field("file", &self.file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
    const B: &str = "AAECAwQFBgcICQoLDA0ODw==";

    #[test]
    fn a_file_holds_one_secret_per_line_with_blanks_and_comments() {
        let p = Path::new("/s");
        let got = parse_secrets(p, &format!("# rotated 2026-05\n{A}\n\n  {B}  \n")).unwrap();
        assert_eq!(got.len(), 2);
        let err = parse_secrets(p, &format!("{A}\nnot*base64\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("/s line 2") && !err.contains("not*base64"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_reload_keeps_the_set_in_force_and_a_good_one_swaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, A).unwrap();
        let secrets = Secrets::new(
            Verifier::new(read_secrets_file(&path).unwrap()),
            Some(path.clone()),
            false,
        );
        let signed_a = SigningSecret::from_base64(A).unwrap().sign(b"x");
        let signed_b = SigningSecret::from_base64(B).unwrap().sign(b"x");
        let shared = secrets.clone();
        assert!(shared.current().verify(signed_a.as_bytes(), b"x"));

        for bad in ["", "# only a comment\n", "zz*\n"] {
            std::fs::write(&path, bad).unwrap();
            let err = secrets.reload().unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(
                shared.current().verify(signed_a.as_bytes(), b"x"),
                "{bad:?}"
            );
        }
        std::fs::remove_file(&path).unwrap();
        assert!(secrets.reload().is_err());

        std::fs::write(&path, format!("{B}\n")).unwrap();
        assert_eq!(secrets.reload().unwrap(), 1);
        assert!(shared.current().verify(signed_b.as_bytes(), b"x"));
        assert!(!shared.current().verify(signed_a.as_bytes(), b"x"));
    }
}
