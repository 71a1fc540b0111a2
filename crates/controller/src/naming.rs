//! Member names follow the seed: `<base>_N`. N is reserved in the store past every number ever
//! used under that base ([`Store::reserve_numbers`](flotilla_model::Store::reserve_numbers)), so a
//! name is never reused: a new member never inherits an old one's pinned SSH host key, pushed
//! values or place in someone's logs.

use flotilla_model::{SeamError, Store};

/// The highest `N` among names `<base>_N` (0 if none).
pub fn highest<'a>(base: &str, existing: impl IntoIterator<Item = &'a str>) -> u64 {
    let prefix = format!("{base}_");
    existing
        .into_iter()
        .filter_map(|name| name.strip_prefix(&prefix))
        .filter_map(|rest| rest.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// `count` fresh names `<base>_N`, given every name that exists now (all groups: names are global).
pub async fn fresh_names<'a>(
    store: &dyn Store,
    base: &str,
    existing: impl IntoIterator<Item = &'a str>,
    count: usize,
) -> Result<Vec<String>, SeamError> {
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let first = store.reserve_numbers(base, highest(base, existing), count).await?;
    Ok((first..first + u64::from(count)).map(|n| format!("{base}_{n}")).collect())
}

#[cfg(test)]
mod tests {
    use super::highest;

    #[test]
    fn numbering() {
        let check = |existing: &[&str], expect: u64| {
            assert_eq!(highest("vm-test", existing.iter().copied()), expect, "existing {existing:?}");
        };
        check(&[], 0);
        check(&["vm-test_1"], 1);
        check(&["vm-test_1", "vm-test_7", "vm-test_3"], 7);
        // Clones and other bases do not count towards the baseline's numbers.
        check(&["vm-test_clone_4", "vm-test_x", "other_9"], 0);
        check(&["vm-test_1_clone_2"], 0);
    }
}
