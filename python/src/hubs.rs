//! `ringpipe.Hub` on the engine: frames published from Python fanned out
//! to FIFO subscribers, each with its own bounded queue (ringpipe's
//! `hub::Hub`).
//!
//! Python publishes through a writer like any other, whose FIFO is an
//! anonymous pipe that the hub reads as its source: so publishing has the
//! writer's bounded buffer and policy, and a hub that pauses its source
//! (`when_full="pause"`) holds the publisher back. (`hub_source` is the
//! one place to change if the hub takes frames from the caller directly.)

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ringpipe::hub::{Full, Hub, HubEvent, HubOptions, SubscriberStats};
use ringpipe::{Event, FifoOptions, Proactor, ReadMode, Receiver, Sender, Token};

use crate::api;
use crate::core::Core;
use crate::errors::{ErrSpec, Kind};
use crate::gate::{Gate, Waited, seconds};
use crate::stream::{Framing, WhenFull, WriterShared};
use crate::writer::Writer;

/// What Python can learn about a hub without the engine.
#[derive(Debug, Default)]
pub struct HubState {
    /// Subscribers let go (closed, failed or detached), with their last
    /// counters and why.
    pub gone: Vec<(String, SubscriberStats, String)>,
    /// The hub has ended: its source closed and every subscriber is gone.
    pub finished: bool,
    /// The close deadline passed: subscribers were closed with frames
    /// their readers never read.
    pub forced: bool,
}

/// A hub the engine drives.
pub struct HubStream {
    id: u64,
    hub: Hub,
    subs: Vec<(String, Sender)>,
    /// The writer Python publishes through.
    publisher: Token,
    /// When to stop waiting for subscribers' readers at close.
    deadline: Option<Instant>,
    state: Arc<Gate<HubState>>,
}

/// The anonymous pipe a hub reads what Python publishes from.
fn hub_source(p: &mut Proactor) -> Result<(Receiver, Sender), ErrSpec> {
    let (read, write) = std::io::pipe()
        .map_err(|e| ErrSpec::new(Kind::Os, format!("cannot make the hub's pipe: {e}")))?;
    let rx = p.receiver_from_fd(OwnedFd::from(read), ReadMode::Fixed)?;
    let tx = p.sender_from_fd(OwnedFd::from(write))?;
    Ok((rx, tx))
}

fn owns(h: &HubStream, token: Token) -> bool {
    h.hub.source().is_some_and(|s| s.token() == token)
        || h.subs.iter().any(|(_, s)| s.token() == token)
}

/// Gives an event to the hub it concerns.
pub fn event(hubs: &mut [HubStream], p: &mut Proactor, event: Event<'_>) {
    let token = event.token();
    if let Some(h) = hubs.iter_mut().find(|h| owns(h, token)) {
        // The hub counts what it refuses; the rest ends up in `reports`.
        api::hub_handle(&mut h.hub, p, event);
    }
}

/// After each poll: hand queued frames on, take the hubs' reports, and
/// let finished hubs go.
pub fn after_poll(core: &mut Core) {
    let mut hubs = std::mem::take(&mut core.hubs);
    hubs.retain_mut(|h| {
        h.hub.flush(core.proactor());
        let mut st = h.state.lock();
        for report in h.hub.reports() {
            let (to, stats, why) = match report {
                HubEvent::Evicted { to, stats } => (to, stats, "detached".to_string()),
                HubEvent::Gone { to, stats, error } => {
                    let why = error.map_or_else(|| "closed".to_string(), |e| e.to_string());
                    (to, stats, why)
                }
                _ => continue,
            };
            if let Some(at) = h.subs.iter().position(|(_, s)| *s == to) {
                let (path, _) = h.subs.swap_remove(at);
                st.gone.push((path, stats, why));
            }
        }
        let done = h.hub.is_finished() && h.subs.is_empty();
        st.finished = done;
        drop(st);
        h.state.notify();
        !done
    });
    hubs.append(&mut core.hubs);
    core.hubs = hubs;
}

/// Closes every hub's publisher (so the hub ends once its subscribers'
/// readers have everything), giving up on them after `limit`.
pub fn close_all(core: &mut Core, limit: Duration) {
    let publishers: Vec<Token> = core.hubs.iter().map(|h| h.publisher).collect();
    for h in &mut core.hubs {
        h.deadline = Instant::now().checked_add(limit);
    }
    for t in publishers {
        core.close_writer(t, Some(limit));
    }
}

