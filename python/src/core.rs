//! One proactor and the Python streams it drives: opening them, pumping
//! writers' buffers into their senders, routing every event into the
//! stream it concerns, and closing with a report. Runs on one thread: the
//! engine's own (`engine.rs`) or an asyncio loop's (`aio.rs`). Holds no
//! Python object and never takes the GIL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringpipe::{
    Builder, CloseReason, Event, Events, FifoOptions, Proactor, Receiver, Sender, Token,
};

use crate::api;
use crate::errors::ErrSpec;
use crate::gate::Gate;
use crate::hubs::HubStream;
use crate::queue::UnitQueue;
use crate::stream::{
    CloseReport, Framing, Inbox, Phase, ReaderShared, ReaderState, WhenFull, WriterShared,
    WriterState,
};

/// Most bytes handed to a sender in one call: a pipe's default capacity.
const CHUNK: usize = 64 * 1024;
/// A sender's own queue, below which it takes more (its watermarks).
const SENDER_HIGH: usize = 256 * 1024;
const SENDER_LOW: usize = 64 * 1024;

/// How to open a writer.
#[derive(Debug, Clone)]
pub struct WriterSpec {
    pub path: String,
    pub create: bool,
    pub mode: u32,
    pub framing: Framing,
    pub max_buffer: usize,
    pub when_full: WhenFull,
    pub open_timeout: Option<Duration>,
    pub pipe_size: Option<usize>,
    pub close_timeout: Option<Duration>,
}

/// How to open a reader.
#[derive(Debug, Clone)]
pub struct ReaderSpec {
    pub path: String,
    pub create: bool,
    pub mode: u32,
    pub framing: Framing,
    pub persistent: bool,
    pub max_buffer: usize,
    pub max_frame: usize,
    pub pipe_size: Option<usize>,
}

enum Stream {
    /// A writer, and an empty buffer to swap with its full one.
    Writer(Sender, Arc<WriterShared>, UnitQueue),
    Reader(Receiver, Arc<ReaderShared>, Option<ErrSpec>),
    /// A hub's source or one of its subscribers: the hub owns the events.
    Hub,
}

/// A writer on its way out.
struct Closing {
    tx: Sender,
    /// When to give up waiting for the reader and close anyway.
    deadline: Option<Instant>,
    /// `close_after_flush` was called.
    flushing: bool,
    /// The deadline passed and `close` was called.
    forced: bool,
}

/// A proactor and the streams it drives.
pub struct Core {
    p: Proactor,
    events: Events,
    streams: HashMap<Token, Stream>,
    closing: HashMap<Token, Closing>,
    pub(crate) hubs: Vec<HubStream>,
    pub inbox: Arc<Inbox>,
    /// Streams whose state changed in the last turn (the asyncio side
    /// wakes their waiters).
    pub woken: Vec<Token>,
    /// Stop once every stream is closed (the engine's shutdown).
    pub quit: bool,
}

impl Core {
    /// A core on a proactor from `builder`; with a notifier when other
    /// threads hand it work.
    pub fn new(builder: Builder, notified: bool) -> Result<Core, ErrSpec> {
        let mut p = builder.build()?;
        let inbox = Arc::new(Inbox::default());
        if notified {
            let _ = inbox.notifier.set(p.notifier()?);
        }
        Ok(Core {
            p,
            events: Events::with_capacity(1024),
            streams: HashMap::new(),
            closing: HashMap::new(),
            hubs: Vec::new(),
            inbox,
            woken: Vec::new(),
            quit: false,
        })
    }

    pub fn proactor(&mut self) -> &mut Proactor {
        &mut self.p
    }

    /// The ring's fd, for an event loop to watch (a ring without
    /// DEFER_TASKRUN only).
    pub fn fd(&self) -> Result<i32, ErrSpec> {
        Ok(std::os::fd::AsRawFd::as_raw_fd(&self.p.nest_fd()?))
    }

    /// Streams still open (or closing).
    pub fn live(&self) -> usize {
        self.streams.len()
    }

