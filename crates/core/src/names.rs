//! Validation of names that end up in command lines, device paths or object keys.
//!
//! Anything we pass to `lvcreate`, `mkfs`, `cryptsetup` or use as a file name must be
//! checked here first: a name may contain only ASCII letters, digits, `-`, `_` and `.`,
//! must not start with `-` (it would read as an option) or `.`, and is at most 127 bytes
//! (LVM's limit for LV names).

use thiserror::Error;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("{what} name is empty")]
    Empty { what: &'static str },
    #[error("{what} name {name:?} is longer than {max} bytes")]
    TooLong {
        what: &'static str,
        name: String,
        max: usize,
    },
    #[error("{what} name {name:?} must not start with {first:?}")]
    BadStart {
        what: &'static str,
        name: String,
        first: char,
    },
    #[error("{what} name {name:?} contains {bad:?}; allowed: A-Z a-z 0-9 - _ .")]
    BadChar {
        what: &'static str,
        name: String,
        bad: char,
    },
}

/// Maximum length of a volume, pool or snapshot name.
pub const MAX_NAME_BYTES: usize = 127;

/// Check a name that will be used as an LV/VG/file/mapper name. `what` says which kind of
/// name it is, for the error message ("volume", "pool", "snapshot", ...).
pub fn validate(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            what,
            name: name.to_owned(),
            max: MAX_NAME_BYTES,
        });
    }
    let first = name.chars().next().unwrap_or('-');
    if first == '-' || first == '.' {
        return Err(NameError::BadStart {
            what,
            name: name.to_owned(),
            first,
        });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadChar {
            what,
            name: name.to_owned(),
            bad,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_names() {
        for n in ["pvc-0f3a", "LocalStorage_PoolHDD", "snapcontent-1.2", "a"] {
            assert_eq!(validate("volume", n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_option_like_path_like_and_empty_names() {
        assert!(matches!(
            validate("volume", ""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            validate("volume", "-rf"),
            Err(NameError::BadStart { .. })
        ));
        assert!(matches!(
            validate("volume", ".."),
            Err(NameError::BadStart { .. })
        ));
        assert!(matches!(
            validate("volume", "a/b"),
            Err(NameError::BadChar { bad: '/', .. })
        ));
        assert!(matches!(
            validate("volume", "a b"),
            Err(NameError::BadChar { bad: ' ', .. })
        ));
        assert!(matches!(
            validate("volume", &"x".repeat(128)),
            Err(NameError::TooLong { .. })
        ));
    }
}
