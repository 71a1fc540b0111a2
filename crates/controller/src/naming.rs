//! Member names follow the seed: `<base>_N`, with N one past the highest number in use, so a name is
//! never reused while its predecessor might still be in someone's logs or dashboards.

/// `count` fresh names `<base>_N` given every name that exists now (all groups: names are global).
pub fn next_names<'a>(base: &str, existing: impl IntoIterator<Item = &'a str>, count: usize) -> Vec<String> {
    let prefix = format!("{base}_");
    let highest = existing
        .into_iter()
        .filter_map(|name| name.strip_prefix(&prefix))
        .filter_map(|rest| rest.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    (1..=count as u64).map(|i| format!("{base}_{}", highest + i)).collect()
}

#[cfg(test)]
mod tests {
    use super::next_names;

    #[test]
    fn numbering() {
        let check = |existing: &[&str], count, expect: &[&str]| {
            assert_eq!(next_names("vm-test", existing.iter().copied(), count), expect, "existing {existing:?}");
        };
        check(&[], 1, &["vm-test_1"]);
        check(&["vm-test_1"], 1, &["vm-test_2"]);
        check(&["vm-test_1", "vm-test_7", "vm-test_3"], 2, &["vm-test_8", "vm-test_9"]);
        // Clones and other bases do not count towards the baseline's numbers.
        check(&["vm-test_clone_4", "vm-test_x", "other_9"], 1, &["vm-test_1"]);
        check(&["vm-test_1_clone_2"], 1, &["vm-test_1"]);
    }
}
