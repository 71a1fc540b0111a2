//! Where state lives: `--state-dir`, else `FLOTILLA_STATE_DIR`, else the config's `state_dir`, else
//! `$XDG_STATE_HOME/flotilla`, else `~/.local/state/flotilla`. One controller runs per directory:
//! it holds an OS lock on `flotilla.lock` there ([`claim`]), released when the process ends, even by
//! kill -9.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub fn resolve(flag: Option<&Path>, from_config: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("FLOTILLA_STATE_DIR").filter(|s| !s.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = from_config {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(p).join("flotilla");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/flotilla")
}

/// Creates the state directory if it is missing, readable by its owner only (it holds member
/// records and the store).
pub fn create(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state dir {}", dir.display()))
}

/// Writes a file only its owner may read (a token), replacing any earlier one.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

/// This process's hold on a state directory, for as long as it lives.
#[derive(Debug)]
pub struct Claim {
    _file: File,
}

/// Who has the directory.
#[derive(Debug)]
pub enum Claimed {
    /// This process: it may resume and run operations.
    Ours(Claim),
    /// Another flotilla (its pid, when it wrote one).
    Held(Option<u32>),
}

/// Takes the directory's lock if it is free.
pub fn claim(dir: &Path) -> anyhow::Result<Claimed> {
    create(dir)?;
    let path = dir.join("flotilla.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            Ok(Claimed::Ours(Claim { _file: file }))
        }
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Ok(Claimed::Held(pid.trim().parse().ok()))
        }
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// The directory for a controller that runs a loop (`run`, `watch`, `demo`): refused while another
/// one has it, since two would resume and run the same operations.
pub async fn claim_for_controller(dir: &Path) -> anyhow::Result<Claim> {
    // A CLI verb that saves a control with no daemon running holds the lock for milliseconds:
    // wait that out rather than refuse to start.
    let mut tries = 0;
    let pid = loop {
        match claim(dir)? {
            Claimed::Ours(c) => return Ok(c),
            Claimed::Held(pid) if tries >= 20 => break pid,
            Claimed::Held(_) => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let who = pid.map_or_else(|| "another flotilla".to_string(), |p| format!("another flotilla (pid {p})"));
    anyhow::bail!(
        "{who} is running with the state directory {}: stop it first, or give this one its own --state-dir",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claimed_directory_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        let first = claim_for_controller(&state).await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        let e = claim_for_controller(&state).await.unwrap_err().to_string();
        assert!(e.contains(&format!("another flotilla (pid {}) is running", std::process::id())), "{e}");
        assert!(matches!(claim(&state).unwrap(), Claimed::Held(Some(_))));
        drop(first);
        assert!(matches!(claim(&state).unwrap(), Claimed::Ours(_)));
    }

    /// A CLI verb holding the lock for a moment (saving a control offline) does not stop a daemon
    /// from starting: the daemon waits it out.
    #[tokio::test]
    async fn a_brief_holder_is_waited_out() {
        let dir = tempfile::tempdir().unwrap();
        let Claimed::Ours(brief) = claim(dir.path()).unwrap() else { panic!("free") };
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(350)).await;
            drop(brief);
        });
        claim_for_controller(dir.path()).await.expect("waited for the brief holder");
        release.await.unwrap();
    }
}
