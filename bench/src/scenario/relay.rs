//! `relay`: FIFO A -> engine -> FIFO B, 64 KiB chunks, every chunk read
//! back from B and checked by the load generator.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use clap::{ArgMatches, Args as _};
use serde_json::Value;

use super::{Scenario, args};
use crate::chart::Chart;
use crate::harness::chunks::{Chunked, Chunks};
use crate::harness::engines::EngineWork;
use crate::harness::{Globals, Part, load};
use crate::report::{Goal, Pick, Record, Table, Target, at_most, param};
use crate::sink::Sink;
use crate::spec::{Flow, LoadReport};
use crate::sys;

/// FIFO A -> engine -> FIFO B, 64 KiB chunks.
#[derive(Debug, clap::Args)]
struct Args {
    /// Bytes per run, in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
}

/// The scenario.
pub struct Relay;

/// One configuration: `chunk`-byte writes into FIFO `a`, relayed into
/// FIFO `b`.
type Run = Chunks<Relay>;

impl Chunked for Relay {
    const NAME: &'static str = "relay";

    fn flow() -> Flow {
        Flow::Relay {
            from: "a".into(),
            to: "b".into(),
            bulk: true,
        }
    }
}

fn works(mib: u64) -> Vec<Box<dyn EngineWork>> {
    vec![Box::new(Run::new(64 * 1024, mib << 20))]
}

fn targets() -> Vec<Target> {
    let (gib, rate, splice, epoll) = ("cpu_s_per_gib", "gib_per_s", "uring-splice", "epoll");
    let t = |what: &str, a: Pick, b: Pick, goal: Goal| Target {
        what: what.into(),
        scenario: "relay",
        params: vec![("chunk_bytes", 65536)],
        a,
        b,
        goal,
    };
    vec![
        t(
            "relay 64K CPU/GiB: uring-splice <= 0.6x epoll",
            Pick::of(splice, gib),
            Pick::of(epoll, gib),
            at_most(0.6),
        ),
        t(
            "relay 64K CPU/GiB: uring-splice <= 1.0x threads-splice",
            Pick::of(splice, gib),
            Pick::of("threads-splice", gib),
            at_most(1.0),
        ),
        t(
            "relay 64K GiB/s: uring-splice >= 1.0x epoll",
            Pick::of(splice, rate),
            Pick::of(epoll, rate),
            Goal::AtLeast { factor: 1.0 },
        ),
    ]
}

impl Scenario for Relay {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![Args::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, _: &Globals) -> io::Result<Option<Vec<Part>>> {
        let a: Args = args(m)?;
        Ok(Some(vec![Part::engines(works(a.mib))]))
    }

    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(128))))
    }

    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(1024))))
    }

    fn table(&self) -> Option<Table> {
        Some(
            Table::new(
                self.name(),
                &[
                    ("gib_per_s", true),
                    ("cpu_s_per_gib", false),
                    ("syscalls_per_1k_msgs", false),
                ],
                |r: &Record| format!("relay {}B", param(r, "chunk_bytes")),
            )
            // `Proactor::relay`: what a relay is written with.
            .defaults(&["uring-splice", "uring"])
            .targets(targets),
        )
    }

    fn charts(&self) -> Vec<Chart> {
        vec![Chart::PerEngine {
            file: "relay_gib.svg",
            scenario: self.name(),
            metric: "gib_per_s",
            caption: "relay: FIFO A -> engine -> FIFO B, 64 KiB chunks",
            axis: "GiB/s",
        }]
    }

    fn load(&self, work: &Value, dir: &Path, _: usize) -> io::Result<LoadReport> {
        let run: Run = load::read(work)?;
        let total_bytes = run.total_bytes;
        let b = dir.join("b");
        // The sink reads FIFO b on its own thread, checking every chunk's
        // number. It opens without blocking and waits for data: the
        // engine opens b's write end only after it sees this reader.
        let shape = run.shape();
        let sink = std::thread::spawn(move || -> io::Result<(Sink, f64)> {
            let fd = sys::open_reader_nonblocking(&b)?;
            sys::set_nonblocking(fd.as_fd(), false)?;
            sys::wait_readable(fd.as_fd())?;
            let mut buf = vec![0u8; 1 << 20];
            let mut sink = Sink::new(&shape, 1, total_bytes);
            let start = Instant::now();
            loop {
                match sys::read(fd.as_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => sink.on_data(0, &buf[..n]),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok((sink, start.elapsed().as_secs_f64()))
        });
        let fd = load::open_writer(&dir.join("a"))?;
        load::write_chunks(&fd, run.chunk, total_bytes)?;
        drop(fd);
        let (sink, secs) = sink
            .join()
            .map_err(|_| io::Error::other("sink thread panicked"))??;
        if let Some(fault) = sink.fault {
            return Err(io::Error::other(format!("relay output: {fault}")));
        }
        if sink.bytes != total_bytes {
            return Err(io::Error::other(format!(
                "relay delivered {} of {total_bytes} bytes",
                sink.bytes
            )));
        }
        Ok(LoadReport {
            bytes: sink.bytes,
            checked: sink.checked,
            elapsed_s: secs,
            ..LoadReport::default()
        })
    }
}
