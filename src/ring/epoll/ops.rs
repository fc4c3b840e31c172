//! The epoll backend's side of the boundary: each call the proactor
//! makes, as the io_uring backend has it. Operations are queued here and
//! performed at the next enter (`mod.rs`); the rest are the file table,
//! the provided rings' pool, and what the proactor asks about the backend.

use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use super::perform::Work;
use super::{Epoll, IN, OUT, sys};
use crate::buffers::{Buf, PROVIDED_GROUP, Pool, SELECT_GROUP};
use crate::ring::{FileRef, OpId, UserData};

impl Epoll {
    pub(crate) fn read(&mut self, file: FileRef, buf: Buf, data: UserData) -> io::Result<OpId> {
        let work = match self.resolve(file) {
            Some((fd, plain)) => Work::Read { fd, plain },
            None => Work::BadFile,
        };
        Ok(self.push(work, data, Some(buf), false))
    }

    pub(crate) fn write(
        &mut self,
        file: FileRef,
        buf: Buf,
        range: Range<usize>,
        data: UserData,
        link: bool,
    ) -> io::Result<OpId> {
        assert!(range.start <= range.end && range.end <= buf.capacity());
        let work = match self.resolve(file) {
            Some((fd, plain)) => Work::Write { fd, plain, range },
            None => Work::BadFile,
        };
        Ok(self.push(work, data, Some(buf), link))
    }

    pub(crate) fn poll_add(&mut self, fd: RawFd, mask: u32, data: UserData) -> io::Result<OpId> {
        Ok(self.push(Work::Poll { fd, mask }, data, None, false))
    }

    /// As [`poll_add`](Self::poll_add): this backend keeps every
    /// operation in its table.
    pub(crate) fn poll_add_untracked(
        &mut self,
        fd: RawFd,
        mask: u32,
        data: UserData,
    ) -> io::Result<OpId> {
        self.poll_add(fd, mask, data)
    }

    pub(crate) fn splice(
        &mut self,
        from: FileRef,
        to: FileRef,
        len: u32,
        after_poll: Option<(RawFd, UserData)>,
        data: UserData,
    ) -> io::Result<(Option<OpId>, OpId)> {
        let poll = after_poll
            .map(|(fd, poll_data)| self.push(Work::Poll { fd, mask: IN }, poll_data, None, true));
        let work = match (self.resolve(from), self.resolve(to)) {
            (Some((from, _)), Some((to, _))) => Work::Splice { from, to, len },
            _ => Work::BadFile,
        };
        Ok((poll, self.push(work, data, None, false)))
    }

    pub(crate) fn tee_or_splice(
        &mut self,
        tee: bool,
        from: FileRef,
        to: FileRef,
        len: u32,
        link: bool,
        data: UserData,
    ) -> io::Result<OpId> {
        let work = match (self.resolve(from), self.resolve(to)) {
            (Some((from, _)), Some((to, _))) if tee => Work::Tee { from, to, len },
            (Some((from, _)), Some((to, _))) => Work::Splice { from, to, len },
            _ => Work::BadFile,
        };
        Ok(self.push(work, data, None, link))
    }

    pub(crate) fn cancel(&mut self, target: OpId, data: UserData) -> io::Result<OpId> {
        Ok(self.push(Work::Cancel { target }, data, None, false))
    }

    pub(crate) fn read_counter(&mut self, fd: RawFd, data: UserData) -> io::Result<OpId> {
        Ok(self.push(Work::Counter { fd }, data, None, false))
    }

    pub(crate) fn timeout(&mut self, after: Duration, data: UserData) -> io::Result<OpId> {
        Ok(self.push(Work::Timeout { after }, data, None, false))
    }

    /// A read into provided buffers that goes on: a completion with
    /// `more` per read, until the ring is empty (-ENOBUFS), an error, a
    /// cancel, or end of file (a final 0, as io_uring's on an anonymous
    /// pipe).
    pub(crate) fn read_multishot(&mut self, file: FileRef, data: UserData) -> io::Result<OpId> {
        Ok(self.read_provided(file, PROVIDED_GROUP, usize::MAX, true, data))
    }

    /// A single-shot read into a buffer taken from the select ring once
    /// data is there: a waiting read holds none.
    pub(crate) fn read_select(
        &mut self,
        file: FileRef,
        len: u32,
        data: UserData,
    ) -> io::Result<OpId> {
        Ok(self.read_provided(file, SELECT_GROUP, len as usize, false, data))
    }

