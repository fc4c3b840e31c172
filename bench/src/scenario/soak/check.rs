//! The soak's checker: reads what every reader session of every output
//! took (their files, in order), and accounts for every unit of every
//! writer session.
//!
//! Each unit says its session and number, and its bytes follow from
//! them, so a unit is either exactly what that session wrote or corrupt.
//! On each output, the units of one session must come in order, each once:
//! every arrival is the next unit of that session that routes to that
//! output. At the end, a session that completed must have arrived whole;
//! a killed one must have arrived up to one of its cut points (the units
//! of its whole writes), no fewer than its progress file says it wrote,
//! and at most one write more.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::writer::{Wire, encode, routed_b, writes};
use crate::sys::parse_hex;

/// Which outputs a unit goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The multiplexer's: `A` units to output 0, `B` units to output 1.
    ByLetter,
    /// A hub's: every unit to every output.
    All,
}

impl Routing {
    fn reaches(self, output: usize, session: u64, seq: u64) -> bool {
        match self {
            Routing::ByLetter => output == usize::from(routed_b(session, seq)),
            Routing::All => true,
        }
    }
}

/// How a writer session ended, as far as the soak knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Running,
    /// Wrote every unit and exited.
    Complete,
    /// SIGKILLed after recording `logged` units written.
    Killed {
        logged: u64,
    },
}

#[derive(Debug)]
struct Tracked {
    units: u64,
    seed: u64,
    fate: Fate,
    /// Per output: the last unit that arrived in order, and how many did.
    outs: Vec<(Option<u64>, u64)>,
}

/// One output's stream: the files of its reader sessions, in order.
#[derive(Debug, Default)]
struct Stream {
    files: Vec<PathBuf>,
    /// The file being read, and how far.
    current: usize,
    offset: u64,
    /// The start of a unit that the last read cut.
    partial: Vec<u8>,
}

/// The totals of one target.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    pub sessions: u64,
    pub complete: u64,
    pub killed: u64,
    /// Units that arrived in order, each checked byte for byte.
    pub checked: u64,
    /// Units a session wrote (all of a complete one, those of a killed
    /// one's whole writes) that never arrived.
    pub lost: u64,
    /// Units that arrived again, or after a later one of their session.
    pub duplicated: u64,
    /// Bytes that were no unit of any session, or a unit on the wrong
    /// output, or beyond what its session could have written.
    pub corrupt: u64,
    /// The first of those, said.
    pub first_fault: Option<String>,
}

#[derive(Debug)]
pub struct Checker {
    wire: Wire,
    routing: Routing,
    streams: Vec<Stream>,
    sessions: Vec<Tracked>,
    tally: Tally,
    /// Reused for the expected bytes of a unit.
    scratch: Vec<u8>,
}

/// The longest unit on the wire that is not corrupt: a partial unit
/// longer than this is reported, not buffered without end.
const LONGEST: usize = 8192;

impl Checker {
    pub fn new(wire: Wire, routing: Routing, outputs: usize) -> Checker {
        Checker {
            wire,
            routing,
            streams: (0..outputs).map(|_| Stream::default()).collect(),
            sessions: Vec::new(),
            tally: Tally::default(),
            scratch: Vec::new(),
        }
    }

    /// Registers a session about to start; returns its number.
    pub fn session(&mut self, units: u64, seed: u64) -> u64 {
        self.sessions.push(Tracked {
            units,
            seed,
            fate: Fate::Running,
            outs: vec![(None, 0); self.streams.len()],
        });
        self.sessions.len() as u64 - 1
    }

    pub fn set_fate(&mut self, session: u64, fate: Fate) {
        if let Some(s) = self.sessions.get_mut(session as usize) {
            s.fate = fate;
        }
    }

    /// The next reader session of `output` moves its bytes into `file`.
    pub fn reader_file(&mut self, output: usize, file: PathBuf) {
        if let Some(s) = self.streams.get_mut(output) {
            s.files.push(file);
        }
    }

    /// Whether every unit of `session` has arrived on every output.
    pub fn delivered(&self, session: u64) -> bool {
        let Some(s) = self.sessions.get(session as usize) else {
            return false;
        };
        (0..self.streams.len()).all(|o| s.outs[o].1 == self.expected(o, session, s.units))
    }

    /// Units of `session` below `end` that route to `output`.
    fn expected(&self, output: usize, session: u64, end: u64) -> u64 {
        (0..end)
            .filter(|&q| self.routing.reaches(output, session, q))
            .count() as u64
    }

    fn fault(&mut self, what: String) {
        self.tally.corrupt += 1;
        self.tally.first_fault.get_or_insert(what);
    }

