//! What every part of the proactor acts through: the ring (the backend,
//! io_uring or epoll) to submit on, the buffer pool, and the events the next `poll` reports.

use std::rc::Rc;

use crate::buffers::{Buf, Lent, Pool};
use crate::error::Error;
use crate::event::{Item, Owned};
use crate::ring::{BackendInUse, Ring};
use crate::token::{Receiver, Token};

#[derive(Debug)]
pub(super) struct Io {
    pub(super) ring: Ring,
    /// Which backend `ring` is, and why.
    pub(super) backend: BackendInUse,
    pub(super) pool: Rc<Pool>,
    /// Events for the next `poll`, in the order they happened.
    pub(super) pending: Vec<Item>,
    /// Read buffers that `pending`'s data and frames are lent from.
    pub(super) pending_bufs: Lent,
    /// Bytes and errors `pending`'s events own.
    pub(super) pending_owned: Owned,
}

impl Io {
    /// Reports `buf[..len]`, read by `from`, at the next `poll`.
    #[inline]
    pub(super) fn push_data(&mut self, from: Receiver, buf: Buf, len: usize) {
        let buf = self.pending_bufs.keep(buf);
        self.pending.push(Item::Data { from, buf, len });
    }

    /// Reports `len` bytes that `from` read into provided buffer `bid` of
    /// `group`, taken off its ring (holding `held` bytes), at the next
    /// `poll`: the way a multishot read's data takes, with no `Buf` made.
    #[inline]
    pub(super) fn push_provided(
        &mut self,
        from: Receiver,
        group: u16,
        bid: u16,
        held: u32,
        len: usize,
    ) {
        let buf = self
            .pending_bufs
            .keep_provided(&self.pool, group as u8, bid, held);
        self.pending.push(Item::Data { from, buf, len });
    }

    /// Reports `error` about `token` at the next `poll`.
    pub(super) fn report_error(&mut self, token: Token, error: Error) {
        let error = self.pending_owned.error(error);
        self.pending.push(Item::Error { token, error });
    }
}
