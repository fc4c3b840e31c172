//! The strategy of several destinations: a round moves the same `len`
//! bytes to every one, TEE (copy without consuming) to each but the last,
//! linked, then SPLICE (move) to the last, which consumes them from the
//! source. `len` is at most what the source holds and what every
//! destination has room for. If the kernel still moves less somewhere
//! (pipe slots, a reader leaving), the difference is read out of the
//! source once and queued to the destinations that fell short, so every
//! destination gets exactly the same bytes, once, in order; the next round
//! waits until those queues are written.

use std::io;
use std::os::fd::BorrowedFd;

use nix::fcntl::{FcntlArg, fcntl};

use super::SPLICE_LEN;
use crate::proactor::{ECANCELED, ERESTARTSYS};
use crate::ring::{FileRef, OpId, Ring, UserData};
use crate::token::Token;

/// A round in flight: each move with its destination and, once
/// completed, its result.
#[derive(Debug, Default)]
pub(in crate::proactor) struct Round {
    moves: Vec<(OpId, Token, Option<i32>)>,
    len: u32,
}

/// How many bytes the next round moves.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::proactor) enum Size {
    Bytes(u32),
    /// This destination has no room: wait for some first.
    Full(Token),
}

/// What a completed round moved.
#[derive(Debug)]
pub(in crate::proactor) struct Settled {
    /// Bytes each destination got, in order.
    pub(in crate::proactor) moved: Vec<(Token, usize)>,
    /// Destinations whose reader left (EPIPE): they got nothing.
    pub(in crate::proactor) gone: Vec<Token>,
    /// Bytes the final SPLICE took out of the source.
    pub(in crate::proactor) consumed: usize,
    /// What every destination ends the round with: the most any got.
    pub(in crate::proactor) target: usize,
}

/// The next round's length: what the source holds (`available`, at most
/// [`SPLICE_LEN`]) and every destination has room for, or the (last)
/// destination that has none.
pub(in crate::proactor) fn size<'a>(
    available: usize,
    dests: impl Iterator<Item = (Token, BorrowedFd<'a>)>,
) -> Size {
    let mut len = available.min(SPLICE_LEN as usize);
    let mut full = None;
    for (d, fd) in dests {
        let size = fcntl(fd, FcntlArg::F_GETPIPE_SZ).unwrap_or(0) as usize;
        let room = size.saturating_sub(crate::fifo::pipe_bytes(fd).unwrap_or(size));
        if room == 0 {
            full = Some(d);
        }
        len = len.min(room);
    }
    match full {
        Some(d) => Size::Full(d),
        None => Size::Bytes(len as u32),
    }
}

impl Round {
    /// Submits a round of `len` bytes from `src` to `dests` (whose files
    /// `file` gives), in one submission: TEE to each but the last, SPLICE
    /// to the last, each linked to the next.
    pub(in crate::proactor) fn submit(
        ring: &mut Ring,
        src: FileRef,
        dests: &[Token],
        file: impl Fn(Token) -> Option<FileRef>,
        len: u32,
        data: UserData,
    ) -> io::Result<Round> {
        ring.reserve(dests.len())?;
        let last = dests.len().saturating_sub(1);
        let mut moves = Vec::with_capacity(dests.len());
        for (i, d) in dests.iter().enumerate() {
            // Destinations are open senders (`dests_ready`): each has one.
            let to = file(*d).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
            let op = ring.tee_or_splice(i < last, src, to, len, i < last, data)?;
            moves.push((op, *d, None));
        }
        Ok(Round { moves, len })
    }

    /// Moves submitted and not completed.
    pub(in crate::proactor) fn ops(&self) -> usize {
        self.moves.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    pub(super) fn unfinished(&self) -> impl Iterator<Item = OpId> + '_ {
        self.moves
            .iter()
            .filter(|(_, _, r)| r.is_none())
            .map(|(op, _, _)| *op)
    }

    /// Move `op` completed with `result`. Once every move has, the round
    /// is over: what it moved, or the result of a move that failed.
    pub(in crate::proactor) fn complete(
        &mut self,
        op: OpId,
        result: i32,
    ) -> Option<Result<Settled, i32>> {
        if let Some(slot) = self.moves.iter_mut().find(|(o, _, _)| *o == op) {
            slot.2 = Some(result);
        }
        if self.moves.iter().any(|(_, _, r)| r.is_none()) {
            return None;
        }
        let moves = std::mem::take(&mut self.moves);
        let len = self.len as usize;
        let failed = moves.iter().find_map(|(_, _, r)| {
            r.filter(|r| {
                *r < 0 && ![-libc::EPIPE, -libc::EAGAIN, ECANCELED, ERESTARTSYS].contains(r)
            })
        });
        if let Some(r) = failed {
            return Some(Err(r));
        }
        let moved: Vec<(Token, usize)> = moves
            .iter()
            .map(|(_, d, r)| (*d, r.unwrap_or(0).max(0) as usize))
            .collect();
        let gone = moves
            .iter()
            .filter(|(_, _, r)| *r == Some(-libc::EPIPE))
            .map(|(_, d, _)| *d)
            .collect();
        // The splice to the last destination consumed its bytes; the
        // round is complete at the most any destination got.
        let consumed = moved.last().map_or(0, |(_, n)| *n);
        let target = moved.iter().map(|(_, n)| *n).max().unwrap_or(0).min(len);
        Some(Ok(Settled {
            moved,
            gone,
            consumed,
            target,
        }))
    }
}

/// Reads the `n` bytes some destinations lack out of the source: they are
/// in the pipe (tees do not consume), so this returns at once. The error
/// is a negative errno.
pub(in crate::proactor) fn read_rest(src: BorrowedFd<'_>, n: usize) -> Result<Vec<u8>, i32> {
    let mut rest = vec![0u8; n];
    if n > 0 {
        match nix::unistd::read(src, &mut rest) {
            Ok(got) if got == n => {}
            Ok(_) => return Err(-libc::EIO),
            Err(e) => return Err(-(e as i32)),
        }
    }
    Ok(rest)
}
