//! The member files under `<state_dir>/members/`: the provider's only memory.
//!
//! The provider keeps no state in RAM that a restart would lose: `<name>.json` (the pid file, with
//! everything needed to find, verify and signal the process) is written right after spawn, before
//! the member is even ready, so a controller that dies at any point leaves a record the next one
//! can adopt or clean up. `<name>.port` is the workload's ready file; `<name>.log` its output
//! (kept after delete, for post-mortems; reopened in append mode when the name is reused).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `<name>.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub group: String,
    pub name: String,
    /// Also the process group id: members are spawned as group leaders.
    pub pid: i32,
    /// Unknown until the member wrote its ready file.
    pub port: Option<u16>,
    pub vcpus: u32,
    pub created_at_ms: u64,
    /// /proc/<pid>/stat starttime: with `pid`, identifies the process (a reused pid differs).
    pub starttime: u64,
}

/// Paths of the member files.
#[derive(Debug, Clone)]
pub struct MemberFiles {
    dir: PathBuf,
}

impl MemberFiles {
    pub fn new(state_dir: &Path) -> Self {
        MemberFiles { dir: state_dir.join("members") }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn record(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }
    pub fn port(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.port"))
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Writes `<name>.json` atomically (temp file, fsync, rename): never half a record.
    pub fn write(&self, rec: &MemberRecord) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.record(&rec.name);
        let tmp = self.dir.join(format!(".{}.json.tmp", rec.name));
        let body = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads `<name>.json`: `Ok(None)` if there is none, `Err` if it is unreadable or malformed.
    pub fn read(&self, name: &str) -> io::Result<Option<MemberRecord>> {
        read_record(&self.record(name))
    }

    /// The port from the ready file, if the member wrote it.
    pub fn read_port(&self, name: &str) -> Option<u16> {
        std::fs::read_to_string(self.port(name)).ok()?.trim().parse().ok()
    }

    /// All readable records. Other files are ignored; a malformed record is skipped with a warning
    /// (one bad file must not hide every other member from the controller).
    pub fn scan(&self) -> io::Result<Vec<MemberRecord>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !is_record {
                continue;
            }
            match read_record(&path) {
                Ok(Some(rec)) => out.push(rec),
                Ok(None) => {} // deleted between read_dir and read
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping malformed member file")
                }
            }
        }
        out.sort_by(|a, b| (a.created_at_ms, &a.name).cmp(&(b.created_at_ms, &b.name)));
        Ok(out)
    }

    /// Removes `<name>.json` and `<name>.port` (missing is fine). The log stays.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        for path in [self.port(name), self.record(name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn read_record(path: &Path) -> io::Result<Option<MemberRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, at: u64) -> MemberRecord {
        MemberRecord {
            group: "g".into(),
            name: name.into(),
            pid: 42,
            port: None,
            vcpus: 1,
            created_at_ms: at,
            starttime: 7,
        }
    }

    #[test]
    fn write_read_scan_remove() {
        let dir = std::env::temp_dir().join(format!("flotilla-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = MemberFiles::new(&dir);
        assert!(files.scan().unwrap().is_empty(), "no directory yet");
        files.write(&rec("b", 2)).unwrap();
        files.write(&rec("a", 1)).unwrap();
        let mut with_port = rec("b", 2);
        with_port.port = Some(8080);
        files.write(&with_port).unwrap();
        assert_eq!(files.read("b").unwrap(), Some(with_port.clone()));
        assert_eq!(files.read("zzz").unwrap(), None);
        std::fs::write(files.dir().join("c.json"), "{not json").unwrap();
        std::fs::write(files.dir().join("notes.txt"), "hello").unwrap();
        std::fs::write(files.port("b"), "8080\n").unwrap();
        assert_eq!(files.read_port("b"), Some(8080));
        assert!(files.read("c").is_err());
        let names: Vec<_> = files.scan().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b"], "oldest first; malformed and other files skipped");
        files.remove("b").unwrap();
        files.remove("b").unwrap();
        assert_eq!(files.read("b").unwrap(), None);
        assert_eq!(files.read_port("b"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
