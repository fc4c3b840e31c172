//! Helpers shared by the scenarios that run their own processes and print
//! their own tables (`handoff`, `hub`, `soak`).

use std::path::{Path, PathBuf};

/// The median of some runs with their range.
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `median (min..max)` with `digits` decimals.
    pub fn fmt(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}..{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// The median and range of `v` (not empty).
pub fn median_spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(f64::total_cmp);
    Spread {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// Where FIFOs are made: /dev/shm if present, a tmpfs, so no engine pays
/// a disk filesystem's inode time updates; else $TMPDIR.
pub fn fifo_root() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

/// A directory for this process's FIFOs, on tmpfs where there is one.
pub fn tempdir(name: &str) -> std::io::Result<PathBuf> {
    let dir = fifo_root().join(format!("ringpipe-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
