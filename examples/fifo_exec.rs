//! Runs shell pipelines of real tools over FIFOs with `ringpipe::process`:
//! a word count that also keeps a compressed copy of its input, then the
//! way back (decompress and checksum), each input and output far larger
//! than a pipe. Then both ways again as one `Pipeline` of two programs, the
//! compressor's output FIFO relayed by splice into the decompressor's input
//! FIFO, the compressed stream never coming back to the caller.
//!
//! ```text
//! cargo run --example fifo_exec -- [--program gzip] [--size BYTES] [--timeout SECS]
//! cargo run --example fifo_exec -- --help
//! ```
//!
//! Every program the pipelines use is looked up in `PATH` first: a missing
//! one is named and the run ends with exit code 1 before anything starts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ringpipe::process::{FifoCommand, Pipeline};

mod common;

/// Compresses a generated text with PROGRAM, counts its words and checks the
/// round trip, running `sh` pipelines whose files are FIFOs fed and drained
/// by one io_uring thread; then runs the round trip as a pipeline of two
/// programs joined by a FIFO link (compress, then decompress and checksum).
#[derive(Parser, Debug)]
#[command(name = "fifo_exec")]
struct Cli {
    /// The compressor: any program that compresses with `-c` and
    /// decompresses with `-dc`, stdin to stdout (gzip, xz, zstd, bzip2).
    #[arg(long, value_name = "NAME", default_value = "gzip")]
    program: String,

    /// Size of the generated text in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    size: usize,

    /// Longest time each pipeline may run before it is killed.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
}

/// Compress the text, keep the compressed stream, decompress it again and
/// count words: `$0` is the input, `$1` and `$2` the outputs, `$3` the
/// compressor.
const COUNT: &str = r#""$3" -c <"$0" | tee "$2" | "$3" -dc | tr -cs '[:alpha:]' '\n' |
    tr '[:upper:]' '[:lower:]' | sort | uniq -c | sort -k1,1nr -k2 | head -n 5 >"$1""#;

/// Decompress, keep the text and checksum it: `$3` is the compressor.
const CHECK: &str = r#""$3" -dc "$0" | tee "$1" | sha256sum >"$2""#;

/// Compress only: `$0` is the input, `$1` the output, `$2` the compressor.
const COMPRESS: &str = r#""$2" -c <"$0" >"$1""#;

/// Every program the two pipelines run, besides the compressor.
const TOOLS: [&str; 7] = ["sh", "tee", "tr", "sort", "uniq", "head", "sha256sum"];

fn main() -> ExitCode {
    common::exit(run(&Cli::parse()))
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    // sh reports a missing command only on stderr, and the status of a
    // pipeline is its last command's: find every program first.
    for program in std::iter::once(cli.program.as_str()).chain(TOOLS) {
        if find_program(program).is_none() {
            return Err(format!("cannot run `{program}`: not found in PATH").into());
        }
    }
    let program = cli.program.as_str();
    let timeout = Duration::from_secs(cli.timeout);
    let text = corpus(cli.size);

    let t0 = Instant::now();
    let out = FifoCommand::new("sh")
        .args([
            "-c",
            COUNT,
            "{in:text}",
            "{out:top}",
            "{out:text.z}",
            program,
        ])
        .input("text", text.clone())
        .output("top")
        .output("text.z")
        .timeout(timeout)
        .run()?;
    let input = out.inputs["text"];
    println!("word count and {program} -c, {:?}", t0.elapsed());
    println!("  status: {}", out.status);
    println!("  text: {} of {} bytes accepted", input.accepted, input.len);
    println!("  compressed: {} bytes", out.outputs["text.z"].len());
    println!("  top words:");
    for line in String::from_utf8_lossy(&out.outputs["top"]).lines() {
        println!("    {}", line.trim());
    }
    if !out.status.success() {
        return Err(format!("the word count failed: {}", out.status).into());
    }
    if out.outputs["text.z"].is_empty() || !input.is_complete() {
        return Err(format!("`{program} -c` compressed nothing (see its messages above)").into());
    }

    let t0 = Instant::now();
    let back = FifoCommand::new("sh")
        .args([
            "-c",
            CHECK,
            "{in:text.z}",
            "{out:plain}",
            "{out:sum}",
            program,
        ])
        .input("text.z", out.outputs["text.z"].clone())
        .output("plain")
        .output("sum")
        .timeout(timeout)
        .run()?;
    println!("{program} -dc and sha256sum, {:?}", t0.elapsed());
    println!("  status: {}", back.status);
    println!("  plain: {} bytes", back.outputs["plain"].len());
    println!(
        "  sha256: {}",
        String::from_utf8_lossy(&back.outputs["sum"]).trim()
    );
    if !back.status.success() {
        return Err(format!("the check failed: {}", back.status).into());
    }
    if back.outputs["plain"] != text {
        return Err(format!("the round trip through `{program}` changed the text").into());
    }
    println!("round trip ok");

    // The same round trip as two programs joined by the link `text.z`.
    let t0 = Instant::now();
    let piped = Pipeline::new()
        .command(
            FifoCommand::new("sh")
                .args(["-c", COMPRESS, "{in:text}", "{out:text.z}", program])
                .input("text", text.clone())
                .output("text.z"),
        )
        .command(
            FifoCommand::new("sh")
                .args(["-c", CHECK, "{in:text.z}", "{out:plain}", "{out:sum}"])
                .arg(program)
                .piped_input("text.z")
                .output("plain")
                .output("sum"),
        )
        .timeout(timeout)
        .run()?;
    let link = piped.links["text.z"];
    println!("pipeline {program} -c | {program} -dc, {:?}", t0.elapsed());
    for (name, status) in ["compress", "check"].iter().zip(&piped.statuses) {
        println!("  {name} status: {status}");
    }
    println!(
        "  text.z: {} bytes relayed, {}",
        link.relayed,
        if link.complete {
            "complete"
        } else {
            "cut short"
        }
    );
    println!("  plain: {} bytes", piped.outputs["plain"].len());
    if !piped.success() || !link.complete {
        return Err(format!("the pipeline failed: {piped:?}").into());
    }
    if piped.outputs["plain"] != text || piped.outputs["sum"] != back.outputs["sum"] {
        return Err(format!("the pipeline through `{program}` changed the text").into());
    }
    println!("pipeline ok");
    Ok(())
}

/// Where `PATH` finds `program` (or the path itself, if it has a slash):
/// an executable file.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return runnable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
}

/// `len` bytes of pseudo-random text over a small vocabulary, with word
/// frequencies falling off so the top of the count is stable.
fn corpus(len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "pipe", "FIFO", "ring", "reader", "writer", "open", "close", "bytes", "kernel", "queue",
        "event", "poll",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut column = 0;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // The minimum of two draws favours the first words.
        let i = ((x % 12).min((x >> 8) % 12)) as usize;
        out.extend_from_slice(WORDS[i].as_bytes());
        column += WORDS[i].len() + 1;
        if column > 70 {
            out.push(b'\n');
            column = 0;
        } else {
            out.push(b' ');
        }
    }
    out
}