    fn read_provided(
        &mut self,
        file: FileRef,
        group: u16,
        len: usize,
        multishot: bool,
        data: UserData,
    ) -> OpId {
        let work = match self.resolve(file) {
            Some((fd, plain)) => Work::ReadProvided {
                fd,
                plain,
                group,
                len,
                multishot,
            },
            None => Work::BadFile,
        };
        self.push(work, data, None, false)
    }

    /// Waves are io_uring's (its 20 task-work items per enter): every
    /// completion is taken in the turn it happens here.
    pub(crate) fn set_wave(&mut self, _completions: usize) {}

    /// Batches are io_uring's: one completion ends the wait.
    pub(crate) fn submit_and_wait_batch(
        &mut self,
        _want: u32,
        _hold: Duration,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.submit_and_wait(true, timeout)
    }

    /// Buffers need no registration: reads and writes take any memory.
    pub(crate) fn register_pool(&mut self, _pool: &Rc<Pool>, _wait: bool) -> io::Result<()> {
        Ok(())
    }

    /// Reads take buffers from `pool`'s provided rings, which this
    /// backend consumes itself (no kernel holds them).
    pub(crate) fn register_provided(&mut self, pool: &Rc<Pool>) -> io::Result<bool> {
        self.provided = Some(Rc::clone(pool));
        Ok(true)
    }

