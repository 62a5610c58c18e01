//! Output: aligned text tables, compact or pretty JSON, written so that a closed pipe
//! (`bpfns map list | head -1`) is not an error.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    PrettyJson,
}

impl Format {
    /// `-j` and `-p` (which implies `-j`).
    pub fn from_flags(json: bool, pretty: bool) -> Self {
        match (json, pretty) {
            (_, true) => Format::PrettyJson,
            (true, false) => Format::Json,
            (false, false) => Format::Text,
        }
    }

    pub fn is_json(self) -> bool {
        self != Format::Text
    }
}

/// A command result that also has a text form (its JSON form comes from `Serialize`).
pub trait Render {
    /// The text form, ending with a newline (or empty).
    fn render_text(&self) -> String;
}

/// Serialize `value` as JSON, one line or pretty-printed.
pub fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<String> {
    let s = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    s.context("serializing the result as JSON")
}

/// The full output of `value` in `format`.
pub fn render<T: Serialize + Render + ?Sized>(format: Format, value: &T) -> Result<String> {
    Ok(match format {
        Format::Text => value.render_text(),
        Format::Json => to_json(value, false)? + "\n",
        Format::PrettyJson => to_json(value, true)? + "\n",
    })
}

/// Print `value` on stdout in `format`.
pub fn emit<T: Serialize + Render + ?Sized>(format: Format, value: &T) -> Result<()> {
    write_stdout(&render(format, value)?)
}

/// Write to stdout; a reader that went away (EPIPE) is not an error.
/// `s` with its control characters escaped (`\n`, `\u{1b}`): for text a process chose (a
/// task's name), so that it can neither start a line of its own nor send the terminal
/// escape sequences.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub fn write_stdout(s: &str) -> Result<()> {
    write_stdout_bytes(s.as_bytes())
}

/// [`write_stdout`] of bytes.
pub fn write_stdout_bytes(b: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(b).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// A text table: a header row and left-aligned columns separated by two spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row; missing cells are blank, empty cells print as `-`.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut r: Vec<String> = cells
            .into_iter()
            .map(Into::into)
            .map(|c| if c.is_empty() { "-".to_string() } else { c })
            .collect();
        r.resize(self.headers.len().max(r.len()), String::new());
        self.rows.push(r);
    }

    /// The table with each line indented by `indent` spaces.
    pub fn render_indented(&self, indent: usize) -> String {
        let cols = self
            .headers
            .len()
            .max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut widths = vec![0usize; cols];
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = " ".repeat(indent);
            for (i, w) in widths.iter().enumerate() {
                let cell = r.get(i).map_or("", String::as_str);
                line.push_str(cell);
                if i + 1 < cols {
                    line.push_str(&" ".repeat(w - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn render(&self) -> String {
        self.render_indented(0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::printable("bpftool"), "bpftool");
        assert_eq!(
            super::printable("a\n00:00Z ok\u{1b}[8m"),
            "a\\n00:00Z ok\\u{1b}[8m"
        );
    }

    use super::*;

    #[test]
    fn flags() {
        assert_eq!(Format::from_flags(false, false), Format::Text);
        assert_eq!(Format::from_flags(true, false), Format::Json);
        assert_eq!(Format::from_flags(false, true), Format::PrettyJson);
        assert_eq!(Format::from_flags(true, true), Format::PrettyJson);
        assert!(!Format::Text.is_json());
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(["ID", "TYPE", "NAME", "NAMESPACE"]);
        t.row(["7", "hash", "task_ns", "/"]);
        t.row(["1234", "array", "", "ns:12"]);
        assert_eq!(
            t.render(),
            "ID    TYPE   NAME     NAMESPACE\n\
             7     hash   task_ns  /\n\
             1234  array  -        ns:12\n"
        );
    }

    #[test]
    fn table_without_rows_has_a_header_and_no_trailing_blanks() {
        let t = Table::new(["ID", "NAME"]);
        assert_eq!(t.render(), "ID  NAME\n");
        let mut t = Table::new(["A", "B"]);
        t.row(["long-value", "x"]);
        assert_eq!(t.render_indented(2), "  A           B\n  long-value  x\n");
        for line in t.render().lines() {
            assert_eq!(line, line.trim_end());
        }
    }

    #[test]
    fn json_forms() {
        let v: Vec<u32> = vec![];
        assert_eq!(to_json(&v, false).unwrap(), "[]");
        assert!(to_json(&vec![1, 2], true).unwrap().contains('\n'));
    }
}
