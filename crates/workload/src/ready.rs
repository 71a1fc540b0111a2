//! The ready file: how a supervisor learns a member's port (it listens on port 0).
//!
//! Written to a temporary sibling and renamed into place, so a reader polling for the file never
//! sees it empty or half written: either it is absent or it holds the whole port number.

use std::io::{self, Write};
use std::path::Path;

/// Atomically writes `port` (decimal, newline-terminated) to `path`.
pub fn write_ready_file(path: &Path, port: u16) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("ready file {} has no file name", path.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{port}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_port_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("flotilla-ready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.port");
        write_ready_file(&path, 4321).unwrap();
        write_ready_file(&path, 4322).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4322\n");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.port")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
