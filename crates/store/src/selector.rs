//! Label selectors in the Kubernetes string syntax.
//!
//! Both equality-based and set-based requirements are understood, joined by commas (AND):
//!
//! | syntax            | meaning                                   |
//! |-------------------|-------------------------------------------|
//! | `a=b`, `a==b`     | label `a` exists and equals `b`           |
//! | `a!=b`            | label `a` is absent or differs from `b`   |
//! | `a in (x,y)`      | label `a` exists and is `x` or `y`        |
//! | `a notin (x,y)`   | label `a` is absent or neither `x` nor `y`|
//! | `a`               | label `a` exists                          |
//! | `!a`              | label `a` is absent                       |
//!
//! Parsing yields kube's [`Selector`], so the same value matches objects locally
//! ([`kube::core::SelectorExt::matches`]) and renders back to the `labelSelector` query
//! parameter (`Display`) for the API server.

use std::collections::BTreeSet;

use kube::core::{Expression, Selector};

use crate::{Error, Result};

/// Parse a label selector string such as `app=x,tier in (a,b),!legacy`.
///
/// The empty string selects everything.
pub fn parse_selector(input: &str) -> Result<Selector> {
    let invalid = |reason: String| Error::Invalid {
        kind: "LabelSelector".into(),
        name: input.into(),
        reason,
    };
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
    };
    let mut exprs = Vec::new();
    p.skip_ws();
    if p.at_end() {
        return Ok(Selector::default());
    }
    loop {
        exprs.push(p.requirement().map_err(&invalid)?);
        p.skip_ws();
        if p.at_end() {
            break;
        }
        if !p.eat(',') {
            return Err(invalid(format!("expected ',' at offset {}", p.pos)));
        }
    }
    Ok(exprs.into_iter().collect())
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn key(&mut self) -> Result<String, String> {
        self.skip_ws();
        let key = self.word();
        if key.is_empty() {
            return Err(format!("expected a label key at offset {}", self.pos));
        }
        validate_key(&key)?;
        Ok(key)
    }

    fn value(&mut self) -> Result<String, String> {
        self.skip_ws();
        let value = self.word();
        if value.contains('/') {
            return Err(format!("label value {value:?} must not contain '/'"));
        }
        if value.len() > 63 {
            return Err(format!(
                "label value {value:?} is longer than 63 characters"
            ));
        }
        Ok(value)
    }

    fn set(&mut self) -> Result<BTreeSet<String>, String> {
        self.skip_ws();
        if !self.eat('(') {
            return Err(format!("expected '(' at offset {}", self.pos));
        }
        let mut values = BTreeSet::new();
        loop {
            values.insert(self.value()?);
            self.skip_ws();
            if self.eat(')') {
                return Ok(values);
            }
            if !self.eat(',') {
                return Err(format!("expected ',' or ')' at offset {}", self.pos));
            }
        }
    }

    fn requirement(&mut self) -> Result<Expression, String> {
        self.skip_ws();
        if self.eat('!') {
            return Ok(Expression::DoesNotExist(self.key()?));
        }
        let key = self.key()?;
        self.skip_ws();
        match self.peek() {
            None | Some(',') => Ok(Expression::Exists(key)),
            Some('=') => {
                self.pos += 1;
                self.eat('=');
                Ok(Expression::Equal(key, self.value()?))
            }
            Some('!') => {
                self.pos += 1;
                if !self.eat('=') {
                    return Err(format!("expected '!=' at offset {}", self.pos));
                }
                Ok(Expression::NotEqual(key, self.value()?))
            }
            Some('<' | '>') => Err("the '<' and '>' operators are not supported".into()),
            Some(_) => {
                let op = self.word();
                match op.as_str() {
                    "in" => Ok(Expression::In(key, self.set()?)),
                    "notin" => Ok(Expression::NotIn(key, self.set()?)),
                    other => Err(format!("unknown operator {other:?} after key {key:?}")),
                }
            }
        }
    }
}

fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.is_empty() || name.len() > 63 {
        return Err(format!("label key {key:?}: name must be 1-63 characters"));
    }
    if let Some(prefix) = prefix
        && (prefix.is_empty() || prefix.len() > 253 || prefix.contains('/'))
    {
        return Err(format!("label key {key:?}: invalid prefix"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kube::core::SelectorExt;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = parse_selector("a=b, c==d,e!=f,g in (x, y),h notin (z),i,!j").unwrap();
        assert_eq!(s.to_string(), "a=b,c=d,e!=f,g in (x,y),h notin (z),i,!j");
    }

    #[test]
    fn matches_like_kubernetes() {
        let s = parse_selector("app=web,tier in (a,b),!legacy,zone!=east").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "b"), ("zone", "west")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("legacy", "")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("zone", "east")])));
        assert!(!s.matches(&labels(&[("tier", "a")])));
        let exists = parse_selector("hwameistor.io/owner").unwrap();
        assert!(exists.matches(&labels(&[("hwameistor.io/owner", "")])));
        assert!(!exists.matches(&labels(&[])));
    }

    #[test]
    fn empty_selects_all() {
        let s = parse_selector("  ").unwrap();
        assert!(s.selects_all());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "a in x",
            "a in (x",
            "=b",
            "a=b,",
            "a>1",
            "a foo (b)",
            "a=b c",
            "/x=1",
        ] {
            let err = parse_selector(bad).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{bad}: {err}");
        }
    }
}
