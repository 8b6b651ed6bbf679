//! Passphrases come through [`Secrets`]: the CLI asks the terminal (or reads a variable or a
//! file), the Studio shows a dialog.

use std::path::Path;

use crate::Error;

/// Why a passphrase is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To unlock the existing key file.
    Unlock,
    /// To encrypt a key being made (ask twice).
    Protect,
}

/// A source of passphrases.
pub trait Secrets: Sync {
    /// The passphrase for `key` (a key file). `Ok(None)`: none can be had (the job fails
    /// with a [`crate::ErrorKind::Key`] error that says a passphrase is needed).
    fn passphrase(&self, key: &Path, purpose: Purpose) -> Result<Option<String>, Error>;
}

/// No passphrases at all (scripts with unencrypted keys, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl Secrets for NoSecrets {
    fn passphrase(&self, _: &Path, _: Purpose) -> Result<Option<String>, Error> {
        Ok(None)
    }
}

/// One fixed passphrase (tests, a Studio dialog's answer).
#[derive(Debug, Clone)]
pub struct Passphrase(pub String);

impl Secrets for Passphrase {
    fn passphrase(&self, _: &Path, _: Purpose) -> Result<Option<String>, Error> {
        Ok(Some(self.0.clone()))
    }
}