    /// Takes `fd` into the file table, made `O_NONBLOCK` (its transfers
    /// then need no `RWF_NOWAIT`, which FIFOs refuse): the table says
    /// which fds are known non-blocking, from their install to the
    /// release that comes before their close. `None` when the table is
    /// configured empty or the fd's flags cannot be set.
    ///
    /// While it is in the table the fd is registered edge-triggered, once:
    /// an operation that would wait parks with no syscall, since every
    /// transfer tries first and a later edge reports what changes. This
    /// is safe only because the table knows when the fd leaves (before
    /// it closes); other fds are registered one-shot, re-armed per park.
    pub(crate) fn register_file(&mut self, fd: RawFd) -> Option<u32> {
        // No kernel table to fill here: past the configured size the table
        // grows, so every transport reads plain and parks with no syscall
        // (an fd left out would pay `RWF_NOWAIT` and `fcntl` per read and
        // an `epoll_ctl` per park). A table configured empty stays off.
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None if self.files.is_empty() => return None,
            None => {
                let slot = u32::try_from(self.files.len()).ok()?;
                self.files.push(-1);
                slot
            }
        };
        let entry = self.files.get_mut(slot as usize);
        let (Some(entry), true) = (entry, sys::set_nonblocking(fd)) else {
            self.free_slots.push(slot);
            return None;
        };
        *entry = fd;
        let events = IN | OUT | libc::EPOLLET as u32;
        let edge = sys::epoll_ctl(&self.ep, libc::EPOLL_CTL_ADD, fd, events)
            .or_else(|_| sys::epoll_ctl(&self.ep, libc::EPOLL_CTL_MOD, fd, events))
            .is_ok();
        if let Some(w) = self.waits_of(fd) {
            w.edge = edge;
            w.registered = edge;
            w.nonblocking = true;
        }
        Some(slot)
    }

    /// Empties a file table slot: its fd is about to close.
    pub(crate) fn unregister_file(&mut self, slot: u32) -> io::Result<()> {
        let Some(entry) = self.files.get_mut(slot as usize) else {
            return Ok(());
        };
        let fd = std::mem::replace(entry, -1);
        if fd < 0 {
            return Ok(());
        }
        self.free_slots.push(slot);
        if let Some(w) = self.waits_of(fd) {
            // The fd closes next: its number may come back as a blocking file.
            w.nonblocking = false;
            if std::mem::take(&mut w.edge) {
                w.registered = false;
                let _ = sys::epoll_ctl(&self.ep, libc::EPOLL_CTL_DEL, fd, 0);
            }
        }
        Ok(())
    }

    pub(crate) fn files_in_use(&self) -> usize {
        self.files.len() - self.free_slots.len()
    }

    /// The fd an operation names, and whether it is known non-blocking.
    fn resolve(&self, file: FileRef) -> Option<(RawFd, bool)> {
        match file {
            // Plain where the fd is in the file table (a multishot read
            // names its receiver's fd raw): one `read`, not three calls.
            FileRef::Raw(fd) => Some((fd, self.in_table(fd))),
            FileRef::Fixed(slot) => self
                .files
                .get(slot as usize)
                .filter(|fd| **fd >= 0)
                .map(|fd| (*fd, true)),
        }
    }

    /// `epoll_wait` calls made so far: the one syscall a turn waits in.
    pub(crate) fn enters(&self) -> u64 {
        self.waits_syscalls
    }

    pub(crate) fn has_unsubmitted(&self) -> bool {
        !self.queued.is_empty() || !self.cancels.is_empty()
    }

    pub(crate) fn is_sqpoll(&self) -> bool {
        false
    }

    pub(crate) fn is_deferred(&self) -> bool {
        false
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn unsubmitted_writes(&self) -> usize {
        0
    }

    pub(crate) fn has_min_wait(&self) -> bool {
        false
    }

    pub(crate) fn ring_fd_registered(&self) -> bool {
        false
    }

    /// The epoll fd: readable when a parked operation's fd is ready, a
    /// timeout expired, or completions wait to be taken.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.ep.as_fd()
    }

    pub(crate) fn sq_entries(&mut self) -> usize {
        self.sq_entries
    }

    /// Any chain fits: links are kept in the table, not in a queue.
    pub(crate) fn reserve(&mut self, _n: usize) -> io::Result<()> {
        Ok(())
    }

    /// Multishot and buffer-selecting reads are emulated (see
    /// `read_provided`).
    pub(crate) fn supports_read_multishot(&self) -> bool {
        true
    }

    /// No io-wq: splices and tees run on this thread.
    pub(crate) fn set_iowq_max_workers(&self, _bounded: u32, _unbounded: u32) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::ring::RingConfig;

    fn backend() -> Epoll {
        backend_of(4)
    }

    fn backend_of(files: u32) -> Epoll {
        let cfg = RingConfig {
            sq_entries: 8,
            cq_entries: 16,
            sqpoll_idle: None,
            files,
            defer_taskrun: false,
            min_wait: false,
            register_ring_fd: false,
        };
        Epoll::new(&cfg).expect("epoll")
    }

    /// A raw fd in the file table (a multishot read names its receiver's
    /// fd raw) is known non-blocking, so its transfers are one plain
    /// `read` or `write`; before it joins and once it has left, the
    /// careful path (`RWF_NOWAIT`, then `O_NONBLOCK`), as its number may
    /// come back for a blocking file.
    #[test]
    fn a_raw_fd_reads_plain_while_it_is_in_the_file_table() {
        let mut ep = backend();
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let fd = r.as_raw_fd();
        assert_eq!(ep.resolve(FileRef::Raw(fd)), Some((fd, false)));
        let slot = ep.register_file(fd).expect("a free slot");
        assert_eq!(ep.resolve(FileRef::Raw(fd)), Some((fd, true)));
        assert_eq!(ep.resolve(FileRef::Fixed(slot)), Some((fd, true)));
        // Made non-blocking as it joined: the plain read does not wait.
        let mut buf = [0u8; 8];
        assert_eq!(sys::read(fd, &mut buf, true), -libc::EAGAIN);
        ep.unregister_file(slot).expect("unregister");
        assert_eq!(ep.resolve(FileRef::Raw(fd)), Some((fd, false)));
    }

    /// The table is the backend's own: past its configured size it grows
    /// (each fd joins, read plain), and a slot freed is used again.
    #[test]
    fn the_file_table_grows_past_its_size() {
        let mut ep = backend();
        let pipes: Vec<_> = (0..6).map(|_| nix::unistd::pipe().expect("pipe")).collect();
        let slots: Vec<u32> = pipes
            .iter()
            .map(|(r, _)| ep.register_file(r.as_raw_fd()).expect("a slot"))
            .collect();
        assert_eq!(ep.files_in_use(), 6);
        for ((r, _), slot) in pipes.iter().zip(&slots) {
            assert_eq!(
                ep.resolve(FileRef::Fixed(*slot)),
                Some((r.as_raw_fd(), true))
            );
        }
        ep.unregister_file(slots[5]).expect("unregister");
        let again = ep.register_file(pipes[5].0.as_raw_fd()).expect("a slot");
        assert_eq!(again, slots[5]);
        assert_eq!(ep.files_in_use(), 6);
        // Configured empty, it stays off.
        let mut off = backend_of(0);
        assert_eq!(off.register_file(pipes[0].0.as_raw_fd()), None);
    }
}