pub fn deadlines(core: &Core) -> impl Iterator<Item = Instant> + '_ {
    core.hubs.iter().filter_map(|h| h.deadline)
}

/// Past its deadline a hub closes its subscribers with what they hold.
pub fn check_deadlines(core: &mut Core, now: Instant) {
    let mut late = Vec::new();
    for h in &mut core.hubs {
        if h.deadline.is_some_and(|d| now >= d) {
            h.deadline = None;
            h.state.lock().forced = true;
            late.extend(h.subs.iter().map(|(_, s)| s.token()));
            late.extend(h.hub.source().map(|s| s.token()));
        }
    }
    for tx in late {
        let _ = core.proactor().close(tx);
    }
}

pub fn fail_all(core: &mut Core, _error: &ErrSpec) {
    for h in core.hubs.drain(..) {
        h.state.lock().finished = true;
        h.state.notify();
    }
}

/// A hub, as Python holds it.
#[pyclass(frozen, module = "ringpipe._native")]
pub struct HubHandle {
    id: u64,
    publisher: Py<Writer>,
    state: Arc<Gate<HubState>>,
}

fn stats_dict<'py>(py: Python<'py>, s: &SubscriberStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("queued_frames", s.queued_frames)?;
    d.set_item("queued_bytes", s.queued_bytes)?;
    d.set_item("dropped_frames", s.dropped_frames)?;
    d.set_item("dropped_bytes", s.dropped_bytes)?;
    d.set_item("handed_frames", s.handed_frames)?;
    d.set_item("handed_bytes", s.handed_bytes)?;
    Ok(d)
}

/// Runs `f` on the engine thread with the core and the index of hub `id`
/// (`None` once the hub has ended).
fn with_hub<R: Send + 'static>(
    py: Python<'_>,
    id: u64,
    f: impl FnOnce(&mut Core, usize) -> R + Send + 'static,
) -> PyResult<Option<R>> {
    let engine = crate::engine::engine().map_err(|e| e.to_pyerr(py))?;
    engine.call(py, move |core, reply| {
        let r = core
            .hubs
            .iter()
            .position(|h| h.id == id)
            .map(|i| f(core, i));
        let _ = reply.send(r);
    })
}

