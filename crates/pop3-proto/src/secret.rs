//! A wrapper for credentials, so they never reach a log by accident.

use core::fmt;

/// A value that must not be logged: a password, an APOP digest, SASL data.
///
/// `Debug` prints `Secret(<redacted>)` whatever the contents; the value is reached only through
/// [`Secret::expose`], which makes every use visible in review.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value itself.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }

    /// Applies `f` to the inner value, keeping the result secret.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Secret<U> {
        Secret(f(self.0))
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(feature = "arbitrary")]
impl<'a, T: arbitrary::Arbitrary<'a>> arbitrary::Arbitrary<'a> for Secret<T> {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(T::arbitrary(u)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("tanstaaf");
        let printed = format!("{s:?}");
        assert!(!printed.contains("tanstaaf"), "{printed}");
        assert_eq!(*s.expose(), "tanstaaf");
    }
}
