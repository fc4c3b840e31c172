//! Single-shot reads: into a buffer the kernel picks from the provided
//! ring when data is there, or into a registered buffer while a receiver
//! streams; delivery as Data or frames; EOF and the persistent receiver's
//! reopen.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use super::registry::{ReadPath, Role};
use super::{ECANCELED, ERESTARTSYS, Proactor};
use crate::buffers::{Buf, SELECT_GROUP};
use crate::error::Error;
use crate::event::{CloseReason, FrameBytes, Item};
use crate::fifo::{self};
use crate::ring::{Completion, OpId, Purpose};
use crate::token::{Receiver, Token};
use crate::transport::{Input, State};

/// A read of at least this many bytes marks a receiver as streaming: its
/// next read takes a registered buffer of its own if one is free (one
/// `READ_FIXED` can then empty a full pipe), where other reads share the
/// provided ring. A read that fills a whole buffer of that ring is one.
const STREAMING: usize = crate::buffers::SELECT_BUF_MAX;

impl Proactor {
    pub(super) fn arm_read(&mut self, idx: usize) {
        self.arm_read_sized(idx, 0);
    }

    /// Arms the read a receiver lacks; `last` is the size of its read that
    /// just completed (0 if none).
    ///
    /// A single-shot read waits for data without a buffer: the kernel
    /// picks one from the provided ring when the data is there (a waiting
    /// read gives it back on -EAGAIN), so however many receivers wait, none
    /// holds memory, and the bytes land with no extra round trip. A
    /// receiver that streams (its last read was large) reads into a
    /// registered buffer while one is free. Without a provided ring: a
    /// registered buffer if one is free, else a poll for data first.
    fn arm_read_sized(&mut self, idx: usize, last: usize) {
        // Delivering may have failed the transport and freed its slot.
        let Some(t) = self.transports.get(idx) else {
            return;
        };
        if t.state == State::Closing {
            return;
        }
        let (Some(file), Some(fd)) = (t.file(), t.fd.as_ref()) else {
            return;
        };
        let Role::Receiver {
            paused,
            splice,
            path,
            read,
            poll,
            ..
        } = &t.role
        else {
            return;
        };
        match (paused, splice, path) {
            (true, _, _) => return,
            (false, Some(_), _) => return self.arm_splice(idx),
            (false, None, ReadPath::Multishot { .. }) => return self.arm_multishot(idx),
            // One still in flight (being cancelled, say) re-arms when it
            // completes: a second beside it would be left uncancelled.
            (false, None, ReadPath::Fixed | ReadPath::Draining)
                if read.is_some() || poll.is_some() =>
            {
                return;
            }
            (false, None, ReadPath::Fixed | ReadPath::Draining) => {}
        }
        let raw = fd.as_raw_fd();
        let owner = t.token.to_owner();
        let streaming = last >= STREAMING.min(self.pool.provided_size(SELECT_GROUP).max(1));
        let fixed = match streaming || !self.multishot_ok {
            true => self.pool.take_fixed(),
            false => None,
        };
        if fixed.is_none() && self.multishot_ok {
            let len = self.pool.provided_size(SELECT_GROUP) as u32;
            let read = self.ring.read_select(file, len, owner).map(Some);
            return self.record_recv_ops(idx, read, Ok(None));
        }
        // No free registered buffer: wait for data without holding memory,
        // then read into whatever buffer is free at that moment.
        let (read, poll) = match fixed {
            Some(buf) => (self.ring.read(file, buf, owner).map(Some), Ok(None)),
            None => (
                Ok(None),
                self.ring
                    .poll_add(raw, libc::POLLIN as u32, owner, Purpose::ReadPoll)
                    .map(Some),
            ),
        };
        self.record_recv_ops(idx, read, poll);
    }

    pub(super) fn arm_read_now(&mut self, idx: usize) {
        let t = &self.transports[idx];
        let Some(file) = t.file() else { return };
        if matches!(t.role, Role::Receiver { paused: true, .. }) {
            return;
        }
        let owner = t.token.to_owner();
        let read = self.ring.read(file, self.pool.take(), owner).map(Some);
        self.record_recv_ops(idx, read, Ok(None));
    }