    /// Reads what the reader sessions have added to their files since the
    /// last call. A file is done once the next one is registered (its
    /// reader has exited): it is read to its end, then removed.
    pub fn poll(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        for o in 0..self.streams.len() {
            loop {
                let s = &mut self.streams[o];
                let Some(path) = s.files.get(s.current).cloned() else {
                    break;
                };
                let done = s.current + 1 < s.files.len();
                let mut file = match std::fs::File::open(&path) {
                    Ok(f) => Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
                if let Some(f) = file.as_mut() {
                    f.seek(SeekFrom::Start(s.offset))?;
                    loop {
                        let n = f.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        self.streams[o].offset += n as u64;
                        self.feed(o, &buf[..n]);
                    }
                }
                if !done {
                    break;
                }
                let s = &mut self.streams[o];
                let _ = std::fs::remove_file(&path);
                s.current += 1;
                s.offset = 0;
            }
        }
        Ok(())
    }

    /// Takes the next bytes of output `o`.
    fn feed(&mut self, o: usize, data: &[u8]) {
        let mut partial = std::mem::take(&mut self.streams[o].partial);
        partial.extend_from_slice(data);
        let mut at = 0;
        while let Some((start, end)) = self.next_unit(&partial[at..]) {
            let unit = &partial[at + start..at + end];
            self.unit(o, unit, &partial[at..at + end]);
            at += end;
        }
        partial.drain(..at);
        if partial.len() > LONGEST {
            let shown = String::from_utf8_lossy(&partial[..40]).into_owned();
            self.fault(format!(
                "output {o}: {} bytes with no unit end: {shown:?}",
                partial.len()
            ));
            partial.clear();
        }
        self.streams[o].partial = partial;
    }

    /// Where the payload of the first whole unit of `bytes` is, and where
    /// the unit ends.
    fn next_unit(&self, bytes: &[u8]) -> Option<(usize, usize)> {
        match self.wire {
            Wire::Lines => memchr_newline(bytes).map(|nl| (0, nl + 1)),
            Wire::Length => {
                let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
                let end = 4usize.checked_add(len)?;
                (bytes.len() >= end).then_some((4, end))
            }
        }
    }

    /// Checks one unit (`wire` its bytes, framing included) that arrived
    /// on output `o`.
    fn unit(&mut self, o: usize, payload: &[u8], wire: &[u8]) {
        let parsed = (payload.len() >= 18)
            .then(|| parse_hex(&payload[1..9]).zip(parse_hex(&payload[10..18])))
            .flatten();
        let Some((session, seq)) = parsed else {
            let shown = String::from_utf8_lossy(&wire[..wire.len().min(40)]).into_owned();
            return self.fault(format!("output {o}: not a unit: {shown:?}"));
        };
        self.scratch.clear();
        encode(self.wire, session, seq, &mut self.scratch);
        let routing = self.routing;
        let Some(s) = self.sessions.get_mut(session as usize) else {
            return self.fault(format!("output {o}: unit of unknown session {session}"));
        };
        if self.scratch != wire || seq >= s.units {
            let what = format!("output {o}: session {session} unit {seq} is not what it wrote");
            return self.fault(what);
        }
        if !routing.reaches(o, session, seq) {
            return self.fault(format!(
                "output {o}: session {session} unit {seq}: wrong output"
            ));
        }
        let (last, count) = &mut s.outs[o];
        let next = match *last {
            None => 0,
            Some(l) => l + 1,
        };
        // The next unit of the session for this output.
        let want = (next..s.units)
            .find(|&q| routing.reaches(o, session, q))
            .unwrap_or(s.units);
        if seq < want {
            self.tally.duplicated += 1;
            self.tally.first_fault.get_or_insert(format!(
                "output {o}: session {session} unit {seq} again or late (expected {want})"
            ));
            return;
        }
        if seq > want {
            // Those between are missing here: counted as lost at the end
            // if they never come, as late if they do.
            self.tally.first_fault.get_or_insert(format!(
                "output {o}: session {session} unit {seq} before {want}"
            ));
        }
        *last = Some(seq);
        *count += 1;
        self.tally.checked += 1;
    }

    /// The totals: every session accounted for, every unit lost counted.
    pub fn tally(&mut self) -> Tally {
        let mut t = self.tally.clone();
        for id in 0..self.sessions.len() {
            let s = &self.sessions[id];
            let (session, units, seed) = (id as u64, s.units, s.seed);
            t.sessions += 1;
            // Units the session put into the pipe: all, or those of its
            // whole writes up to the last that arrived.
            let end = match s.fate {
                Fate::Running => continue,
                Fate::Complete => {
                    t.complete += 1;
                    units
                }
                Fate::Killed { logged } => {
                    t.killed += 1;
                    let top = s.outs.iter().filter_map(|&(l, _)| l).max();
                    let cuts = writes(seed, units);
                    let arrived = top.map_or(0, |l| {
                        cuts.iter().copied().find(|&c| c > l).unwrap_or(units)
                    });
                    let next = cuts.iter().copied().find(|&c| c > logged).unwrap_or(units);
                    if arrived > next {
                        t.corrupt += 1;
                        t.first_fault.get_or_insert(format!(
                            "session {session}: units up to {arrived} arrived, but it had \
                             written {logged} and was at most one write further ({next})"
                        ));
                    }
                    arrived.max(logged)
                }
            };
            for o in 0..self.streams.len() {
                let want = self.expected(o, session, end);
                let got = s.outs[o].1;
                if got < want {
                    t.lost += want - got;
                    t.first_fault.get_or_insert(format!(
                        "output {o}: session {session}: {} of its units missing",
                        want - got
                    ));
                }
            }
        }
        t
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(wire: Wire, session: u64, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for q in seqs {
            encode(wire, session, q, &mut out);
        }
        out
    }

    /// One output (a hub subscriber), fed in pieces.
    fn fed(wire: Wire, bytes: &[u8], sessions: &[(u64, Fate)]) -> Tally {
        let mut c = Checker::new(wire, Routing::All, 1);
        for (n, fate) in sessions {
            let id = c.session(*n, 9);
            c.set_fate(id, fate.clone());
        }
        for piece in bytes.chunks(37) {
            c.feed(0, piece);
        }
        c.tally()
    }

    #[test]
    fn whole_sessions_pass_in_any_cut() {
        for wire in [Wire::Lines, Wire::Length] {
            let mut bytes = units(wire, 0, 0..50);
            bytes.extend(units(wire, 1, 0..10));
            let t = fed(wire, &bytes, &[(50, Fate::Complete), (10, Fate::Complete)]);
            assert_eq!((t.checked, t.lost, t.duplicated, t.corrupt), (60, 0, 0, 0));
            assert_eq!((t.sessions, t.complete), (2, 2));
        }
    }

    #[test]
    fn losses_repeats_and_garbage_are_counted() {
        let wire = Wire::Lines;
        let complete = [(50, Fate::Complete)];
        let t = fed(
            wire,
            &units(wire, 0, (0..50).filter(|&q| q != 7)),
            &complete,
        );
        assert_eq!((t.lost, t.duplicated), (1, 0));
        let t = fed(wire, &units(wire, 0, (0..50).chain([3])), &complete);
        assert_eq!((t.lost, t.duplicated), (0, 1));
        let mut bad = units(wire, 0, 0..50);
        bad[5] = b'z';
        let t = fed(wire, &bad, &complete);
        assert_eq!((t.lost, t.corrupt), (1, 1));
        let t = fed(wire, &units(wire, 4, 0..1), &complete);
        assert_eq!(t.corrupt, 1, "unknown session");
    }

    #[test]
    fn a_killed_session_arrives_up_to_a_cut_point() {
        let wire = Wire::Length;
        let cuts = writes(9, 200);
        let (c1, c2) = (cuts[1], cuts[2]);
        // Recorded c1 units; its next write may or may not have landed.
        for arrived in [c1, c2] {
            let t = fed(
                wire,
                &units(wire, 0, 0..arrived),
                &[(200, Fate::Killed { logged: c1 })],
            );
            assert_eq!((t.lost, t.corrupt, t.killed), (0, 0, 1), "{arrived}");
        }
        // Part of a write, or less than it recorded: lost.
        let t = fed(
            wire,
            &units(wire, 0, 0..c2 - 1),
            &[(200, Fate::Killed { logged: c1 })],
        );
        assert_eq!(t.lost, 1);
        let t = fed(
            wire,
            &units(wire, 0, 0..cuts[0]),
            &[(200, Fate::Killed { logged: c1 })],
        );
        assert_eq!(t.lost, c1 - cuts[0]);
        // Two writes beyond what it recorded: impossible, so corrupt.
        let t = fed(
            wire,
            &units(wire, 0, 0..cuts[3]),
            &[(200, Fate::Killed { logged: c1 })],
        );
        assert_eq!(t.corrupt, 1);
    }

    #[test]
    fn the_multiplexer_routes_by_letter() {
        let wire = Wire::Lines;
        let mut c = Checker::new(wire, Routing::ByLetter, 2);
        let id = c.session(100, 1);
        c.set_fate(id, Fate::Complete);
        let to = |b: bool| units(wire, 0, (0..100).filter(move |&q| routed_b(0, q) == b));
        c.feed(0, &to(false));
        assert!(!c.delivered(id));
        c.feed(1, &to(true));
        assert!(c.delivered(id));
        let t = c.tally();
        assert_eq!((t.checked, t.lost, t.corrupt), (100, 0, 0));
        // A unit on the wrong output.
        c.feed(0, &to(true)[..]);
        assert!(c.tally().corrupt > 0);
    }
}
