//! One target under soak ([`Harness`]): its router process, its FIFOs,
//! the writer and reader sessions on them, the chaos that starts and
//! kills them, and the checker of its outputs.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::check::{Checker, Fate, Routing};
use super::writer::{Ending, Wire};
use super::{RSS_SLACK_KIB, RSS_TREND_SECS, Report, Sample, Target, fd_kinds, sample};

/// How a writer session is meant to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Written whole unless the chaos kills it.
    Normal,
    /// Never killed: the warm-up's and the end's.
    Sync,
    /// Alone on its input, ending badly.
    Bad(Ending),
}

struct Writer {
    child: Child,
    session: u64,
    input: usize,
    kind: Kind,
    progress: PathBuf,
    killed: bool,
}

/// A trouble the chaos makes at least once, as soon as it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    KillReader,
    KillWriter,
    Bad(Ending),
}

/// Whether an input takes new sessions, or is kept for a bad one.
#[derive(Debug, Clone, Copy)]
enum Exclusive {
    Open,
    /// Waiting for its sessions to end, then a bad one starts.
    Draining(Ending),
    /// The bad session runs; the router's word (`want` acknowledgements
    /// of that kind) is awaited after.
    Bad {
        ending: Ending,
        want: u64,
    },
    /// The bad session ended; since when the word is awaited.
    Acking {
        ending: Ending,
        want: u64,
        since: Instant,
    },
}

struct Input {
    path: PathBuf,
    exclusive: Exclusive,
    /// Acknowledgements seen: too long, cut.
    acks: [u64; 2],
}

fn ack_kind(e: Ending) -> usize {
    usize::from(e == Ending::Cut)
}

struct Output {
    path: PathBuf,
    reader: Option<(Child, bool)>,
    restart_at: Option<Instant>,
}

/// One target under soak: its router process, its FIFOs, the sessions on
/// them, and the checker of its outputs.
pub(super) struct Harness {
    target: Target,
    router: Child,
    exe: PathBuf,
    dir: PathBuf,
    wire: Wire,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    checker: Checker,
    writers: Vec<Writer>,
    stderr: mpsc::Receiver<String>,
    /// The router's last stderr lines, for an error.
    tail: VecDeque<String>,
    sessions: u64,
    /// Troubles the chaos has not made yet (each is made at least once).
    forced: Vec<Trouble>,
    writer_kills: u64,
    reader_kills: u64,
    reader_sessions: u64,
    bad: [u64; 2],
    max: Sample,
    next_sample: Instant,
    last_poll: Instant,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.router.kill();
        let _ = self.router.wait();
        for w in &mut self.writers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        for o in &mut self.outputs {
            if let Some((mut r, _)) = o.reader.take() {
                let _ = r.kill();
                let _ = r.wait();
            }
        }
    }
}

fn mkfifo(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    Ok(())
}