    pub fn open_writer(&mut self, spec: WriterSpec) -> Result<Arc<WriterShared>, ErrSpec> {
        // The sender holds no more than the writer's own bound.
        let high = SENDER_HIGH.min(spec.max_buffer).max(1);
        let mut opts = FifoOptions::new()
            .create(spec.create)
            .mode(spec.mode)
            .watermarks(high, SENDER_LOW.min(high / 4));
        if let Some(t) = spec.open_timeout {
            opts = opts.open_timeout(t);
        }
        if let Some(size) = spec.pipe_size {
            opts = opts.pipe_size(size);
        }
        let tx = self.p.open_sender(&spec.path, &opts)?;
        let state = WriterState::new(tx.token(), spec.framing, spec.max_buffer, spec.when_full);
        let shared = Arc::new(WriterShared {
            path: spec.path,
            framing: spec.framing,
            gate: Gate::new(state),
            inbox: Arc::clone(&self.inbox),
            close_timeout: spec.close_timeout,
        });
        self.streams.insert(
            tx.token(),
            Stream::Writer(tx, Arc::clone(&shared), UnitQueue::default()),
        );
        Ok(shared)
    }

    pub fn open_reader(&mut self, spec: ReaderSpec) -> Result<Arc<ReaderShared>, ErrSpec> {
        let mut opts = FifoOptions::new()
            .create(spec.create)
            .mode(spec.mode)
            .persistent(spec.persistent);
        if let Some(codec) = spec.framing.codec() {
            opts = opts.frames(codec, spec.max_frame);
        }
        if let Some(size) = spec.pipe_size {
            opts = opts.pipe_size(size);
        }
        let rx = self.p.open_receiver(&spec.path, &opts)?;
        let state = ReaderState::new(rx.token(), spec.framing, spec.max_buffer);
        let shared = Arc::new(ReaderShared {
            path: spec.path,
            gate: Gate::new(state),
            inbox: Arc::clone(&self.inbox),
        });
        self.streams
            .insert(rx.token(), Stream::Reader(rx, Arc::clone(&shared), None));
        Ok(shared)
    }

    /// The hub at `index` and the proactor, to work on both.
    pub(crate) fn hub_parts(
        &mut self,
        index: usize,
    ) -> Option<(&mut crate::hubs::HubStream, &mut Proactor)> {
        self.hubs.get_mut(index).map(|h| (h, &mut self.p))
    }

    /// Makes a writer of a sender already open on this proactor.
    pub(crate) fn adopt_writer(
        &mut self,
        tx: Sender,
        path: &str,
        framing: Framing,
        max_buffer: usize,
        when_full: WhenFull,
    ) -> Arc<WriterShared> {
        let state = WriterState::new(tx.token(), framing, max_buffer, when_full);
        let shared = Arc::new(WriterShared {
            path: path.to_string(),
            framing,
            gate: Gate::new(state),
            inbox: Arc::clone(&self.inbox),
            close_timeout: None,
        });
        self.streams.insert(
            tx.token(),
            Stream::Writer(tx, Arc::clone(&shared), UnitQueue::default()),
        );
        shared
    }

    /// Registers a transport a hub owns, so its events go to the hub.
    pub(crate) fn adopt(&mut self, token: Token) {
        self.streams.insert(token, Stream::Hub);
    }

