//! The relay link: which receiver feeds which senders. Its two sides point
//! at each other (a splice's [`Feeds`], in the receiver; a sender's
//! [`FedBy`]) so that either end finds the other at once, on a `send` as
//! on a close. Only this room writes them, and always both at once
//! ([`link`], [`unlink`]): their fields are private, and everyone else
//! reads.

use crate::token::Token;

/// The senders a splice feeds, in order: a fan-out tees to all but the
/// last and splices to the last.
#[derive(Debug, Default)]
pub(super) struct Feeds(Vec<Token>);

impl Feeds {
    pub(super) fn iter(&self) -> impl Iterator<Item = Token> + '_ {
        self.0.iter().copied()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn first(&self) -> Option<Token> {
        self.0.first().copied()
    }

    pub(super) fn to_vec(&self) -> Vec<Token> {
        self.0.clone()
    }
}

/// The receiver feeding a sender, if any: a sender fed by a relay or a
/// fan-out takes no `send` of its own.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FedBy(Option<Token>);

impl FedBy {
    pub(super) fn source(self) -> Option<Token> {
        self.0
    }

    pub(super) fn is_fed(self) -> bool {
        self.0.is_some()
    }
}

/// Links receiver `rx`, whose splice feeds `feeds`, to sender `tx`, whose
/// side is `fed_by`: `tx` becomes the last destination.
pub(super) fn link(feeds: &mut Feeds, rx: Token, fed_by: &mut FedBy, tx: Token) {
    feeds.0.push(tx);
    fed_by.0 = Some(rx);
}

/// Cuts sender `tx` out of `feeds`, and clears its `fed_by` if it is
/// still there. Returns whether the splice feeds nobody now.
pub(super) fn unlink(feeds: &mut Feeds, fed_by: Option<&mut FedBy>, tx: Token) -> bool {
    feeds.0.retain(|d| *d != tx);
    if let Some(fed_by) = fed_by {
        fed_by.0 = None;
    }
    feeds.0.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(index: u32) -> Token {
        Token {
            index,
            generation: 0,
            proactor: 1,
        }
    }

    #[test]
    fn both_sides_change_together() {
        let (rx, a, b) = (token(0), token(1), token(2));
        let mut feeds = Feeds::default();
        let (mut fa, mut fb) = (FedBy::default(), FedBy::default());
        link(&mut feeds, rx, &mut fa, a);
        link(&mut feeds, rx, &mut fb, b);
        assert_eq!(feeds.to_vec(), [a, b]);
        assert_eq!((fa.source(), fb.source()), (Some(rx), Some(rx)));
        assert!(!unlink(&mut feeds, Some(&mut fa), a));
        assert!(!fa.is_fed());
        assert_eq!(feeds.first(), Some(b));
        // A sender already gone: only the splice's side is left to cut.
        assert!(unlink(&mut feeds, None, b));
        assert_eq!(feeds.len(), 0);
    }
}
