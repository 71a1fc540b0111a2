//! Host keys pinned on first use, one file per instance: `<pin_dir>/<instance id>.pub` holding the
//! key in OpenSSH `authorized_keys` form. Written atomically (temporary file, fsync, rename), so a
//! crash leaves either no pin or a whole one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_model::InstanceId;
use russh::keys::{HashAlg, PublicKey};

/// The SHA-256 fingerprint as `ssh-keygen -l` prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// What the pin store said about a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PinCheck {
    /// The key matches the pin.
    Matches,
    /// No pin existed: the key is now pinned.
    Pinned,
    /// A different key is pinned for this instance.
    Changed { expected: String, presented: String },
}

/// The pin directory.
#[derive(Debug)]
pub(crate) struct PinStore {
    dir: PathBuf,
    tmp_seq: AtomicU64,
}

impl PinStore {
    /// Uses (and creates) `dir`.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(PinStore { dir: dir.to_path_buf(), tmp_seq: AtomicU64::new(0) })
    }

    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<id>.pub`, with the id made safe as a file name (see [`file_stem`]).
    pub(crate) fn path(&self, id: &InstanceId) -> PathBuf {
        self.dir.join(format!("{}.pub", file_stem(id)))
    }

    /// The pinned key; `None` if nothing is pinned. A pin file that cannot be read or parsed is an
    /// error: it is never silently replaced by whatever key the server presents.
    pub(crate) fn load(&self, id: &InstanceId) -> Result<Option<PublicKey>, String> {
        let path = self.path(id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("pin file `{}` cannot be read: {e}", path.display())),
        };
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
        let Some(line) = line else {
            return Err(format!("pin file `{}` holds no key", path.display()));
        };
        PublicKey::from_openssh(line)
            .map(Some)
            .map_err(|e| format!("pin file `{}` holds no valid public key: {e}", path.display()))
    }

    /// Pins `key` for `id` (replacing any pin): temporary file in the same directory, fsync,
    /// rename over the pin, fsync the directory.
    pub(crate) fn save(&self, id: &InstanceId, key: &PublicKey) -> Result<(), String> {
        let path = self.path(id);
        let mut key = key.clone();
        key.set_comment(format!("flotilla host key pin for instance {id}"));
        let line = key.to_openssh().map_err(|e| format!("cannot encode host key: {e}"))?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{}.pub.tmp.{}.{seq}", file_stem(id), std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // The rename is durable only once the directory is; not every filesystem allows this.
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write pin file `{}`: {e}", path.display())
        })
    }

    /// Trust on first use: pins an unknown instance's key, compares a known one's.
    pub(crate) fn check(&self, id: &InstanceId, presented: &PublicKey) -> Result<PinCheck, String> {
        match self.load(id)? {
            Some(expected) if expected.key_data() == presented.key_data() => Ok(PinCheck::Matches),
            Some(expected) => {
                Ok(PinCheck::Changed { expected: fingerprint(&expected), presented: fingerprint(presented) })
            }
            None => {
                self.save(id, presented)?;
                Ok(PinCheck::Pinned)
            }
        }
    }

    /// Removes the pin; true if there was one.
    pub(crate) fn forget(&self, id: &InstanceId) -> Result<bool, String> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("cannot remove pin file `{}`: {e}", path.display())),
        }
    }
}

/// An instance id as a file name: ASCII letters, digits, `_`, `-` and `.` stay (a leading `.` does
/// not, so no id can name `.`/`..` or a hidden file); every other byte becomes `%XX`. Distinct ids
/// give distinct names (`%` itself is escaped).
pub(crate) fn file_stem(id: &InstanceId) -> String {
    let s = id.as_str();
    if s.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use russh::keys::PrivateKey;

    fn key(seed: u8) -> PublicKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32])).public_key().clone()
    }

    #[test]
    fn file_stems_are_safe_and_distinct() {
        let stem = |s: &str| file_stem(&InstanceId::new(s));
        assert_eq!(stem("web-1_a.b"), "web-1_a.b");
        assert_eq!(stem("../etc/passwd"), "%2E.%2Fetc%2Fpasswd");
        assert_eq!(stem("."), "%2E");
        assert_eq!(stem("a b%"), "a%20b%25");
        assert_eq!(stem("é"), "%C3%A9");
        assert_eq!(stem(""), "%");
        assert_ne!(stem("a/b"), stem("a%2Fb"));
    }

    #[test]
    fn first_key_is_pinned_then_compared() {
        let dir = tempfile::tempdir().unwrap();
        let pins = PinStore::open(&dir.path().join("pins")).unwrap();
        let id = InstanceId::new("web-1");
        assert_eq!(pins.load(&id).unwrap(), None);
        assert_eq!(pins.check(&id, &key(1)).unwrap(), PinCheck::Pinned);
        let path = dir.path().join("pins/web-1.pub");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("ssh-ed25519 AAAA"), "{text}");
        assert!(text.ends_with("flotilla host key pin for instance web-1\n"), "{text}");
        assert_eq!(pins.load(&id).unwrap().unwrap().key_data(), key(1).key_data());
        assert_eq!(pins.check(&id, &key(1)).unwrap(), PinCheck::Matches);
        assert_eq!(
            pins.check(&id, &key(2)).unwrap(),
            PinCheck::Changed { expected: fingerprint(&key(1)), presented: fingerprint(&key(2)) }
        );
        // A changed key is never written over the pin.
        assert_eq!(pins.load(&id).unwrap().unwrap().key_data(), key(1).key_data());
        // Another instance pins its own key.
        assert_eq!(pins.check(&InstanceId::new("web-2"), &key(2)).unwrap(), PinCheck::Pinned);
        // No temporary files are left behind.
        let mut names: Vec<String> =
            std::fs::read_dir(pins.dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["web-1.pub", "web-2.pub"]);
    }

    #[test]
    fn forget_removes_the_pin_and_a_new_key_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let pins = PinStore::open(dir.path()).unwrap();
        let id = InstanceId::new("a/b");
        pins.check(&id, &key(1)).unwrap();
        assert!(dir.path().join("a%2Fb.pub").exists());
        assert!(pins.forget(&id).unwrap());
        assert!(!pins.forget(&id).unwrap(), "forgetting twice is fine");
        assert_eq!(pins.check(&id, &key(3)).unwrap(), PinCheck::Pinned);
    }

    #[test]
    fn a_corrupt_pin_is_an_error_not_a_new_pin() {
        let dir = tempfile::tempdir().unwrap();
        let pins = PinStore::open(dir.path()).unwrap();
        let id = InstanceId::new("x");
        std::fs::write(pins.path(&id), "not a key\n").unwrap();
        let e = pins.check(&id, &key(1)).unwrap_err();
        assert!(e.contains("holds no valid public key"), "{e}");
        std::fs::write(pins.path(&id), "\n# comment only\n").unwrap();
        assert!(pins.check(&id, &key(1)).unwrap_err().contains("holds no key"));
        assert_eq!(std::fs::read_to_string(pins.path(&id)).unwrap(), "\n# comment only\n");
    }

    #[test]
    fn fingerprints_look_like_ssh_keygen() {
        let fp = fingerprint(&key(1));
        assert!(fp.starts_with("SHA256:"), "{fp}");
        assert_eq!(fp.len(), "SHA256:".len() + 43);
    }
}
