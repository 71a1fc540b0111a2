//! Where state lives: `--state-dir`, else `FLOTILLA_STATE_DIR`, else the config's `state_dir`, else
//! `$XDG_STATE_HOME/flotilla`, else `~/.local/state/flotilla`.

use std::path::{Path, PathBuf};

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