impl Harness {
    pub(super) fn start(
        target: Target,
        bin: &Path,
        pre: &[String],
        exe: &Path,
        dir: &Path,
    ) -> io::Result<Harness> {
        std::fs::create_dir_all(dir)?;
        let (inputs, outputs, wire, routing) = match target {
            Target::Multiplexer => (3, 2, Wire::Lines, Routing::ByLetter),
            Target::Hub => (1, 2, Wire::Length, Routing::All),
        };
        let ins: Vec<PathBuf> = (0..inputs).map(|i| dir.join(format!("in-{i}"))).collect();
        let outs: Vec<PathBuf> = (0..outputs).map(|o| dir.join(format!("out-{o}"))).collect();
        for p in ins.iter().chain(&outs) {
            mkfifo(p)?;
        }
        let mut cmd = Command::new(bin);
        cmd.args(pre);
        match target {
            Target::Multiplexer => {
                for i in &ins {
                    cmd.arg("--input").arg(i);
                }
                cmd.arg("--output").arg(&outs[0]);
                cmd.arg("--route").arg(format!("B={}", outs[1].display()));
            }
            Target::Hub => {
                cmd.arg("--source").arg(&ins[0]);
                for o in &outs {
                    cmd.arg("--subscriber").arg(o);
                }
            }
        }
        let mut router = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, stderr) = mpsc::channel();
        if let Some(err) = router.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let now = Instant::now();
        Ok(Harness {
            target,
            router,
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            wire,
            inputs: ins
                .into_iter()
                .map(|path| Input {
                    path,
                    exclusive: Exclusive::Open,
                    acks: [0; 2],
                })
                .collect(),
            outputs: outs
                .into_iter()
                .map(|path| Output {
                    path,
                    reader: None,
                    restart_at: Some(now),
                })
                .collect(),
            checker: Checker::new(wire, routing, outputs),
            writers: Vec::new(),
            stderr,
            tail: VecDeque::new(),
            sessions: 0,
            forced: vec![
                Trouble::KillReader,
                Trouble::KillWriter,
                Trouble::Bad(Ending::TooLong),
                Trouble::Bad(Ending::Cut),
            ],
            writer_kills: 0,
            reader_kills: 0,
            reader_sessions: 0,
            bad: [0; 2],
            max: Sample::default(),
            next_sample: now,
            last_poll: now,
        })
    }

    pub(super) fn router_id(&self) -> u32 {
        self.router.id()
    }

    /// Whether every kind of trouble has happened once.
    pub(super) fn forced_done(&self) -> bool {
        self.forced.is_empty()
    }

    pub(super) fn sample(&self) -> Sample {
        sample(self.router.id()).unwrap_or_default()
    }

    pub(super) fn status(&self, secs: u64) -> String {
        let s = self.sample();
        format!(
            "soak {}: {secs} s, {} writer sessions, {} kills; router RSS {:.1} MiB, {} fds, {} threads",
            self.target.name(),
            self.sessions,
            self.writer_kills + self.reader_kills,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads
        )
    }

    /// Starts a writer session on input `i`.
    fn spawn_writer(
        &mut self,
        rng: &mut fastrand::Rng,
        i: usize,
        kind: Kind,
    ) -> Result<(), String> {
        let units = match kind {
            Kind::Sync => 50,
            _ => rng.u64(20..=600),
        };
        let seed = rng.u64(..);
        let session = self.checker.session(units, seed);
        self.sessions += 1;
        let progress = self.dir.join(format!("progress-{session}"));
        let ending = match kind {
            Kind::Bad(e) => e,
            _ => Ending::Clean,
        };
        let wire = match self.wire {
            Wire::Lines => "lines",
            Wire::Length => "length",
        };
        let ending_arg = match ending {
            Ending::Clean => "clean",
            Ending::TooLong => "too-long",
            Ending::Cut => "cut",
        };
        let child = Command::new(&self.exe)
            .arg("soak-writer")
            .arg("--path")
            .arg(&self.inputs[i].path)
            .args(["--wire", wire, "--ending", ending_arg])
            .args(["--session", &session.to_string()])
            .args(["--units", &units.to_string()])
            .args(["--seed", &seed.to_string()])
            .args(["--pause-ms", "10"])
            .arg("--progress")
            .arg(&progress)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn writer: {e}"))?;
        self.writers.push(Writer {
            child,
            session,
            input: i,
            kind,
            progress,
            killed: false,
        });
        Ok(())
    }

    /// Starts a reader session on output `o`, for `for_ms` (0: until
    /// killed).
    fn spawn_reader(&mut self, o: usize, for_ms: u64) -> Result<(), String> {
        let file = self.dir.join(format!("read-{o}-{}", self.reader_sessions));
        std::fs::File::create(&file).map_err(|e| format!("reader file: {e}"))?;
        self.checker.reader_file(o, file.clone());
        let child = Command::new(&self.exe)
            .arg("soak-reader")
            .arg("--path")
            .arg(&self.outputs[o].path)
            .arg("--out")
            .arg(&file)
            .args(["--for-ms", &for_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn reader: {e}"))?;
        self.reader_sessions += 1;
        self.outputs[o].reader = Some((child, false));
        self.outputs[o].restart_at = None;
        Ok(())
    }

    /// One turn: the router's word, sessions that ended, readers to
    /// restart, bad sessions to start, and with `chaos` the random
    /// starts and kills.
    pub(super) fn tick(&mut self, rng: &mut fastrand::Rng, chaos: bool) -> Result<(), String> {
        self.read_stderr();
        if let Ok(Some(status)) = self.router.try_wait() {
            self.read_stderr();
            let tail: Vec<&str> = self.tail.iter().map(String::as_str).collect();
            return Err(format!(
                "the router exited ({status}): {}",
                tail.join(" / ")
            ));
        }
        self.reap_writers()?;
        let now = Instant::now();
        for o in 0..self.outputs.len() {
            let out = &mut self.outputs[o];
            if let Some((r, _)) = out.reader.as_mut()
                && let Ok(Some(_)) = r.try_wait()
            {
                out.reader = None;
                out.restart_at =
                    Some(now + Duration::from_millis(if chaos { rng.u64(0..300) } else { 0 }));
            }
            if out.reader.is_none() && out.restart_at.is_some_and(|t| t <= now) {
                let for_ms = if chaos { rng.u64(300..3000) } else { 0 };
                self.spawn_reader(o, for_ms)?;
            }
        }
        for i in 0..self.inputs.len() {
            let busy = self.writers.iter().any(|w| w.input == i);
            let input = &mut self.inputs[i];
            match input.exclusive {
                Exclusive::Draining(ending) if !busy => {
                    let want = input.acks[ack_kind(ending)] + 1;
                    input.exclusive = Exclusive::Bad { ending, want };
                    self.bad[ack_kind(ending)] += 1;
                    self.spawn_writer(rng, i, Kind::Bad(ending))?;
                }
                Exclusive::Acking {
                    ending,
                    want,
                    since,
                } => {
                    if input.acks[ack_kind(ending)] >= want {
                        input.exclusive = Exclusive::Open;
                    } else if since.elapsed() > Duration::from_secs(30) {
                        return Err(format!(
                            "{}: the router never said it handled a {ending:?} session",
                            input.path.display()
                        ));
                    }
                }
                _ => {}
            }
        }
        if chaos {
            self.chaos(rng)?;
        }
        if now >= self.next_sample {
            self.next_sample = now + Duration::from_millis(500);
            let s = self.sample();
            self.max.rss_kib = self.max.rss_kib.max(s.rss_kib);
            self.max.fds = self.max.fds.max(s.fds);
            self.max.threads = self.max.threads.max(s.threads);
        }
        if now.duration_since(self.last_poll) >= Duration::from_millis(50) {
            self.last_poll = now;
            self.checker
                .poll()
                .map_err(|e| format!("reading the outputs: {e}"))?;
        }
        Ok(())
    }

    /// The random part of a turn (10 ms): about 5 session starts a second
    /// per input (two at most at a time), 2 writer kills, 1 reader kill
    /// and a bad session every 2.5 s; and each trouble not made yet, as
    /// soon as it can be.
    fn chaos(&mut self, rng: &mut fastrand::Rng) -> Result<(), String> {
        for i in 0..self.inputs.len() {
            let running = self.writers.iter().filter(|w| w.input == i).count();
            if matches!(self.inputs[i].exclusive, Exclusive::Open)
                && running < 2
                && rng.f64() < 0.05
            {
                self.spawn_writer(rng, i, Kind::Normal)?;
            }
        }
        let forced = |h: &Harness, t: Trouble| h.forced.contains(&t);
        // A forced kill counts once a session has died of it (one that
        // was exiting anyway ends complete): one kill in flight at a time.
        let in_flight = self.writers.iter().any(|w| w.killed);
        if (forced(self, Trouble::KillWriter) && !in_flight) || rng.f64() < 0.02 {
            self.kill_writer(rng);
        }
        if (forced(self, Trouble::KillReader) || rng.f64() < 0.01) && self.kill_reader(rng) {
            self.forced.retain(|&t| t != Trouble::KillReader);
        }
        let next_bad = self.forced.iter().find_map(|t| match t {
            Trouble::Bad(e) => Some(*e),
            _ => None,
        });
        let bad = match next_bad {
            Some(e) => Some(e),
            None if rng.f64() < 0.004 => Some(if rng.bool() {
                Ending::TooLong
            } else {
                Ending::Cut
            }),
            None => None,
        };
        if let Some(ending) = bad {
            let i = rng.usize(..self.inputs.len());
            if matches!(self.inputs[i].exclusive, Exclusive::Open) {
                self.inputs[i].exclusive = Exclusive::Draining(ending);
                self.forced.retain(|&t| t != Trouble::Bad(ending));
            }
        }
        Ok(())
    }

    /// SIGKILLs a random normal writer session, if one runs.
    fn kill_writer(&mut self, rng: &mut fastrand::Rng) {
        let normal: Vec<usize> = (0..self.writers.len())
            .filter(|&k| self.writers[k].kind == Kind::Normal && !self.writers[k].killed)
            .collect();
        if normal.is_empty() {
            return;
        }
        let w = &mut self.writers[normal[rng.usize(..normal.len())]];
        if kill(Pid::from_raw(w.child.id() as i32), Signal::SIGKILL).is_ok() {
            w.killed = true;
        }
    }

    /// SIGKILLs the reader session of a random output, if it has one.
    fn kill_reader(&mut self, rng: &mut fastrand::Rng) -> bool {
        let o = rng.usize(..self.outputs.len());
        let Some((r, killed)) = self.outputs[o].reader.as_mut() else {
            return false;
        };
        if *killed || kill(Pid::from_raw(r.id() as i32), Signal::SIGKILL).is_err() {
            return false;
        }
        *killed = true;
        self.reader_kills += 1;
        true
    }

    /// Takes the router's stderr lines: its word on bad sessions.
    fn read_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            let kind = match self.target {
                Target::Multiplexer if line.contains("reopened for the next writer") => Some(0),
                Target::Multiplexer if line.contains("in the middle of a message") => Some(1),
                Target::Hub if line.starts_with("soak-hub: reopened") => Some(0),
                Target::Hub if line.starts_with("soak-hub: cut") => Some(1),
                _ => None,
            };
            if let Some(k) = kind {
                let which = self.inputs.iter_mut().find(|i| {
                    self.target == Target::Hub || line.contains(&format!("{}: ", i.path.display()))
                });
                if let Some(input) = which {
                    input.acks[k] += 1;
                }
            }
            if self.tail.len() == 8 {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
    }

    /// Accounts for the writer sessions that have exited.
    fn reap_writers(&mut self) -> Result<(), String> {
        let mut k = 0;
        while k < self.writers.len() {
            let status = match self.writers[k].child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => {
                    k += 1;
                    continue;
                }
                Err(e) => return Err(format!("writer: {e}")),
            };
            let mut w = self.writers.swap_remove(k);
            let logged = std::fs::read(&w.progress)
                .ok()
                .and_then(|b| b.get(..8)?.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            let _ = std::fs::remove_file(&w.progress);
            use std::os::unix::process::ExitStatusExt;
            let fate = if status.success() {
                Fate::Complete
            } else if w.killed && status.signal() == Some(Signal::SIGKILL as i32) {
                self.writer_kills += 1;
                self.forced.retain(|&t| t != Trouble::KillWriter);
                Fate::Killed { logged }
            } else {
                let mut err = String::new();
                if let Some(mut e) = w.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "writer session {} on {} failed ({status}): {}",
                    w.session,
                    self.inputs[w.input].path.display(),
                    err.trim()
                ));
            };
            self.checker.set_fate(w.session, fate);
            if let Kind::Bad(_) = w.kind {
                let input = &mut self.inputs[w.input];
                if let Exclusive::Bad { ending, want } = input.exclusive {
                    input.exclusive = Exclusive::Acking {
                        ending,
                        want,
                        since: Instant::now(),
                    };
                }
            }
        }
        Ok(())
    }

    /// No more chaos: waits for every session to end and every input to
    /// be open, then sends one session through each input and waits for
    /// all of it to arrive. Afterwards the router is idle, its readers
    /// there and its queues empty: the moment resources are compared at.
    pub(super) fn sync(&mut self, rng: &mut fastrand::Rng) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        self.settle(rng, deadline, "sessions still running", |h| {
            h.writers.is_empty()
                && h.inputs
                    .iter()
                    .all(|i| matches!(i.exclusive, Exclusive::Open))
                && h.outputs.iter().all(|o| o.reader.is_some())
        })?;
        let mut syncs = Vec::new();
        for i in 0..self.inputs.len() {
            self.spawn_writer(rng, i, Kind::Sync)?;
            syncs.push(self.writers.last().map_or(0, |w| w.session));
        }
        self.settle(rng, deadline, "the last sessions not delivered", |h| {
            h.writers.is_empty() && syncs.iter().all(|&s| h.checker.delivered(s))
        })?;
        // Let the router finish its turn before it is looked at.
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// Turns without chaos until `done`, failing at `deadline`.
    fn settle(
        &mut self,
        rng: &mut fastrand::Rng,
        deadline: Instant,
        what: &str,
        done: impl Fn(&Harness) -> bool,
    ) -> Result<(), String> {
        while !done(self) {
            if Instant::now() > deadline {
                return Err(format!("{}: {what} after 60 s", self.target.name()));
            }
            self.tick(rng, false)?;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub(super) fn finish(
        mut self,
        (start, start_fds): (Sample, String),
        mid: Sample,
        seconds: f64,
        seed: u64,
        mut failures: Vec<String>,
    ) -> Report {
        let end = self.sample();
        let fds_changed = (end.fds != start.fds).then(|| [start_fds, fd_kinds(self.router.id())]);
        let _ = kill(Pid::from_raw(self.router.id() as i32), Signal::SIGTERM);
        for o in &mut self.outputs {
            if let Some((mut r, _)) = o.reader.take() {
                let _ = r.kill();
                let _ = r.wait();
            }
        }
        if let Err(e) = self.checker.poll() {
            failures.push(format!("reading the outputs: {e}"));
        }
        let rss_flat = (seconds >= RSS_TREND_SECS)
            .then(|| end.unpinned_kib() <= mid.unpinned_kib() + RSS_SLACK_KIB);
        let fds_flat = end.fds <= start.fds.max(mid.fds);
        let threads_flat = end.threads <= start.threads.max(mid.threads);
        Report {
            target: self.target,
            seconds,
            seed,
            tally: self.checker.tally(),
            writer_kills: self.writer_kills,
            reader_kills: self.reader_kills,
            reader_sessions: self.reader_sessions,
            too_long_sessions: self.bad[0],
            cut_sessions: self.bad[1],
            start,
            mid,
            end,
            max: self.max,
            rss_flat,
            fds_flat,
            threads_flat,
            fds_changed,
            failures,
        }
    }
}
