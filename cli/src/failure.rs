//! Exit codes: 0 success, 1 runtime failure (unreachable, rejected), 2 invalid input.

use std::fmt;

/// Input the user must fix: a bad file, flag or argument. Exits with code 2.
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    InvalidInput(message.into()).into()
}

/// A document's validation errors, one per line, each starting `FILE:LINE:COL:` (or `FILE:`
/// where no position applies): printed as they are, with no `error:` in front, so that
/// editors' and CI's problem matchers find them. Exits with code 2.
#[derive(Debug)]
pub struct Diagnosed(pub String);

impl fmt::Display for Diagnosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Diagnosed {}

pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<InvalidInput>().is_some() || error.downcast_ref::<Diagnosed>().is_some()
    {
        2
    } else {
        1
    }
}

/// What the CLI prints on stderr for `error`.
pub fn report(error: &anyhow::Error) -> String {
    match error.downcast_ref::<Diagnosed>() {
        Some(diagnosed) => diagnosed.to_string(),
        None => format!("error: {}", describe(error)),
    }
}

/// The error and its causes in one line, skipping causes whose text the message above them
/// already quotes (library errors often include their source's text).
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}
