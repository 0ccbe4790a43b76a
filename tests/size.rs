//! The size limits, enforced: no file under src/ over [`MAX_FILE_LINES`]
//! lines and no function over [`MAX_FN_LINES`] lines, except the ones
//! listed below with a reason (table-like code, or a known offender its
//! owner is splitting). A listed entry that is no longer over the limit
//! fails too, so the lists only shrink.
//!
//! Function bodies are found by brace counting on the source with
//! comments, strings and character literals blanked out.

use std::fs;
use std::path::Path;

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 150;

/// Files allowed over the line limit, and why.
const LONG_FILES: &[(&str, &str)] = &[];

/// Functions (`file::name`) allowed over the line limit, and why.
const LONG_FNS: &[(&str, &str)] = &[];

/// `src` with comments, string/char literal contents blanked (newlines
/// kept), so braces can be counted.
fn code_only(src: &str) -> Vec<char> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = chars.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in out.iter_mut().take(to).skip(from) {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev = i.checked_sub(1).map(|p| chars[p]);
        if c == '/' && next == Some('/') {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < chars.len() && depth > 0 {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 1;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 1;
                }
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == 'r'
            && !prev.is_some_and(|p| ident(p) && p != 'b')
            && matches!(next, Some('"') | Some('#'))
        {
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                i += 1;
                continue;
            }
            let body = i + 2 + hashes;
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let closing: Vec<char> = closing.chars().collect();
            let end = (body..chars.len())
                .find(|&j| chars[j..].starts_with(&closing))
                .map_or(chars.len(), |j| j + closing.len());
            blank(&mut out, body, end.saturating_sub(closing.len()));
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(chars.len()));
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or else a lifetime.
            if next == Some('\\') {
                let end = (i + 2..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .unwrap_or(chars.len());
                blank(&mut out, i + 1, end);
                i = end + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                blank(&mut out, i + 1, i + 2);
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// (name, first line, line count) of every function with a body.
fn functions(src: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(src);
    let line_at = |at: usize| code[..at].iter().filter(|&&c| c == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < code.len() {
        let is_fn = code[i..].starts_with(&['f', 'n', ' '])
            && (i == 0 || !(code[i - 1].is_alphanumeric() || code[i - 1] == '_'));
        if !is_fn {
            i += 1;
            continue;
        }
        let name: String = code[i + 3..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        // The body opens at the first `{` outside parentheses and brackets;
        // a `;` there first means a declaration without a body.
        let (mut depth, mut j, mut open) = (0i32, i + 3, None);
        while j < code.len() {
            match code[j] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => break,
                '{' if depth == 0 => {
                    open = Some(j);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let Some(open) = open else {
            i = j;
            continue;
        };
        let mut braces = 0i32;
        let mut close = code.len() - 1;
        for (k, c) in code.iter().enumerate().skip(open) {
            match c {
                '{' => braces += 1,
                '}' => braces -= 1,
                _ => {}
            }
            if braces == 0 {
                close = k;
                break;
            }
        }
        let first = line_at(i);
        out.push((name, first, line_at(close) - first + 1));
        // Nested functions are counted inside their parent and on their own.
        i = open + 1;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src/")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Files and functions over the limits and not listed, and listed
/// entries that are no longer over.
fn offenders(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut found = Vec::new();
    let (mut long_files, mut long_fns) = (Vec::new(), Vec::new());
    for path in &files {
        let src = fs::read_to_string(path).expect("read source");
        let rel = path
            .strip_prefix(&format!("{}/", root.display()))
            .unwrap_or(path)
            .to_owned();
        let lines = src.lines().count();
        if lines > MAX_FILE_LINES {
            long_files.push(rel.clone());
            if !LONG_FILES.iter().any(|(f, _)| *f == rel) {
                found.push(format!("{rel}: {lines} lines (limit {MAX_FILE_LINES})"));
            }
        }
        for (name, line, len) in functions(&src) {
            let key = format!("{rel}::{name}");
            if len > MAX_FN_LINES {
                long_fns.push(key.clone());
                if !LONG_FNS.iter().any(|(f, _)| *f == key) {
                    found.push(format!(
                        "{rel}:{line}: fn {name} is {len} lines (limit {MAX_FN_LINES})"
                    ));
                }
            }
        }
    }
    for (file, _) in LONG_FILES {
        if !long_files.iter().any(|f| f == file) {
            found.push(format!(
                "{file} is within the limit now: remove it from LONG_FILES"
            ));
        }
    }
    for (key, _) in LONG_FNS {
        if !long_fns.iter().any(|f| f == key) {
            found.push(format!(
                "{key} is within the limit now: remove it from LONG_FNS"
            ));
        }
    }
    found
}

#[test]
fn no_file_or_function_over_the_size_limits() {
    let found = offenders(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        found.is_empty(),
        "over the size limits (split by job, or list with a reason in tests/size.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn function_lengths_ignore_braces_in_strings_comments_and_chars() {
    let src = "fn a() {\n    let s = \"}}\"; // }\n    let c = '}';\n    let r = r#\"{\"#;\n}\n\
               fn b<'x>(v: [u8; 2]) -> &'x str where u8: Copy {\n    /* { */\n    \"\"\n}\n\
               trait T { fn c(&self); }\n";
    let found = functions(src);
    assert_eq!(
        found,
        [("a".to_owned(), 1, 5), ("b".to_owned(), 6, 4)],
        "{found:?}"
    );
}

#[test]
fn a_planted_long_function_is_found() {
    let body = "    let _ = 1;\n".repeat(MAX_FN_LINES);
    let src = format!("fn long() {{\n{body}}}\nfn short() {{}}\n");
    let long: Vec<_> = functions(&src)
        .into_iter()
        .filter(|(_, _, len)| *len > MAX_FN_LINES)
        .collect();
    assert_eq!(long, [("long".to_owned(), 1, MAX_FN_LINES + 2)]);
}
