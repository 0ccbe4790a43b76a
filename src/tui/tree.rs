//! The field tree pane's rows: the description's fields flattened depth
//! first, skipping the children of collapsed fields.
//!
//! A field is named by its path (child indices from the root list), so a
//! collapsed "Body" stays collapsed when the next packet has one too.

use std::collections::HashSet;
use std::ops::Range;

use crate::decode::describe::Field;

/// Path of a field: indices from `Description::fields` down.
pub type FieldPath = Vec<usize>;

/// One visible row of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    pub path: FieldPath,
    pub depth: usize,
    /// `Label: value`, or the label alone for containers.
    pub text: String,
    pub range: Option<Range<usize>>,
    pub has_children: bool,
    pub expanded: bool,
}

/// The visible rows of `fields` given the collapsed paths.
pub fn flatten(fields: &[Field], collapsed: &HashSet<FieldPath>) -> Vec<TreeRow> {
    let mut rows = Vec::new();
    let mut path = Vec::new();
    push_rows(fields, collapsed, &mut path, &mut rows);
    rows
}

fn push_rows(
    fields: &[Field],
    collapsed: &HashSet<FieldPath>,
    path: &mut FieldPath,
    rows: &mut Vec<TreeRow>,
) {
    for (i, field) in fields.iter().enumerate() {
        path.push(i);
        let expanded = !collapsed.contains(path);
        let text = if field.value.is_empty() {
            field.label.clone()
        } else {
            format!("{}: {}", field.label, field.value)
        };
        rows.push(TreeRow {
            path: path.clone(),
            depth: path.len() - 1,
            text,
            range: field.range.clone(),
            has_children: !field.children.is_empty(),
            expanded,
        });
        if expanded {
            push_rows(&field.children, collapsed, path, rows);
        }
        path.pop();
    }
}

/// Path of the innermost field whose range holds byte `offset` (the same
/// choice as `Description::field_at`, but with its place in the tree).
pub fn path_at(fields: &[Field], offset: usize) -> Option<FieldPath> {
    let mut best: Option<(usize, FieldPath)> = None;
    let mut path = Vec::new();
    innermost(fields, offset, &mut path, &mut best);
    best.map(|(_, path)| path)
}

fn innermost(
    fields: &[Field],
    offset: usize,
    path: &mut FieldPath,
    best: &mut Option<(usize, FieldPath)>,
) {
    for (i, field) in fields.iter().enumerate() {
        path.push(i);
        if let Some(range) = &field.range {
            if range.contains(&offset) && best.as_ref().is_none_or(|(len, _)| range.len() < *len) {
                *best = Some((range.len(), path.clone()));
            }
        }
        innermost(&field.children, offset, path, best);
        path.pop();
    }
}
