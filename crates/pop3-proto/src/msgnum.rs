//! Message numbers (RFC 1939 §5: "message-number ... never 0").

use core::fmt;
use core::num::NonZeroU32;

/// A message number: 1-based and never zero, so `RETR 0` cannot even be represented.
///
/// RFC 1939 §5 numbers the messages of a maildrop from 1; 32 bits cover any real maildrop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgNum(pub NonZeroU32);

impl MsgNum {
    /// The number `n`, or `None` for zero.
    pub const fn new(n: u32) -> Option<Self> {
        match NonZeroU32::new(n) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The number as a plain integer.
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The zero-based index of this message in a snapshot (`n - 1`).
    pub const fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }

    /// The message number of the zero-based `index`, or `None` when it does not fit in 32 bits.
    pub fn from_index(index: usize) -> Option<Self> {
        u32::try_from(index).ok()?.checked_add(1).and_then(Self::new)
    }
}

impl fmt::Display for MsgNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for MsgNum {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(NonZeroU32::arbitrary(u)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_not_a_message_number() {
        assert_eq!(MsgNum::new(0), None);
        assert_eq!(MsgNum::new(7).map(MsgNum::get), Some(7));
    }

    #[test]
    fn index_round_trips() {
        let n = MsgNum::from_index(0).unwrap();
        assert_eq!(n.get(), 1);
        assert_eq!(n.index(), 0);
        assert_eq!(MsgNum::from_index(u32::MAX as usize), None);
    }
}
