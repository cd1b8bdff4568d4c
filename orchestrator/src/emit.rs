//! A small YAML writer for rendered applications.
//!
//! A rendered document is read back by two parsers: yaml-rust2 (the positions pass) and libyaml
//! (serde_yaml). serde_yaml's own emitter sometimes writes what yaml-rust2 reads differently,
//! such as a literal block holding U+2028. This writer keeps to the YAML both read the same way:
//! block mappings and sequences, plain scalars only where they cannot be mistaken for anything
//! else, and double-quoted scalars, with every troublesome character escaped, everywhere else.

use serde_yaml::Value;

/// Renders `value` as a YAML document.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_block(&mut out, value, 0);
    out
}

/// Writes `value` starting on a fresh line at `indent`.
fn write_block(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Mapping(mapping) if !mapping.is_empty() => {
            for (key, value) in mapping {
                push_indent(out, indent);
                write_inline(out, key);
                out.push(':');
                write_child(out, value, indent);
            }
        }
        Value::Sequence(items) if !items.is_empty() => {
            for item in items {
                if is_block(item) {
                    let start = out.len();
                    write_block(out, item, indent + 2);
                    // Pull the item's first line up beside the dash: `- name: a`, not `-\n  name: a`.
                    out.replace_range(start + indent..start + indent + 2, "- ");
                } else {
                    push_indent(out, indent);
                    out.push('-');
                    write_child(out, item, indent);
                }
            }
        }
        Value::Tagged(tagged) => write_block(out, &tagged.value, indent),
        _ => {
            push_indent(out, indent);
            write_inline(out, value);
            out.push('\n');
        }
    }
}

/// Writes the value after a `key:` or `-` at `indent`: on the same line if it fits on one,
/// otherwise on the following lines, indented one step further.
fn write_child(out: &mut String, value: &Value, indent: usize) {
    if let Value::Tagged(tagged) = value {
        write_child(out, &tagged.value, indent);
    } else if is_block(value) {
        out.push('\n');
        write_block(out, value, indent + 2);
    } else {
        out.push(' ');
        write_inline(out, value);
        out.push('\n');
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Mapping(mapping) => !mapping.is_empty(),
        Value::Sequence(items) => !items.is_empty(),
        Value::Tagged(tagged) => is_block(&tagged.value),
        _ => false,
    }
}

/// Scalars and empty collections.
fn write_inline(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => out.push_str(&format_float(float)),
            _ => out.push_str(&number.to_string()),
        },
        Value::String(text) if is_plain(text) => out.push_str(text),
        Value::String(text) => write_quoted(out, text),
        Value::Sequence(_) => out.push_str("[]"),
        Value::Mapping(_) => out.push_str("{}"),
        Value::Tagged(tagged) => write_inline(out, &tagged.value),
    }
}

/// A float spelled so that YAML reads it back as the same float, never as an integer.
fn format_float(float: f64) -> String {
    if float.is_nan() {
        ".nan".to_owned()
    } else if float.is_infinite() {
        if float > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else {
        // Debug is the shortest spelling that parses back exactly, and keeps a `.0` or exponent.
        format!("{float:?}")
    }
}

/// Whether `text` can be written unquoted and still read back as this very string: a
/// conservative subset of YAML's plain scalars that excludes numbers and the words YAML 1.1
/// and 1.2 read as booleans or null.
fn is_plain(text: &str) -> bool {
    const WORDS: [&str; 9] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n"];
    let starts_well = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '/');
    starts_well
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !WORDS.contains(&text.to_ascii_lowercase().as_str())
}

fn write_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Controls, the characters YAML 1.1 treats as line breaks, and the byte order mark.
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_block_style_with_compact_sequence_items() {
        let value: Value = serde_yaml::from_str(
            "a: 1\nlist:\n  - name: x\n    tags: [p, q]\n  - [1, 2]\n  - {}\nempty: []\n",
        )
        .expect("valid");
        assert_eq!(
            to_yaml(&value),
            "a: 1\nlist:\n  - name: x\n    tags:\n      - p\n      - q\n  - - 1\n    - 2\n  - {}\nempty: []\n"
        );
    }

    #[test]
    fn quotes_whatever_could_be_misread() {
        for text in [
            "",
            "true",
            "No",
            "~",
            "123",
            "1.5",
            ".inf",
            "-c",
            "a: b",
            "x #y",
            "nginx:1.27",
            " pad",
        ] {
            assert!(!is_plain(text), "{text:?}");
        }
        for text in ["sh", "web-1", "kubernetes.io/arch", "/bin/sh", "_x"] {
            assert!(is_plain(text), "{text:?}");
        }
        let mut out = String::new();
        write_quoted(&mut out, "a\"b\\c\nd\u{2028}\u{1b}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u2028\\u001Bé\"");
    }

    #[test]
    fn floats_stay_floats() {
        for float in [1.0, 0.5, -2.25, 1e-7, 3.0e10, 6.02e23, f64::MAX] {
            let written = format_float(float);
            let read: Value = serde_yaml::from_str(&written).expect("valid");
            assert!(read.is_f64(), "{written}");
            assert_eq!(read.as_f64(), Some(float), "{written}");
        }
    }
}
