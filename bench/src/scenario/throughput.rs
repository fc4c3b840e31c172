//! `throughput`: one FIFO, chunked writes, every chunk numbered and
//! checked by the engine: GiB/s and messages/s.

use std::io;
use std::path::Path;
use std::time::Instant;

use clap::{ArgMatches, Args as _};
use serde_json::Value;

use super::{Scenario, args};
use crate::chart::Chart;
use crate::harness::chunks::{Chunked, Chunks};
use crate::harness::engines::EngineWork;
use crate::harness::{Globals, Part, load};
use crate::report::{Record, Table, param};
use crate::spec::{Flow, LoadReport, input_path};

/// One FIFO, chunked writes: GiB/s and messages/s.
#[derive(Debug, clap::Args)]
struct Args {
    /// Chunk sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 4096, 65536])]
    chunks: Vec<usize>,
    /// Bytes per run, in MiB (capped at one million writes).
    #[arg(long, default_value_t = 1024)]
    mib: u64,
}

/// The scenario.
pub struct Throughput;

/// One configuration: `chunk`-byte writes into one FIFO.
type Run = Chunks<Throughput>;

impl Chunked for Throughput {
    const NAME: &'static str = "throughput";

    fn flow() -> Flow {
        Flow::Consume {
            inputs: 1,
            shards: 1,
        }
    }
}

/// A configuration per chunk size: `mib` MiB, at most `max_writes` chunks.
fn works(chunks: &[usize], mib: u64, max_writes: u64) -> Vec<Box<dyn EngineWork>> {
    chunks
        .iter()
        .map(|&chunk| {
            let total_bytes = (mib << 20).min(chunk as u64 * max_writes);
            Box::new(Run::new(chunk, total_bytes)) as Box<dyn EngineWork>
        })
        .collect()
}

impl Scenario for Throughput {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn commands(&self) -> Vec<clap::Command> {
        vec![Args::augment_args(clap::Command::new(self.name()))]
    }

    fn run(&self, _: &str, m: &ArgMatches, _: &Globals) -> io::Result<Option<Vec<Part>>> {
        let a: Args = args(m)?;
        Ok(Some(vec![Part::engines(works(
            &a.chunks, a.mib, 1_000_000,
        ))]))
    }

    fn quick(&self, _: &Globals) -> io::Result<Option<Part>> {
        // Its short run warms every engine before anything is measured.
        let warm = Run::new(4096, 16 << 20);
        Ok(Some(Part::Engines {
            works: works(&[64, 4096, 65536], 128, 200_000),
            warm: Some(Box::new(warm)),
        }))
    }

    fn all(&self, _: &Globals) -> io::Result<Option<Part>> {
        Ok(Some(Part::engines(works(
            &[64, 4096, 65536],
            1024,
            1_000_000,
        ))))
    }

    fn table(&self) -> Option<Table> {
        Some(Table::new(
            self.name(),
            &[
                ("gib_per_s", true),
                ("cpu_s_per_million_msgs", false),
                ("syscalls_per_1k_msgs", false),
            ],
            |r: &Record| format!("throughput {}B", param(r, "chunk_bytes")),
        ))
    }

    fn charts(&self) -> Vec<Chart> {
        vec![Chart::ByParam {
            file: "throughput_gib.svg",
            scenario: self.name(),
            param: "chunk_bytes",
            metric: "gib_per_s",
            caption: "throughput: one FIFO, GiB/s by write size",
            axes: ("chunk bytes (log scale)", "GiB/s (log scale)"),
        }]
    }

    fn load(&self, work: &Value, dir: &Path, _: usize) -> io::Result<LoadReport> {
        let Run {
            chunk, total_bytes, ..
        } = load::read(work)?;
        let fd = load::open_writer(&input_path(dir, 0))?;
        let start = Instant::now();
        load::write_chunks(&fd, chunk, total_bytes)?;
        Ok(LoadReport {
            elapsed_s: start.elapsed().as_secs_f64(),
            bytes: total_bytes,
            ..LoadReport::default()
        })
    }
}
