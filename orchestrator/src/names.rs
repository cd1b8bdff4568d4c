//! The naming rules an application shares with Kubernetes, so a manifest that passes here would
//! also pass there, and names are safe to use as file names, labels and DNS labels on a node.
//!
//! Each check returns the complete message for the user, saying what was expected.

/// Component and application names: RFC 1123 DNS labels.
pub(crate) fn check_dns_label(name: &str) -> Result<(), String> {
    if is_label_like(name, 63, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    }) {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}; expected a DNS-1123 label: 1 to 63 lowercase letters, digits \
             or '-', starting and ending with a letter or digit"
        ))
    }
}

/// Node label keys and topology keys: `name` or `prefix/name`, where the prefix is a DNS
/// subdomain (such as `topology.kubernetes.io`).
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|prefix| {
        prefix.len() <= 253
            && prefix.split('.').all(|part| {
                is_label_like(part, 63, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
                })
            })
    });
    if prefix_ok && is_label_like(name, 63, is_label_char) {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {key:?}; expected a name of 1 to 63 letters, digits, '-', '_' or \
             '.', starting and ending with a letter or digit, optionally after a DNS prefix and \
             '/' (e.g. \"topology.kubernetes.io/zone\")"
        ))
    }
}

/// Node label values.
pub(crate) fn check_label_value(value: &str) -> Result<(), String> {
    if is_label_like(value, 63, is_label_char) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}; expected 1 to 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ))
    }
}

/// Environment variable names, by the rule Kubernetes applies to container `env`.
pub(crate) fn check_env_var_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let starts_well = name.chars().next().is_some_and(|c| !c.is_ascii_digit());
    if valid_chars && starts_well {
        Ok(())
    } else {
        Err(format!(
            "invalid environment variable name {name:?}; expected letters, digits, '_', '-' or \
             '.', not starting with a digit"
        ))
    }
}

/// Strings that end up in `exec` arguments or the environment cannot hold NUL: the operating
/// system would cut them short.
pub(crate) fn check_no_nul(what: &str, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err(format!(
            "{what} contains a NUL character, which processes cannot receive"
        ))
    } else {
        Ok(())
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// 1..=`max_len` characters accepted by `allowed`, starting and ending with an ASCII letter or
/// digit.
fn is_label_like(text: &str, max_len: usize, allowed: impl Fn(char) -> bool) -> bool {
    let (Some(first), Some(last)) = (text.chars().next(), text.chars().last()) else {
        return false;
    };
    text.len() <= max_len
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && text.chars().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "web", "web-1", "1st", &"a".repeat(63)] {
            assert!(check_dns_label(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Web",
            "-web",
            "web-",
            "we_b",
            "web.1",
            "wéb",
            &"a".repeat(64),
        ] {
            let message = check_dns_label(bad).expect_err(bad);
            assert!(message.contains("DNS-1123"), "{message}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in [
            "zone",
            "kubernetes.io/arch",
            "topology.kubernetes.io/zone",
            "GPU_Model.x",
        ] {
            assert!(check_label_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/zone",
            "a/",
            "Example.com/x",
            "a//b",
            "-x",
            &"k".repeat(64),
        ] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
        for good in ["amd64", "eu-west-1a", "v1.2_3"] {
            assert!(check_label_value(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "x/y", ".hidden", &"v".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_var_names() {
        for good in ["PATH", "_x", "my.var-1"] {
            assert!(check_env_var_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1X", "A=B", "A B"] {
            assert!(check_env_var_name(bad).is_err(), "{bad}");
        }
    }
}
