//! What the ring's opaque user data means to the proactor. The ring (the
//! backend) keeps a `u64` per operation and hands it back with each
//! completion; this room alone encodes and decodes it:
//!
//! - a transport's operation: its slot, 26 bits of its generation, the
//!   [`Part`] the operation serves and, for a part that can have an old
//!   operation in flight beside its replacement, which arm of it this is:
//!   `index << 32 | arm << 30 | generation << 4 | part`;
//! - the proactor's own operations: reserved ids, whose index half is
//!   `u32::MAX`, a slot no transport reaches (the same index
//!   `Event::Notified` names), checked with one comparison.

use crate::ring::UserData;
use crate::token::Token;

/// What a transport's operation is for: the part of the transport whose
/// completion handler it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Part {
    /// READ or READ_FIXED of a receiver.
    Read = 0,
    /// READ_MULTISHOT of a receiver, from the provided buffer ring.
    ReadMulti = 1,
    /// POLL of a receiver for data, before a read into whatever buffer is
    /// free then.
    ReadPoll = 2,
    /// POLL of a multishot receiver for POLLHUP: its writers left.
    HangUp = 3,
    /// WRITE or WRITE_FIXED of a sender.
    Write = 4,
    /// POLL of a sender: for room after EAGAIN, or for its reader leaving.
    WritePoll = 5,
    /// A move of a receiver spliced into senders: TEE or SPLICE.
    SpliceRound = 6,
    /// POLL of a spliced receiver: for data in the source, or room in a
    /// destination.
    SplicePoll = 7,
    /// ASYNC_CANCEL of any of the above: counted, nothing more.
    Cancel = 8,
}

const PARTS: [Part; 9] = [
    Part::Read,
    Part::ReadMulti,
    Part::ReadPoll,
    Part::HangUp,
    Part::Write,
    Part::WritePoll,
    Part::SpliceRound,
    Part::SplicePoll,
    Part::Cancel,
];

/// The generation bits an operation's user data carries. A slot is never
/// reused while an operation of it is in flight, so the check they allow
/// is a second line of defence, not the first.
/// 26 bits: the 32nd bit of the low half is the ring's (an untracked
/// operation's id), the 31st is [`ARM`].
const GENERATION_BITS: u32 = 0x03FF_FFFF;

/// The bit that tells two arms of one part of a transport apart: an
/// untracked operation's id is its user data, so an old one still in
/// flight beside its replacement must differ from it here.
const ARM: UserData = 1 << 30;

/// The index half of every reserved id.
const OWN: UserData = (u32::MAX as UserData) << 32;
/// The retry timer of senders waiting for a reader.
pub(super) const RETRY_TIMER: UserData = OWN | 1;
/// The poll on the inotify fd that sees readers open FIFOs.
pub(super) const OPEN_WATCH: UserData = OWN | 2;
/// The eventfd READ that `Notifier`s complete.
pub(super) const NOTIFY: UserData = OWN | 3;
/// A timeout of zero armed as `poll` returns with starved reads, so a loop
/// that nests the proactor sees its fd ready and polls again.
pub(super) const STARVED_WAKE: UserData = OWN | 4;
/// Crate-internal watches (`Proactor::watch_readable`): this bit and the
/// watch's number below it. Below the ring's own reserved id.
const WATCH: UserData = OWN | 1 << 30;
const WATCH_NUMBERS: u32 = (1 << 30) - 1;

/// The user data of an operation of transport `token` for `part`.
#[inline]
pub(super) fn data(token: Token, part: Part) -> UserData {
    (UserData::from(token.index) << 32)
        | (UserData::from(token.generation & GENERATION_BITS) << 4)
        | part as UserData
}

/// The user data of arm `arm` of an operation of transport `token` for
/// `part`.
#[inline]
pub(super) fn data_arm(token: Token, part: Part, arm: bool) -> UserData {
    match arm {
        true => data(token, part) | ARM,
        false => data(token, part),
    }
}

/// Which arm of its part the operation of user data `data` is.
pub(super) fn arm_of(data: UserData) -> bool {
    data & ARM != 0
}

/// The user data of crate-internal watch number `n` (taken modulo 2^30).
pub(super) fn watch(n: u32) -> UserData {
    WATCH | UserData::from(n & WATCH_NUMBERS)
}

/// Where a completion goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// To `part` of the transport in slot `index`, if it is still the
    /// one of that generation (see [`Route::names`]).
    Transport {
        index: u32,
        generation: u32,
        part: Part,
    },
    RetryTimer,
    OpenWatch,
    Notify,
    StarvedWake,
    /// Crate-internal watch number `n` fired.
    Watch(u32),
    /// Nobody's (the ring's own cancels).
    Nobody,
}

impl Route {
    #[inline]
    pub(super) fn of(data: UserData) -> Route {
        if data >= OWN {
            return match data {
                RETRY_TIMER => Route::RetryTimer,
                OPEN_WATCH => Route::OpenWatch,
                NOTIFY => Route::Notify,
                STARVED_WAKE => Route::StarvedWake,
                d if d & !UserData::from(WATCH_NUMBERS) == WATCH => {
                    Route::Watch(d as u32 & WATCH_NUMBERS)
                }
                _ => Route::Nobody,
            };
        }
        match PARTS.get((data & 0xF) as usize) {
            Some(&part) => Route::Transport {
                index: (data >> 32) as u32,
                generation: (data >> 4) as u32 & GENERATION_BITS,
                part,
            },
            None => Route::Nobody,
        }
    }

    /// Whether a transport route names the transport of `token`.
    #[inline]
    pub(super) fn names(generation: u32, token: Token) -> bool {
        token.generation & GENERATION_BITS == generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_data_round_trips() {
        for (index, generation) in [(0, 0), (7, 3), (u32::MAX - 1, u32::MAX), (5, 1 << 28)] {
            let token = Token {
                index,
                generation,
                proactor: 9,
            };
            for part in PARTS {
                let Route::Transport {
                    index: i,
                    generation: g,
                    part: p,
                } = Route::of(data(token, part))
                else {
                    panic!("not a transport route");
                };
                assert_eq!((i, p), (index, part));
                assert!(Route::names(g, token));
                for arm in [false, true] {
                    let d = data_arm(token, part, arm);
                    assert_eq!(arm_of(d), arm);
                    assert_eq!(d & 1 << 31, 0, "the ring's untracked bit");
                    let Route::Transport {
                        index: i,
                        generation: g,
                        part: p,
                    } = Route::of(d)
                    else {
                        panic!("not a transport route");
                    };
                    assert_eq!((i, p), (index, part));
                    assert!(Route::names(g, token));
                }
            }
        }
    }

    #[test]
    fn reserved_ids_are_nobody_elses() {
        assert_eq!(Route::of(RETRY_TIMER), Route::RetryTimer);
        assert_eq!(Route::of(OPEN_WATCH), Route::OpenWatch);
        assert_eq!(Route::of(NOTIFY), Route::Notify);
        assert_eq!(Route::of(watch(5)), Route::Watch(5));
        assert_eq!(Route::of(watch(u32::MAX)), Route::Watch(WATCH_NUMBERS));
        assert_eq!(Route::of(crate::ring::SHUTDOWN), Route::Nobody);
    }
}
