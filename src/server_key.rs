//! The server's ed25519 signing key: generated on first start, kept in the
//! data dir (mode 0600) and reused after restarts. It signs PDUs and
//! federation requests (server-server API, "Server discovery" and "Signing
//! events").

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use rand::{Rng, distributions::Alphanumeric};
use ruma::signatures::Ed25519KeyPair;

const KEY_FILE: &str = "signing.key";

#[derive(Debug, thiserror::Error)]
pub enum ServerKeyError {
    #[error("cannot access signing key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("signing key file {path} is malformed: {message}")]
    Malformed { path: String, message: String },
}

/// The loaded key pair.
pub struct ServerKey {
    pub keypair: Ed25519KeyPair,
}

impl ServerKey {
    /// Loads `data_dir/signing.key`, creating it on first start. The file holds
    /// one line: `ed25519 <version> <unpadded base64 PKCS#8 document>`.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, ServerKeyError> {
        let path = data_dir.join(KEY_FILE);
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|message| ServerKeyError::Malformed { path: shown, message }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let version: String = rand::thread_rng().sample_iter(&Alphanumeric).take(6).map(char::from).collect();
                let version = format!("a_{version}");
                let document = Ed25519KeyPair::generate();
                let line = format!("ed25519 {version} {}\n", STANDARD_NO_PAD.encode(&*document));
                write_private_file(&path, line.as_bytes())
                    .map_err(|source| ServerKeyError::Io { path: shown.clone(), source })?;
                tracing::info!(path = %shown, key_id = %format!("ed25519:{version}"), "generated a new server signing key");
                Self::parse(&line).map_err(|message| ServerKeyError::Malformed { path: shown, message })
            }
            Err(source) => Err(ServerKeyError::Io { path: shown, source }),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(encoded), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `ed25519 <version> <base64 key>`".into());
        };
        let document = STANDARD_NO_PAD.decode(encoded).map_err(|e| format!("bad base64: {e}"))?;
        let keypair = Ed25519KeyPair::from_der(&document, version.to_owned()).map_err(|e| e.to_string())?;
        Ok(Self { keypair })
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.keypair.version())
    }

    /// The public key, unpadded base64 as the spec transmits it.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.keypair.public_key())
    }
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKey::load_or_create(dir.path()).unwrap();
        let second = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
