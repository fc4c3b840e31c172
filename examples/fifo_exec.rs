//! Runs shell pipelines of real tools over FIFOs with `ringpipe::process`:
//! a word count that also keeps a compressed copy of its input, then the
//! way back (decompress and checksum), each input and output far larger
//! than a pipe.
//!
//! ```text
//! cargo run --example fifo_exec
//! ```

use std::time::{Duration, Instant};

use ringpipe::process::FifoCommand;

/// Compress the text, keep the compressed stream, decompress it again and
/// count words: `$0` is the input, `$1` and `$2` the outputs.
const COUNT: &str = r#"gzip -c <"$0" | tee "$2" | gzip -dc | tr -cs '[:alpha:]' '\n' |
    tr '[:upper:]' '[:lower:]' | sort | uniq -c | sort -k1,1nr -k2 | head -n 5 >"$1""#;

/// Decompress, keep the text and checksum it.
const CHECK: &str = r#"gzip -dc "$0" | tee "$1" | sha256sum >"$2""#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = corpus(4 << 20);
    let t0 = Instant::now();
    let out = FifoCommand::new("sh")
        .args(["-c", COUNT, "{in:text}", "{out:top}", "{out:text.gz}"])
        .input("text", text.clone())
        .output("top")
        .output("text.gz")
        .timeout(Duration::from_secs(60))
        .run()?;
    println!("sh -c '{COUNT}'");
    println!("  status {}, {:?}", out.status, t0.elapsed());
    println!("  input: {:?}", out.inputs["text"]);
    println!("  text.gz: {} bytes", out.outputs["text.gz"].len());
    println!("  top words:");
    for line in String::from_utf8_lossy(&out.outputs["top"]).lines() {
        println!("    {}", line.trim());
    }
    if !out.status.success() {
        return Err(format!("word count failed: {}", out.status).into());
    }

    let t0 = Instant::now();
    let back = FifoCommand::new("sh")
        .args(["-c", CHECK, "{in:text.gz}", "{out:plain}", "{out:sum}"])
        .input("text.gz", out.outputs["text.gz"].clone())
        .output("plain")
        .output("sum")
        .timeout(Duration::from_secs(60))
        .run()?;
    println!("sh -c '{CHECK}'");
    println!("  status {}, {:?}", back.status, t0.elapsed());
    println!("  plain: {} bytes", back.outputs["plain"].len());
    println!(
        "  sha256: {}",
        String::from_utf8_lossy(&back.outputs["sum"]).trim()
    );
    if !back.status.success() || back.outputs["plain"] != text {
        return Err("the round trip changed the text".into());
    }
    println!("round trip ok");
    Ok(())
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
