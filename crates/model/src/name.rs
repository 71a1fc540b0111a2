//! The one rule for the names of groups and members, which every validator and provider uses.
//!
//! Names become libvirt domain names, directory and file names, process arguments, Nova server
//! names and tags, metric labels and URL path segments, so they are plain: ASCII letters, digits,
//! `_`, `-` and `.`, starting with a letter or digit (not a hidden file, not a flag). Groups are
//! shorter than members because Nova tags (`flotilla:group=<name>`) hold at most 60 characters.

use crate::SeamError;

/// The longest member name.
pub const MAX_NAME_LEN: usize = 63;
/// The longest group name.
pub const MAX_GROUP_LEN: usize = 45;

/// What is wrong with `name` as a group name, or `None` when it is a good one.
pub fn group_name_problem(name: &str) -> Option<String> {
    problem(name, MAX_GROUP_LEN)
}

/// What is wrong with `name` as a member name, or `None` when it is a good one.
pub fn member_name_problem(name: &str) -> Option<String> {
    problem(name, MAX_NAME_LEN)
}

/// A member name a provider was asked to use, as an `Invalid` error naming the rule.
pub fn check_member_name(name: &str) -> Result<(), SeamError> {
    match member_name_problem(name) {
        None => Ok(()),
        Some(p) => Err(SeamError::invalid(format!("member name {p}"))),
    }
}

fn problem(name: &str, max: usize) -> Option<String> {
    let ok = (1..=max).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let shown: String = name.chars().take(80).collect::<String>().escape_default().to_string();
    (!ok).then(|| format!("`{shown}`: use 1 to {max} of A-Z a-z 0-9 _ - . starting with a letter or digit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_others_are_named() {
        for ok in ["vm-test_1", "vm-test_clone_1", "a", "1x", "x.y-z", &"n".repeat(MAX_NAME_LEN)] {
            assert_eq!(member_name_problem(ok), None, "{ok}");
        }
        for bad in ["", "-web", "_a", ".hidden", "a/b", "a b", "é", "..", &"n".repeat(MAX_NAME_LEN + 1)] {
            let p = member_name_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(p.contains("starting with a letter or digit"), "{p}");
        }
        assert_eq!(group_name_problem(&"g".repeat(MAX_GROUP_LEN)), None);
        assert!(group_name_problem(&"g".repeat(MAX_GROUP_LEN + 1)).unwrap().contains("1 to 45"));
        assert!(check_member_name("-flag").unwrap_err().message.contains("member name `-flag`"));
    }
}
