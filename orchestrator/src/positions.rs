//! The first pass over a document: where every field is, whether the YAML is well formed, and
//! whether it is safe to hand to serde_yaml at all.
//!
//! serde_yaml reports where a syntax error is but forgets positions once a document has parsed,
//! so validation errors found later could not point at a line. This pass walks yaml-rust2's
//! event stream once and records the position of every field by path. Because it sees the
//! document before anything expands aliases, it is also where an alias bomb (a few hundred bytes
//! that expand to billions of nodes) is stopped: it counts the nodes each anchor stands for and
//! gives up as soon as the expanded total passes a limit, long before any expansion happens.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use crate::path::{FieldPath, Segment};

/// No real application comes near this many nodes; documents above it are either generated
/// nonsense or aliases that multiply.
pub(crate) const MAX_EXPANDED_NODES: u64 = 100_000;

/// Deeper than this and serde_yaml would give up with a less helpful message (its own limit is
/// 128); no application needs a tenth of it.
pub(crate) const MAX_NESTING: usize = 100;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    pub line: usize,
    pub column: usize,
}

impl From<&Marker> for Position {
    fn from(marker: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Position {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}

/// Positions of the fields of one document: for a mapping entry the position of its key, for a
/// sequence item the position of the item.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    positions: HashMap<Vec<Segment>, Position>,
    /// Where a second, empty document starts (a trailing `---` followed by nothing but
    /// comments), as a character index: the document ends there.
    pub(crate) end: Option<usize>,
}

impl SourceMap {
    /// The position of `path` itself, if the document spells it out.
    pub(crate) fn exact(&self, path: &FieldPath) -> Option<Position> {
        self.positions.get(path.segments()).copied()
    }

    /// The position of `path`, or of its nearest ancestor that has one: a missing field is best
    /// reported where the mapping that lacks it is.
    pub(crate) fn locate(&self, path: &FieldPath) -> Option<Position> {
        let segments = path.segments();
        (0..=segments.len())
            .rev()
            .find_map(|len| self.positions.get(&segments[..len]).copied())
    }
}

/// Why a document was refused before serde_yaml saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanFailure {
    /// The field at fault, when there is one; the root otherwise.
    pub path: FieldPath,
    pub message: String,
    pub position: Option<Position>,
}

impl ScanFailure {
    fn at(marker: &Marker, message: String) -> Self {
        ScanFailure {
            path: FieldPath::root(),
            message,
            position: Some(marker.into()),
        }
    }
}

/// Walks `source` once, returning the positions of its fields or the reason it must not be
/// parsed further.
pub(crate) fn scan(source: &str) -> Result<SourceMap, ScanFailure> {
    let mut parser = Parser::new_from_str(source);
    let mut walker = Walker::default();
    // Pulling events one at a time (rather than `Parser::load`, which recurses per nesting
    // level) keeps a deeply nested document from exhausting the stack before the depth check.
    loop {
        let (event, marker) = parser.next_token().map_err(|error| {
            ScanFailure::at(
                error.marker(),
                format!("YAML syntax error: {}", error.info()),
            )
        })?;
        if event == Event::StreamEnd {
            return Ok(walker.source_map);
        }
        walker.on_event(event, &marker)?;
    }
}

fn second_document(marker: &Marker) -> ScanFailure {
    ScanFailure::at(
        marker,
        "found a second YAML document; a file holds exactly one application".to_owned(),
    )
}

/// What the next node inside a mapping is.
#[derive(Debug)]
enum MappingSlot {
    Key,
    /// The value of the key just read; `None` when the key was not a plain scalar, in which case
    /// the value has no nameable path.
    Value(Option<String>),
}

#[derive(Debug)]
enum Collection {
    Mapping {
        slot: MappingSlot,
        keys_seen: HashSet<String>,
    },
    Sequence {
        next_index: usize,
    },
}

/// A mapping or sequence that has started and not yet ended.
#[derive(Debug)]
struct Frame {
    collection: Collection,
    /// `None` inside complex keys (`? [a, b]: c`), whose contents have no path.
    path: Option<FieldPath>,
    anchor_id: usize,
    /// Nodes in this collection so far, itself included, with aliases expanded.
    expanded_nodes: u64,
}

#[derive(Debug, Default)]
struct Walker {
    source_map: SourceMap,
    open: Vec<Frame>,
    /// Expanded size of every anchored node that has ended, by yaml-rust2's anchor id.
    anchor_sizes: HashMap<usize, u64>,
    expanded_total: u64,
    saw_alias: bool,
    documents: usize,
    /// Where the second document started, while it has held nothing yet.
    second: Option<Marker>,
}