    pub(super) fn arm_read_poll(&mut self, idx: usize) {
        let t = &self.transports[idx];
        let Some(fd) = t.fd.as_ref() else { return };
        let poll = self.ring.poll_add(
            fd.as_raw_fd(),
            libc::POLLIN as u32,
            t.token.to_owner(),
            Purpose::ReadPoll,
        );
        self.record_recv_ops(idx, Ok(None), poll.map(Some));
    }

    pub(super) fn record_recv_ops(
        &mut self,
        idx: usize,
        read: io::Result<Option<OpId>>,
        poll: io::Result<Option<OpId>>,
    ) {
        match (read, poll) {
            (Ok(r), Ok(p)) => {
                let t = &mut self.transports[idx];
                t.inflight += 1;
                if let Role::Receiver { read, poll, .. } = &mut t.role {
                    *read = r;
                    *poll = p;
                }
            }
            (Err(e), _) | (_, Err(e)) => self.submit_failed(idx, e),
        }
    }

    /// The poll for data of a receiver with no registered buffer free.
    pub(super) fn on_read_poll(&mut self, idx: usize, op: OpId, result: i32) {
        let t = &mut self.transports[idx];
        let Role::Receiver { poll, .. } = &mut t.role else {
            return;
        };
        // A poll replaced by a newer one: that one decides.
        if *poll != Some(op) {
            return;
        }
        *poll = None;
        if t.state == State::Closing {
            return;
        }
        match result {
            // Cancelled by pause or relay: `arm_read` does what they want.
            ECANCELED => self.arm_read(idx),
            r if r < 0 => self.io_fail(idx, "poll", r),
            _ => self.arm_read_now(idx),
        }
    }

    pub(super) fn on_read(&mut self, idx: usize, c: Completion) {
        let result = c.result;
        // A buffer from the provided ring: taken first, so one dropped
        // unused goes back.
        let provided = c.provided.and_then(|bid| {
            self.pool
                .take_provided(SELECT_GROUP, bid, result, c.buf_more)
        });
        let buf = c.buf.or(provided);
        let t = &mut self.transports[idx];
        if let Role::Receiver { read, .. } = &mut t.role {
            *read = None;
        }
        let closing = t.state == State::Closing;
        match (result, buf) {
            // The kernel took these bytes out of the pipe: they reach the
            // user even if the read's cancel came too late (close, pause).
            (n, Some(buf)) if n > 0 => {
                self.deliver(idx, buf, n as usize);
                self.arm_read_sized(idx, n as usize);
            }
            (n, None) if n > 0 => self.io_fail(idx, "read (no buffer)", -libc::EIO),
            _ if closing => {}
            (0, _) => self.on_eof(idx),
            // EAGAIN: only a read of a non-blocking end that may not wait;
            // ENOBUFS: the provided ring is empty (its buffers are lent in
            // events until the next poll). Wait for data, then read into
            // whatever buffer is free.
            (r, _) if r == -libc::EAGAIN || r == -libc::ENOBUFS => self.arm_read_poll(idx),
            (r, _) if r == ECANCELED || r == ERESTARTSYS || r == -libc::EINTR => self.arm_read(idx),
            (r, _) => self.io_fail(idx, "read", r),
        }
    }

    /// Hands `buf[..n]` read by a receiver to the user, or to the sender it
    /// relays to (bytes read just before the relay began go first).
    pub(super) fn deliver(&mut self, idx: usize, buf: Buf, n: usize) {
        let t = &mut self.transports[idx];
        let Role::Receiver {
            bytes_read, splice, ..
        } = &mut t.role
        else {
            return;
        };
        *bytes_read += n as u64;
        let forward: Vec<Token> = splice.as_ref().map_or(Vec::new(), |s| s.to.clone());
        if !forward.is_empty() {
            let pool = Rc::clone(&self.pool);
            let from = Receiver(t.token);
            for to in forward {
                let to = to.index as usize;
                self.transports[to]
                    .sender()
                    .push_relayed(&pool, from, &buf.as_slice()[..n]);
                self.pump(to);
            }
        } else if self.deliver_frames(idx, buf, n) {
            return;
        }
        self.apply(idx, Input::PeerReady);
    }