    /// Closes a writer once everything it was given has been read, or at
    /// `timeout` whatever is left (`Some(ZERO)`: now).
    pub fn close_writer(&mut self, token: Token, timeout: Option<Duration>) {
        let Some(Stream::Writer(tx, ..)) = self.streams.get(&token) else {
            return;
        };
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let tx = *tx;
        let entry = self.closing.entry(token).or_insert(Closing {
            tx,
            deadline,
            flushing: false,
            forced: false,
        });
        // A second close may only bring the deadline closer.
        entry.deadline = match (entry.deadline, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.pump(token);
        self.check_deadlines();
    }

    /// Closes a reader now; bytes it had read are dropped with it.
    pub fn close_reader(&mut self, token: Token) {
        if let Some(Stream::Reader(rx, ..)) = self.streams.get(&token) {
            let _ = self.p.close(*rx);
        }
    }

    /// Closes every stream: writers after flushing for up to their own
    /// close timeout (capped at `limit`), readers now.
    pub fn close_all(&mut self, limit: Duration) {
        let tokens: Vec<Token> = self.streams.keys().copied().collect();
        for token in tokens {
            match self.streams.get(&token) {
                Some(Stream::Writer(_, w, _)) => {
                    let t = w.close_timeout.map_or(limit, |t| t.min(limit));
                    w.gate.lock().closing = true;
                    self.close_writer(token, Some(t));
                }
                Some(Stream::Reader(..)) => {
                    if let Some(Stream::Reader(_, r, _)) = self.streams.get(&token) {
                        r.gate.lock().closed = true;
                    }
                    self.close_reader(token);
                }
                Some(Stream::Hub) | None => {}
            }
        }
        crate::hubs::close_all(self, limit);
    }

    /// When the nearest close deadline falls, if any.
    fn next_deadline(&self) -> Option<Instant> {
        let closes = self.closing.values().filter_map(|c| c.deadline);
        closes.chain(crate::hubs::deadlines(self)).min()
    }

    /// Whether the inbox holds anything.
    pub fn has_inbox(&self) -> bool {
        !lock(&self.inbox.dirty).is_empty() || !lock(&self.inbox.commands).is_empty()
    }

    /// Runs what Python threads left in the inbox: commands, then streams
    /// to pump or resume.
    pub fn take_inbox(&mut self) {
        let commands = std::mem::take(&mut *lock(&self.inbox.commands));
        for command in commands {
            command(self);
        }
        let dirty = std::mem::take(&mut *lock(&self.inbox.dirty));
        for token in dirty {
            self.service(token);
        }
    }

    /// One turn: the inbox, then one poll (up to `timeout`, or the next
    /// close deadline), then every event routed.
    pub fn turn(&mut self, timeout: Option<Duration>) -> Result<(), ErrSpec> {
        self.take_inbox();
        self.check_deadlines();
        if self.quit && self.live() == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let until_deadline = self
            .next_deadline()
            .map(|d| d.saturating_duration_since(now));
        let timeout = match (timeout, until_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.p.poll(&mut self.events, timeout)?;
        self.route();
        crate::hubs::after_poll(self);
        self.check_deadlines();
        Ok(())
    }

    /// Ends every stream with `error` (the proactor itself failed).
    pub fn fail_all(&mut self, error: &ErrSpec) {
        for (_, stream) in self.streams.drain() {
            match stream {
                Stream::Writer(_, w, _) => {
                    let mut st = w.gate.lock();
                    st.error = Some(error.clone());
                    st.phase = Phase::Closed;
                    let unsent = st.queue.take_all();
                    st.report = Some(CloseReport {
                        unsent,
                        written: st.written,
                        reason: "error",
                        error: Some(error.clone()),
                        ..CloseReport::default()
                    });
                    drop(st);
                    w.gate.notify();
                }
                Stream::Reader(_, r, _) => {
                    r.gate.lock().error = Some(error.clone());
                    r.gate.notify();
                }
                Stream::Hub => {}
            }
        }
        crate::hubs::fail_all(self, error);
    }

    /// Hands queued work to the kernel (for a loop about to sleep).
    pub fn submit(&mut self) -> Result<(), ErrSpec> {
        self.take_inbox();
        self.p.submit()?;
        Ok(())
    }

    /// A stream on the dirty list: pump a writer, resume a reader.
    fn service(&mut self, token: Token) {
        match self.streams.get(&token) {
            Some(Stream::Writer(..)) => self.pump(token),
            Some(Stream::Reader(rx, r, _)) => {
                let rx = *rx;
                let r = Arc::clone(r);
                let mut st = r.gate.lock();
                st.dirty = false;
                if st.paused && st.resume {
                    st.paused = false;
                    st.resume = false;
                    let _ = self.p.resume(rx);
                }
            }
            Some(Stream::Hub) | None => {}
        }
    }

    /// Hands a writer's buffer to its sender, up to the sender's high
    /// watermark; starts the close once all of it is handed.
    ///
    /// The buffer is swapped out under the writer's lock and sent without
    /// it, so Python threads keep writing while the bytes are copied.
    fn pump(&mut self, token: Token) {
        let Some(Stream::Writer(tx, w, spare)) = self.streams.get_mut(&token) else {
            return;
        };
        let (tx, w) = (*tx, Arc::clone(w));
        let mut taken = std::mem::take(spare);
        let codec = {
            let mut st = w.gate.lock();
            // While no reader is there the bytes stay in the buffer, where
            // the policy can act on them.
            if st.phase != Phase::Open || st.refused || st.error.is_some() {
                None
            } else {
                std::mem::swap(&mut st.queue, &mut taken);
                st.in_hand = taken.len() as u64;
                Some(st.framing.codec())
            }
        };
        let mut sent = 0u64;
        let mut outcome = Ok(());
        if let Some(codec) = codec {
            while !taken.is_empty() {
                let chunk = taken.front(CHUNK, codec.is_some());
                let n = chunk.len();
                match api::send(&mut self.p, tx, codec, chunk) {
                    Ok(()) => {
                        taken.consume(n);
                        sent += n as u64;
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
        let mut st = w.gate.lock();
        if !taken.is_empty() {
            // Refused: what is left goes back in front of what came since.
            taken.append(&st.queue);
            std::mem::swap(&mut st.queue, &mut taken);
        }
        taken.clear();
        st.in_hand = 0;
        st.handed += sent;
        match outcome {
            Err(ringpipe::Error::WouldBlock { .. }) => st.refused = true,
            Err(e) => st.error = Some(ErrSpec::from(&e).with_path(&w.path)),
            Ok(()) => {}
        }
        // `dirty` says the engine will look at this buffer again by itself:
        // a completion is coming (bytes sent, `Writable`, a reader's
        // arrival), so writes need not wake it. Only an idle, open writer
        // needs the next write's kick.
        let idle = sent == 0 && st.phase == Phase::Open && !st.refused && st.error.is_none();
        st.dirty = !idle;
        let all_handed = st.queue.is_empty();
        drop(st);
        if let Some(Stream::Writer(_, _, spare)) = self.streams.get_mut(&token) {
            *spare = taken;
        }
        if sent > 0 {
            w.gate.notify();
            self.woken.push(token);
        }
        if all_handed
            && let Some(c) = self.closing.get_mut(&token)
            && !c.flushing
        {
            c.flushing = true;
            if self.p.close_after_flush(c.tx).is_err() {
                let _ = self.p.close(c.tx);
            }
        }
    }

    /// Forces the close of writers whose deadline passed.
    fn check_deadlines(&mut self) {
        let now = Instant::now();
        for c in self.closing.values_mut() {
            if c.deadline.is_some_and(|d| now >= d) {
                c.deadline = None;
                c.forced = true;
                let _ = self.p.close(c.tx);
            }
        }
        crate::hubs::check_deadlines(self, now);
    }

    /// Every event of the last poll into the state of its stream.
    fn route(&mut self) {
        let mut writable = Vec::new();
        let mut ended = Vec::new();
        let Core {
            p,
            events,
            streams,
            closing,
            woken,
            hubs,
            ..
        } = self;
        let mut events = events.iter().peekable();
        while let Some(event) = events.next() {
            let token = event.token();
            match streams.get_mut(&token) {
                Some(Stream::Writer(_, w, _)) => {
                    let (done, more) = writer_event(w, &event, closing);
                    if more {
                        writable.push(token);
                    }
                    if done {
                        ended.push(token);
                    }
                }
                Some(Stream::Reader(rx, r, last)) => {
                    // One read's frames come back to back: one lock for all.
                    let mut st = r.gate.lock();
                    let mut closed = reader_event(&mut st, &r.path, last, &event);
                    while let Some(next) = events.next_if(|e| e.token() == token) {
                        closed |= reader_event(&mut st, &r.path, last, &next);
                    }
                    // A full buffer stops reading: the writers feel the pipe fill.
                    if !st.paused && !closed && st.data.len() >= st.max_buffer {
                        st.paused = true;
                        let _ = p.pause(*rx);
                    }
                    drop(st);
                    r.gate.notify();
                    if closed {
                        ended.push(token);
                    }
                }
                Some(Stream::Hub) => {
                    if matches!(event, Event::Closed { .. }) {
                        ended.push(token);
                    }
                    crate::hubs::event(hubs, p, event);
                }
                None => continue,
            }
            if woken.last() != Some(&token) {
                woken.push(token);
            }
        }
        for token in ended {
            self.streams.remove(&token);
            self.closing.remove(&token);
        }
        writable.dedup();
        for token in writable {
            self.pump(token);
        }
    }
}

/// A writer's event; returns (closed, pump again).
fn writer_event(
    w: &WriterShared,
    event: &Event<'_>,
    closing: &HashMap<Token, Closing>,
) -> (bool, bool) {
    let mut st = w.gate.lock();
    let mut result = (false, false);
    match event {
        Event::Opened(_) => {
            st.phase = Phase::Open;
            result.1 = true;
        }
        Event::Sent { bytes, .. } => {
            st.written += *bytes as u64;
            // Bytes written meanwhile wait for this pump (no kick came);
            // with none, and none in flight, the next write kicks.
            result.1 = !st.queue.is_empty();
            if !result.1 && st.handed == st.written {
                st.dirty = false;
            }
            if st.pending() > 0 {
                return result; // nobody waits for a partial write
            }
        }
        Event::Writable(_) => {
            st.refused = false;
            result.1 = true;
        }
        Event::PeerGone(_) => st.phase = Phase::PeerGone,
        Event::PeerBack(_) => {
            st.phase = Phase::Open;
            st.reconnects += 1;
            result.1 = true;
        }
        Event::Error { error, .. } => {
            st.error = Some(ErrSpec::from(*error).with_path(&w.path));
        }
        Event::Closed { reason, unsent, .. } => {
            let mut all = unsent.to_vec();
            all.extend_from_slice(st.queue.as_slice());
            st.queue.take_all();
            st.phase = Phase::Closed;
            st.closing = true;
            let forced = closing.get(&st.token).is_some_and(|c| c.forced);
            st.report = Some(CloseReport {
                unsent: all,
                written: st.written,
                delivered: *reason == CloseReason::Flushed,
                dropped_writes: st.dropped_writes,
                dropped_bytes: st.dropped_bytes,
                reason: close_reason(*reason, forced),
                error: st.error.clone(),
            });
            result.0 = true;
        }
        _ => return result,
    }
    drop(st);
    w.gate.notify();
    result
}

/// A reader's event, its state locked; returns whether it closed.
fn reader_event(
    st: &mut ReaderState,
    path: &str,
    last_error: &mut Option<ErrSpec>,
    event: &Event<'_>,
) -> bool {
    match event {
        Event::Data { data, .. } => {
            st.data.push(&[data]);
            st.bytes_read += data.len() as u64;
        }
        Event::Frame { frame, .. } => {
            st.data.push(&[frame]);
            st.bytes_read += frame.len() as u64;
        }
        Event::PeerGone(_) => st.phase = Phase::PeerGone,
        Event::PeerBack(_) => {
            st.phase = Phase::Open;
            st.reconnects += 1;
        }
        Event::Error { error, .. } => {
            // A writer leaving mid-frame is not fatal to a persistent
            // reader: only a `Closed` that follows makes it so.
            if matches!(error, ringpipe::Error::Frame { .. }) {
                st.broken_frames += 1;
            }
            *last_error = Some(ErrSpec::from(*error).with_path(path));
        }
        Event::Closed { reason, .. } => {
            match reason {
                CloseReason::Eof => st.eof = true,
                CloseReason::Error => {
                    st.error = last_error.take().or_else(|| {
                        Some(ErrSpec::new(crate::errors::Kind::Os, "read failed").with_path(path))
                    });
                }
                _ => st.closed = true,
            }
            st.phase = Phase::Closed;
            return true;
        }
        _ => {}
    }
    false
}

fn close_reason(reason: CloseReason, forced: bool) -> &'static str {
    match reason {
        CloseReason::Flushed => "flushed",
        CloseReason::Requested if forced => "timeout",
        CloseReason::Requested => "requested",
        CloseReason::Error => "error",
        CloseReason::Eof => "eof",
        CloseReason::PeerGone => "reader_gone",
        _ => "closed",
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
