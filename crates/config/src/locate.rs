//! Field paths (`groups[0].policy.low`) to line:column, using saphyr's span-carrying
//! [`MarkedYaml`] tree of the same source that serde read.

use std::fmt::Write as _;

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key: `.policy`.
    Key(String),
    /// A sequence index: `[0]`.
    Index(usize),
}

/// Renders a path the way errors show it: `groups[0].policy.low`; the document is `""`.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// Parses a rendered path back. Only for paths built from schema field names (which contain no
/// `.` or `[`); paths that carry user-written keys stay as [`Seg`]s.
pub(crate) fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key.to_string()));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            match stripped[..end].parse() {
                Ok(i) => segs.push(Seg::Index(i)),
                Err(_) => segs.push(Seg::Key(stripped[..end].to_string())),
            }
            rest = &stripped[end + 1..];
        }
    }
    segs
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn of(node: &MarkedYaml<'_>) -> Pos {
        Pos::from_marker(&node.span.start)
    }

    /// saphyr's markers have 1-based lines and 0-based columns.
    pub(crate) fn from_marker(m: &saphyr::Marker) -> Pos {
        Pos { line: m.line(), col: m.col() + 1 }
    }
}

/// What to point at when the path names a field that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The key itself (unknown fields, duplicate keys).
    Key,
    /// The value when it is a scalar (wrong types, out-of-range values), else the key.
    Value,
}

/// The span tree of one YAML document.
pub(crate) struct Locator<'a> {
    root: Option<MarkedYaml<'a>>,
}

/// Why a source could not be turned into a [`Locator`].
#[derive(Debug)]
pub(crate) enum LoadProblem {
    /// saphyr rejected the text.
    Syntax { message: String, pos: Pos },
    /// More than one `---` document; `second` is where the second starts.
    ManyDocuments { count: usize, second: Option<Pos> },
}

impl<'a> Locator<'a> {
    /// Parses `src`. Zero documents give a locator that finds nothing.
    pub(crate) fn load(src: &'a str) -> Result<Locator<'a>, LoadProblem> {
        let mut docs = MarkedYaml::load_from_str(src)
            .map_err(|e| LoadProblem::Syntax { message: e.info().to_string(), pos: Pos::from_marker(e.marker()) })?;
        if docs.len() > 1 {
            return Err(LoadProblem::ManyDocuments { count: docs.len(), second: docs.get(1).map(Pos::of) });
        }
        Ok(Locator { root: docs.pop() })
    }

    /// A locator without a tree (when saphyr could not read a file that serde could).
    pub(crate) fn empty() -> Locator<'static> {
        Locator { root: None }
    }

    /// Where `path` is. A path whose last steps do not exist (a missing field) points at the
    /// deepest part that does: the parent mapping's key, or the document's start.
    pub(crate) fn locate(&self, path: &[Seg], target: Target) -> Option<Pos> {
        let root = self.root.as_ref()?;
        let mut node = untag(root);
        let mut pos = Pos::of(node);
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match (seg, &node.data) {
                (Seg::Key(k), YamlData::Mapping(map)) => {
                    let Some((key, value)) = map.iter().find(|(key, _)| key.data.as_str() == Some(k.as_str())) else {
                        return Some(pos);
                    };
                    let value = untag(value);
                    pos =
                        if last && target == Target::Value && is_scalar(value) { Pos::of(value) } else { Pos::of(key) };
                    node = value;
                }
                (Seg::Index(idx), YamlData::Sequence(items)) => {
                    let Some(item) = items.get(*idx) else {
                        return Some(pos);
                    };
                    pos = Pos::of(item);
                    node = untag(item);
                }
                _ => return Some(pos),
            }
        }
        Some(pos)
    }
}

fn untag<'n, 'a>(node: &'n MarkedYaml<'a>) -> &'n MarkedYaml<'a> {
    match &node.data {
        YamlData::Tagged(_, inner) => untag(inner),
        _ => node,
    }
}

/// A scalar written in the text; an empty value (`min:`) has an empty span just after the colon,
/// where its key is the better place to point at.
fn is_scalar(node: &MarkedYaml<'_>) -> bool {
    !matches!(node.data, YamlData::Mapping(_) | YamlData::Sequence(_)) && !node.span.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
state_dir: .flotilla
store:
  kind: sqlite
groups:
  - name: vm-test
    policy:
      high: 80
      low: 20
  - name: b
    policy: {high: 1, low: 2}
";

    fn at(path: &str, target: Target) -> Option<(usize, usize)> {
        let loc = Locator::load(SRC).unwrap();
        loc.locate(&parse_path(path), target).map(|p| (p.line, p.col))
    }

    #[test]
    fn paths_round_trip() {
        for p in ["", "groups", "groups[0]", "groups[12].policy.low", "store.kind"] {
            assert_eq!(render(&parse_path(p)), p);
        }
    }

    #[test]
    fn finds_keys_values_and_items() {
        assert_eq!(at("", Target::Value), Some((1, 1)));
        assert_eq!(at("state_dir", Target::Value), Some((1, 12)));
        assert_eq!(at("state_dir", Target::Key), Some((1, 1)));
        assert_eq!(at("store", Target::Value), Some((2, 1)));
        assert_eq!(at("groups[1]", Target::Value), Some((9, 5)));
        assert_eq!(at("groups[0].policy.low", Target::Value), Some((8, 12)));
        assert_eq!(at("groups[1].policy.low", Target::Key), Some((10, 23)));
    }

    #[test]
    fn missing_fields_point_at_the_parent() {
        assert_eq!(at("groups[0].policy.min_up", Target::Value), Some((6, 5)));
        assert_eq!(at("groups[0].template.vcpus", Target::Value), Some((5, 5)));
        assert_eq!(at("groups[7].name", Target::Value), Some((4, 1)));
        assert_eq!(at("provider", Target::Value), Some((1, 1)));
        assert_eq!(at("store.kind.deeper", Target::Value), Some((3, 3)));
    }

    #[test]
    fn syntax_errors_and_documents() {
        match Locator::load("a: 1\n b: 2\n") {
            Err(LoadProblem::Syntax { pos, .. }) => assert_eq!(pos, Pos { line: 2, col: 3 }),
            _ => panic!("expected a syntax error"),
        }
        match Locator::load("a: 1\n---\nb: 2\n") {
            Err(LoadProblem::ManyDocuments { count: 2, second }) => {
                assert_eq!(second, Some(Pos { line: 3, col: 1 }))
            }
            _ => panic!("expected two documents"),
        }
        assert_eq!(Locator::load("# nothing\n").unwrap().locate(&[], Target::Value), None);
    }
}
