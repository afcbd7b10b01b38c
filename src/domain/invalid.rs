//! Why a value was refused, and where: every validation error names its field as a
//! JSON pointer (RFC 6901) into the document the user sent.

use std::collections::BTreeSet;
use std::fmt;

/// Why one value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("is required")]
    Required,
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("must have at most {max} items")]
    TooMany { max: usize },
    #[error("must be between {min} and {max}")]
    OutOfRange { min: i64, max: i64 },
    #[error("must be {0}")]
    Format(&'static str),
    #[error("duplicates {first}")]
    Duplicate { first: String },
    #[error("names no port in /spec/ports: {0:?}")]
    UnknownPort(String),
    #[error("{0}")]
    Rule(&'static str),
    #[error("has a syntax error at character {position}: expected {expected}")]
    Syntax {
        position: usize,
        expected: &'static str,
    },
    #[error("must be {expected:?}, as in the request path")]
    PathMismatch { expected: String },
}

/// A JSON pointer under construction. Cheap to extend; each extension is a new value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The pointer to member `key`, escaped as RFC 6901 requires.
    pub fn field(&self, key: &str) -> Self {
        Self(format!(
            "{}/{}",
            self.0,
            key.replace('~', "~0").replace('/', "~1")
        ))
    }

    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}/{index}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.detail)
    }
}

/// Every refused field of a document, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

/// Collects errors while a document is parsed, so the user hears about all of them.
#[derive(Debug, Default)]
pub struct Errors {
    found: Vec<FieldError>,
    /// Ports declared but refused: a reference to one is not unknown, only unusable, and
    /// its port's own error says why.
    refused_ports: BTreeSet<String>,
}

impl Errors {
    pub fn add(&mut self, at: &Pointer, error: Invalid) {
        if matches!(&error, Invalid::UnknownPort(name) if self.refused_ports.contains(name)) {
            return;
        }
        self.found.push(FieldError {
            pointer: at.to_string(),
            detail: error.to_string(),
        });
    }

    /// Records a declared port that was refused, by name and number.
    pub fn refuse_port(&mut self, name: &str, number: i32) {
        self.refused_ports.insert(name.to_owned());
        self.refused_ports.insert(number.to_string());
    }

    /// Keeps the value of `result`, or records its error at `at`.
    pub fn check<T>(&mut self, at: &Pointer, result: Result<T, Invalid>) -> Option<T> {
        result.map_err(|error| self.add(at, error)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// `value` when nothing was refused. `value` being `None` with no error recorded is
    /// a bug in the parser, reported rather than hidden.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ValidationErrors> {
        match value {
            Some(value) if self.found.is_empty() => Ok(value),
            _ if !self.found.is_empty() => Err(ValidationErrors(self.found)),
            _ => Err(ValidationErrors(vec![FieldError {
                pointer: String::new(),
                detail: "could not be parsed".to_owned(),
            }])),
        }
    }
}

/// Remembers where each key was first seen, to report later repeats of it.
#[derive(Debug)]
pub struct FirstSeen<K>(std::collections::HashMap<K, Pointer>);

impl<K> Default for FirstSeen<K> {
    fn default() -> Self {
        Self(std::collections::HashMap::new())
    }
}

impl<K: std::hash::Hash + Eq> FirstSeen<K> {
    /// Records `key` at `at`; a key seen before is an error naming the first place.
    pub fn check(&mut self, key: K, at: &Pointer) -> Result<(), Invalid> {
        match self.0.entry(key) {
            std::collections::hash_map::Entry::Occupied(first) => Err(Invalid::Duplicate {
                first: first.get().to_string(),
            }),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(at.clone());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escapes_slash_and_tilde() {
        let at = Pointer::root()
            .field("metadata")
            .field("labels")
            .field("a/b~c");
        assert_eq!(at.as_str(), "/metadata/labels/a~1b~0c");
        assert_eq!(Pointer::root().field("spec").index(3).as_str(), "/spec/3");
    }

    #[test]
    fn finish_reports_every_error_in_order() {
        let mut errors = Errors::default();
        errors.add(&Pointer::root().field("a"), Invalid::Required);
        errors.add(&Pointer::root().field("b"), Invalid::Empty);
        let ValidationErrors(list) = errors.finish(Some(())).unwrap_err();
        let pointers: Vec<_> = list.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/a", "/b"]);
    }
}