impl Walker {
    fn on_event(&mut self, event: Event, marker: &Marker) -> Result<(), ScanFailure> {
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                match (self.documents, self.second) {
                    (1, _) => {}
                    // A trailing `---` with nothing after it but comments is accepted, as
                    // editors and generators often leave one; the document ends there.
                    (2, None) => {
                        self.second = Some(*marker);
                        self.source_map.end = Some(marker.index());
                    }
                    (_, started) => {
                        return Err(second_document(started.as_ref().unwrap_or(marker)));
                    }
                }
            }
            // An empty document holds one null scalar; anything else in it is a document.
            Event::Scalar(ref text, _, _, _)
                if self.documents > 1
                    && (text.is_empty() || text == "~")
                    && self.open.is_empty() => {}
            Event::Scalar(..)
            | Event::Alias(_)
            | Event::SequenceStart(..)
            | Event::MappingStart(..)
                if self.documents > 1 =>
            {
                return Err(second_document(self.second.as_ref().unwrap_or(marker)));
            }
            Event::Scalar(text, _, anchor_id, _) => {
                self.place_node(Some(&text), marker)?;
                self.count(1, marker)?;
                self.end_node(anchor_id, 1);
            }
            Event::Alias(anchor_id) => {
                self.saw_alias = true;
                let Some(&size) = self.anchor_sizes.get(&anchor_id) else {
                    return Err(ScanFailure::at(
                        marker,
                        "YAML alias refers to a node that contains it; recursive aliases are \
                         not supported"
                            .to_owned(),
                    ));
                };
                self.place_node(None, marker)?;
                self.count(size, marker)?;
                self.end_node(0, size);
            }
            Event::SequenceStart(anchor_id, _) => {
                let path = self.place_node(None, marker)?;
                self.open_collection(
                    Collection::Sequence { next_index: 0 },
                    path,
                    anchor_id,
                    marker,
                )?;
            }
            Event::MappingStart(anchor_id, _) => {
                let path = self.place_node(None, marker)?;
                let mapping = Collection::Mapping {
                    slot: MappingSlot::Key,
                    keys_seen: HashSet::new(),
                };
                self.open_collection(mapping, path, anchor_id, marker)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.open.pop() {
                    self.end_node(frame.anchor_id, frame.expanded_nodes);
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// Works out the path of a node that starts at `marker`, records its position, and moves
    /// the enclosing collection on. Returns the path that the node's own children hang off.
    fn place_node(
        &mut self,
        scalar: Option<&str>,
        marker: &Marker,
    ) -> Result<Option<FieldPath>, ScanFailure> {
        let position = Position::from(marker);
        let Some(parent) = self.open.last_mut() else {
            let root = FieldPath::root();
            self.source_map
                .positions
                .insert(root.segments().to_vec(), position);
            return Ok(Some(root));
        };
        // yaml-rust2 marks a block mapping just after its first key, so a collection is moved to
        // where its first child starts when that is earlier.
        let first_child = match &parent.collection {
            Collection::Mapping { keys_seen, slot } => {
                keys_seen.is_empty() && matches!(slot, MappingSlot::Key)
            }
            Collection::Sequence { next_index } => *next_index == 0,
        };
        if first_child
            && let Some(path) = &parent.path
            && let Some(start) = self.source_map.positions.get_mut(path.segments())
        {
            *start = (*start).min(position);
        }
        match &mut parent.collection {
            Collection::Sequence { next_index } => {
                let path = parent.path.as_ref().map(|path| path.index(*next_index));
                *next_index += 1;
                if let Some(path) = &path {
                    self.source_map
                        .positions
                        .insert(path.segments().to_vec(), position);
                }
                Ok(path)
            }
            Collection::Mapping { slot, keys_seen } => {
                match std::mem::replace(slot, MappingSlot::Key) {
                    MappingSlot::Key => {
                        let key = scalar.map(str::to_owned);
                        if let (Some(key), Some(path)) = (&key, &parent.path) {
                            let key_path = path.key(key);
                            if !keys_seen.insert(key.clone()) {
                                let first = self.source_map.exact(&key_path);
                                let first = first.map_or(String::new(), |first| {
                                    format!(" (first defined at line {})", first.line)
                                });
                                return Err(ScanFailure {
                                    message: format!("duplicate key {key:?}{first}"),
                                    path: key_path,
                                    position: Some(position),
                                });
                            }
                            self.source_map
                                .positions
                                .insert(key_path.segments().to_vec(), position);
                        }
                        *slot = MappingSlot::Value(key);
                        // A key's own children (in a complex key) have no path.
                        Ok(None)
                    }
                    MappingSlot::Value(key) => {
                        Ok(key.and_then(|key| parent.path.as_ref().map(|path| path.key(&key))))
                    }
                }
            }
        }
    }

    fn open_collection(
        &mut self,
        collection: Collection,
        path: Option<FieldPath>,
        anchor_id: usize,
        marker: &Marker,
    ) -> Result<(), ScanFailure> {
        if self.open.len() >= MAX_NESTING {
            return Err(ScanFailure::at(
                marker,
                format!("YAML nesting is deeper than {MAX_NESTING} levels; refusing"),
            ));
        }
        self.count(1, marker)?;
        self.open.push(Frame {
            collection,
            path,
            anchor_id,
            expanded_nodes: 1,
        });
        Ok(())
    }

    /// A node of `expanded_nodes` nodes has ended: remember its size if it is anchored, and
    /// add it to the collection it belongs to.
    fn end_node(&mut self, anchor_id: usize, expanded_nodes: u64) {
        if anchor_id != 0 {
            self.anchor_sizes.insert(anchor_id, expanded_nodes);
        }
        if let Some(parent) = self.open.last_mut() {
            parent.expanded_nodes = parent.expanded_nodes.saturating_add(expanded_nodes);
        }
    }

    /// Adds nodes to the running total, stopping the moment it passes the limit so that a
    /// billion-laughs document costs no more than its own few hundred bytes.
    fn count(&mut self, nodes: u64, marker: &Marker) -> Result<(), ScanFailure> {
        self.expanded_total = self.expanded_total.saturating_add(nodes);
        if self.expanded_total <= MAX_EXPANDED_NODES {
            return Ok(());
        }
        let message = if self.saw_alias {
            format!(
                "YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes; refusing (alias bomb?)"
            )
        } else {
            format!(
                "the document has more than {MAX_EXPANDED_NODES} YAML nodes; no application \
                 needs that many"
            )
        };
        Err(ScanFailure::at(marker, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position_of(source: &str, path: &FieldPath) -> Option<(usize, usize)> {
        let map = scan(source).expect("scan");
        map.exact(path).map(|p| (p.line, p.column))
    }

    #[test]
    fn records_keys_and_sequence_items() {
        let source = "a:\n  b: 1\n  list:\n    - x\n    - name: y\n      deep: [1, {k: v}]\n";
        let root = FieldPath::root();
        let a = root.key("a");
        assert_eq!(position_of(source, &a), Some((1, 1)));
        assert_eq!(position_of(source, &a.key("b")), Some((2, 3)));
        assert_eq!(position_of(source, &a.key("list").index(0)), Some((4, 7)));
        let item = a.key("list").index(1);
        assert_eq!(position_of(source, &item.key("name")), Some((5, 7)));
        let deep = item.key("deep");
        assert_eq!(position_of(source, &deep.index(1).key("k")), Some((6, 18)));
    }

    #[test]
    fn locate_falls_back_to_the_nearest_ancestor() {
        let map = scan("spec:\n  components: []\n").expect("scan");
        let missing = FieldPath::root()
            .key("spec")
            .key("components")
            .index(3)
            .key("name");
        let found = map.locate(&missing).expect("ancestor");
        assert_eq!((found.line, found.column), (2, 3));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let failure = scan("a: [1, 2\nb: 3\n").expect_err("unterminated flow sequence");
        assert!(
            failure.message.starts_with("YAML syntax error"),
            "{failure:?}"
        );
        assert!(failure.position.is_some());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let failure = scan("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert!(
            failure
                .message
                .contains("duplicate key \"a\" (first defined at line 1)"),
            "{failure:?}"
        );
        assert_eq!(failure.position, Some(Position { line: 3, column: 1 }));
    }

    #[test]
    fn a_second_document_is_refused() {
        let failure = scan("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert!(
            failure.message.contains("second YAML document"),
            "{failure:?}"
        );
        assert_eq!(failure.position, Some(Position { line: 2, column: 1 }));
    }

    #[test]
    fn a_trailing_empty_document_ends_the_first() {
        let source = "a: 1\n---\n# nothing more\n";
        let map = scan(source).expect("a trailing --- is accepted");
        assert_eq!(map.end, Some(5));
        assert!(scan("a: 1\n---\n").is_ok());
        assert!(scan("a: 1\n---\n---\n").is_err(), "a third document is not");
    }

    #[test]
    fn nested_aliases_are_counted_expanded() {
        // 4 levels of 10 copies: 10^4 scalars, fine.
        let mut source = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..4 {
            let previous = format!("*l{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            source.push_str(&format!("l{level}: &l{level} [{items}]\n"));
        }
        assert!(scan(&source).is_ok());
        // One more level passes 100 000.
        let items = ["*l3"; 10].join(", ");
        source.push_str(&format!("l4: [{items}]\n"));
        let failure = scan(&source).expect_err("too many nodes");
        assert!(failure.message.contains("alias bomb"), "{failure:?}");
    }

    #[test]
    fn recursive_aliases_are_refused() {
        let failure = scan("a: &a [1, *a]\n").expect_err("recursive");
        assert!(failure.message.contains("recursive"), "{failure:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let source: String = (0..150)
            .map(|depth| format!("{}k:\n", " ".repeat(depth)))
            .collect();
        let failure = scan(&source).expect_err("too deep");
        assert!(
            failure.message.contains("nesting is deeper than 100"),
            "{failure:?}"
        );
        // Flow collections hit yaml-rust2's own limit first, which is just as good.
        assert!(scan(&"[".repeat(100_000)).is_err());
    }
}