#[pymethods]
impl HubHandle {
    #[new]
    #[pyo3(signature = (*, framing="lines", queue_bytes=1 << 20, when_full="drop_oldest",
        max_frame=None, publish_buffer=4 << 20))]
    fn new(
        py: Python<'_>,
        framing: &str,
        queue_bytes: usize,
        when_full: &str,
        max_frame: Option<usize>,
        publish_buffer: usize,
    ) -> PyResult<HubHandle> {
        let framing = Framing::parse(Some(framing)).map_err(PyValueError::new_err)?;
        let Framing::Frames(codec) = framing else {
            return Err(PyValueError::new_err(
                "a hub's framing is 'lines' or 'length'",
            ));
        };
        let full = match when_full {
            "drop_oldest" => Full::DropOldest,
            "pause" => Full::PauseSource,
            "detach" => Full::Evict,
            other => {
                return Err(PyValueError::new_err(format!(
                    "when_full must be 'drop_oldest', 'pause' or 'detach', not {other:?}"
                )));
            }
        };
        let mut opts = HubOptions::new(codec).full(full).queue_bytes(queue_bytes);
        if let Some(m) = max_frame {
            opts = opts.max_frame(m);
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = Arc::new(Gate::new(HubState::default()));
        let hub_state = Arc::clone(&state);
        let engine = crate::engine::engine().map_err(|e| e.to_pyerr(py))?;
        let opened = engine.call(py, move |core, reply| {
            let _ = reply.send(open(core, id, opts, framing, publish_buffer, hub_state));
        })?;
        let shared = opened.map_err(|e| e.to_pyerr(py))?;
        Ok(HubHandle {
            id,
            publisher: Py::new(py, Writer::wrap(shared, None))?,
            state,
        })
    }

    /// The writer `publish` goes through.
    #[getter]
    fn publisher(&self, py: Python<'_>) -> Py<Writer> {
        self.publisher.clone_ref(py)
    }

    /// Adds a FIFO subscriber (created if missing; it gets every frame
    /// published from now on). Returns False if it already is one.
    fn subscribe(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<bool> {
        let path = path.display().to_string();
        let added = with_hub(py, self.id, move |core, i| {
            let Some((h, p)) = core.hub_parts(i) else {
                return Ok(false);
            };
            if h.subs.iter().any(|(sp, _)| *sp == path) {
                return Ok(false);
            }
            let tx = p.open_sender(&path, &FifoOptions::new().create(true))?;
            h.hub.add(p, tx)?;
            h.subs.push((path, tx));
            // Its events from the next poll on go to the hub.
            core.adopt(tx.token());
            Ok::<_, ringpipe::Error>(true)
        })?;
        match added {
            Some(Ok(added)) => Ok(added),
            Some(Err(e)) => Err(ErrSpec::from(&e).to_pyerr(py)),
            None => Err(ErrSpec::new(Kind::Closed, "the hub is closed").to_pyerr(py)),
        }
    }

    /// Stops feeding a subscriber (its FIFO end closes once its reader has
    /// what it was handed); returns its counters, or None.
    fn unsubscribe<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let path = path.display().to_string();
        let stats = with_hub(py, self.id, move |core, i| {
            let (h, p) = core.hub_parts(i)?;
            let at = h.subs.iter().position(|(sp, _)| *sp == path)?;
            let (_, tx) = h.subs.swap_remove(at);
            let stats = h.hub.remove(p, tx);
            let _ = p.close_after_flush(tx);
            stats
        })?;
        stats.flatten().map(|s| stats_dict(py, &s)).transpose()
    }

    /// Each subscriber's counters, by path.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let all = with_hub(py, self.id, |core, i| {
            let Some((h, _)) = core.hub_parts(i) else {
                return Vec::new();
            };
            h.subs
                .iter()
                .filter_map(|(path, tx)| h.hub.stats(*tx).map(|s| (path.clone(), s)))
                .collect::<Vec<_>>()
        })?;
        let d = PyDict::new(py);
        for (path, s) in all.unwrap_or_default() {
            d.set_item(path, stats_dict(py, &s)?)?;
        }
        Ok(d)
    }

    /// Subscribers let go so far: (path, counters, why).
    fn gone<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyDict>, String)>> {
        let st = self.state.lock();
        st.gone
            .iter()
            .map(|(p, s, why)| Ok((p.clone(), stats_dict(py, s)?, why.clone())))
            .collect()
    }

    /// Ends the hub: every published frame goes to every subscriber still
    /// there, each FIFO end closing once its reader has it all, up to
    /// `timeout` seconds (None: no limit). Returns whether it all went.
    #[pyo3(signature = (timeout=None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let limit = seconds(timeout)?;
        let publisher = self.publisher.get().shared.gate.lock().token;
        with_hub(py, self.id, move |core, i| {
            if let Some((h, _)) = core.hub_parts(i) {
                h.deadline = limit.and_then(|l| Instant::now().checked_add(l));
            }
        })?;
        let engine = crate::engine::engine().map_err(|e| e.to_pyerr(py))?;
        engine
            .inbox
            .command(Box::new(move |core| core.close_writer(publisher, limit)));
        let waited = self.state.wait(py, None, |st| st.finished.then_some(()))?;
        let st = self.state.lock();
        let clean = !st.forced && st.gone.iter().all(|(_, _, why)| why == "closed");
        Ok(matches!(waited, Waited::Ready(())) && clean)
    }
}

/// Opens a hub on the engine: its source pipe, its publisher writer.
fn open(
    core: &mut Core,
    id: u64,
    opts: HubOptions,
    framing: Framing,
    publish_buffer: usize,
    state: Arc<Gate<HubState>>,
) -> Result<Arc<WriterShared>, ErrSpec> {
    let (rx, tx) = hub_source(core.proactor())?;
    let hub = Hub::new(rx, opts);
    let publisher = core.adopt_writer(
        tx,
        "(hub publisher)",
        framing,
        publish_buffer,
        WhenFull::Block,
    );
    core.adopt(rx.token());
    core.hubs.push(HubStream {
        id,
        hub,
        subs: Vec::new(),
        publisher: tx.token(),
        deadline: None,
        state,
    });
    Ok(publisher)
}
