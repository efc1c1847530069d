//! [`MethodName`]: a method's wire name as the untyped call API takes it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// `Service:method` split at its first colon; `None` for a plain `method`. (A byte search:
/// `str::split_once` costs ~90 instructions on names this short, on every call.)
#[inline]
pub(crate) fn split_service(name: &str) -> Option<(&str, &str)> {
    let at = name.bytes().position(|b| b == b':')?;
    // `:` is one byte, so both sides are on character boundaries.
    Some((name.get(..at)?, name.get(at + 1..)?))
}

/// The method of a wire name: what follows its last colon, or all of it.
#[inline]
pub(crate) fn plain_method(name: &str) -> &str {
    match name.bytes().rposition(|b| b == b':') {
        Some(at) => name.get(at + 1..).unwrap_or(name),
        None => name,
    }
}

/// A method's wire name (`method`, or `Service:method` for a multiplexed server), as the
/// untyped call API of both clients takes it: a `&'static str` (what generated clients pass;
/// copied for free) or a name made at run time, such as one the command line reads from a
/// server's IDL (shared, never copied and never leaked).
#[derive(Clone)]
pub struct MethodName(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl MethodName {
    /// The name.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Deref for MethodName {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for MethodName {
    #[inline]
    fn from(name: &'static str) -> Self {
        MethodName(Repr::Static(name))
    }
}

impl From<String> for MethodName {
    fn from(name: String) -> Self {
        MethodName(Repr::Shared(name.into()))
    }
}

impl From<Arc<str>> for MethodName {
    fn from(name: Arc<str>) -> Self {
        MethodName(Repr::Shared(name))
    }
}

impl PartialEq for MethodName {
    /// Names are equal when they read the same, however they were made.
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MethodName {}

impl std::hash::Hash for MethodName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for MethodName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MethodName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{plain_method, split_service};

    #[test]
    fn names_split_at_their_colons_as_str_does() {
        for name in ["m", "S:m", ":m", "S:", ":", "", "A:B:c", "dé:jà", "é"] {
            assert_eq!(split_service(name), name.split_once(':'), "{name:?}");
            let plain = name.rsplit_once(':').map_or(name, |(_, m)| m);
            assert_eq!(plain_method(name), plain, "{name:?}");
        }
    }

    use super::*;

    #[test]
    fn a_name_made_at_run_time_equals_the_same_static_name() {
        let run_time = MethodName::from(format!("Svc:{}", "open"));
        assert_eq!(run_time, MethodName::from("Svc:open"));
        assert_eq!(run_time.as_str(), "Svc:open");
        assert_eq!(run_time.clone(), run_time, "a clone shares the name");
        assert!(run_time == "Svc:open");
        assert_eq!(format!("{run_time} {run_time:?}"), "Svc:open \"Svc:open\"");
    }
}