    /// Reports `buf[..n]` as Data, or as the frames it completes if the
    /// receiver decodes frames. Returns true if it failed the transport.
    pub(super) fn deliver_frames(&mut self, idx: usize, buf: Buf, n: usize) -> bool {
        let Proactor {
            transports,
            pending,
            pending_bufs,
            ..
        } = self;
        let t = &mut transports[idx];
        let (token, from) = (t.token, Receiver(t.token));
        let name = t.path.as_deref();
        let Role::Receiver {
            decoder: Some(decoder),
            ..
        } = &mut t.role
        else {
            pending.push(Item::Data { from, buf, len: n });
            return false;
        };
        // A stream that broke at a bad frame has no frames left to give;
        // its error is reported once, and the receiver is closing.
        if decoder.is_failed() {
            return false;
        }
        // The batch keeps the buffer; its frames name it by index.
        let index = pending_bufs.len() as u32;
        pending_bufs.push(buf);
        let chunk = &pending_bufs[index as usize].as_slice()[..n];
        let base = chunk.as_ptr() as usize;
        let decoded = decoder.feed(chunk, |frame| {
            let at = (frame.as_ptr() as usize).wrapping_sub(base);
            // Lent if it lies inside this read, copied if it was split
            // (or lies beyond what a u32 offset names: buffers over 4 GiB).
            let lendable = u32::try_from(n).is_ok();
            let frame = if lendable && !frame.is_empty() && at < n && at + frame.len() <= n {
                FrameBytes::Lent {
                    buf: index,
                    start: at as u32,
                    end: (at + frame.len()) as u32,
                }
            } else {
                FrameBytes::Owned(frame.to_vec())
            };
            t.counters.frame_in();
            pending.push(Item::Frame { from, frame });
        });
        let path = name.map(Path::to_path_buf);
        match decoded {
            Ok(()) => false,
            // Bytes read while closing are still reported, bad ones too.
            Err(source) if self.transports[idx].state == State::Closing => {
                let error = Error::Frame {
                    token,
                    path,
                    source,
                };
                self.pending.push(Item::Error {
                    token,
                    error: Box::new(error),
                });
                false
            }
            Err(source) => {
                let error = Error::Frame {
                    token,
                    path,
                    source,
                };
                self.fail(idx, error);
                true
            }
        }
    }

    /// Every writer closed. Never re-arm a read on this fd: on a FIFO it
    /// would return 0 again at once, thousands of times a second. A
    /// persistent receiver opens a fresh read end instead (before closing
    /// the old one, so the pipe and anything written meanwhile survive),
    /// whose read waits quietly for the next writer.
    pub(super) fn on_eof(&mut self, idx: usize) {
        // A writer that left inside a frame: reported; a persistent receiver
        // drops the partial frame and goes on, a one-shot one fails.
        let t = &mut self.transports[idx];
        let token = t.token;
        if let Role::Receiver {
            decoder: Some(decoder),
            persistent,
            ..
        } = &mut t.role
            && let Err(source) = decoder.finish()
        {
            let path = t.path.as_deref().map(Path::to_path_buf);
            let error = Error::Frame {
                token,
                path,
                source,
            };
            if !*persistent {
                return self.fail(idx, error);
            }
            self.pending.push(Item::Error {
                token,
                error: Box::new(error),
            });
        }
        self.apply(idx, Input::PeerLeft);
        let t = &self.transports[idx];
        let persistent = matches!(
            t.role,
            Role::Receiver {
                persistent: true,
                ..
            }
        );
        let reopened = match (&t.anchor, persistent) {
            (Some(anchor), true) => Some(fifo::open_reader(anchor)),
            _ => None,
        };
        match reopened {
            None => self.begin_close(idx, CloseReason::Eof),
            Some(Ok(fd)) => {
                let t = &mut self.transports[idx];
                if let Role::Receiver { path, .. } = &mut t.role {
                    // Nothing may keep watching the old fd.
                    let old_hup = path.hup();
                    // The new read end waits quietly, multishot or not.
                    if *path != ReadPath::Fixed {
                        *path = ReadPath::Multishot { hup: None };
                    }
                    self.cancel(idx, [old_hup]);
                }
                if let Some(slot) = self.transports[idx].fixed.take() {
                    let _ = self.ring.unregister_file(slot);
                }
                drop(self.transports[idx].fd.take());
                self.install_fd(idx, fd);
                self.arm_read(idx);
            }
            Some(Err(e)) => {
                let path = self.transports[idx].path_buf();
                self.fail(idx, fifo::open_error(&path, e));
            }
        }
    }
}
