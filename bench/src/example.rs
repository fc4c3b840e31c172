//! The multiplexer example (`examples/multiplexer`), the ringpipe router
//! that `mux` measures and `soak` shakes: found beside this binary, and
//! first built when this binary's workspace is there.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The multiplexer example: `given`, else `examples/multiplexer` beside
/// this binary (where cargo puts both), first brought up to date with
/// `cargo build --example multiplexer` in this binary's profile and target
/// directory when the workspace this binary was built from is still
/// there: `cargo run --bin ringpipe-bench` builds only the bench, and a
/// stale example would measure old code. A binary that cannot be found or
/// built is an error naming the cargo command.
pub fn multiplexer(exe: &Path, given: Option<&Path>) -> io::Result<PathBuf> {
    if given.is_none()
        && let Some(build) = build_command(exe)
    {
        eprintln!("building the multiplexer example: {}", build.shown);
        let mut cmd = build.cmd;
        // Cargo's progress and errors go to our stderr as they come.
        match cmd.stdin(Stdio::null()).stdout(Stdio::null()).status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                return Err(io::Error::other(format!(
                    "`{}` failed ({status}): see cargo's messages above",
                    build.shown
                )));
            }
            // No cargo here: a binary built beforehand may still be there.
            Err(_) => {}
        }
    }
    locate_multiplexer(exe, given)
}

/// `cargo build --example multiplexer` for the workspace this binary was
/// built from, into the target directory and profile it runs from, or
/// `None` if that workspace is gone or this binary is not in a cargo
/// target directory (`target/<profile>/ringpipe-bench`).
struct Build {
    cmd: Command,
    shown: String,
}

fn build_command(exe: &Path) -> Option<Build> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("Cargo.toml");
    let profile_dir = exe.parent()?;
    let target = profile_dir.parent()?;
    let profile = profile_dir.file_name()?.to_str()?;
    if !manifest.is_file() || !target.join("CACHEDIR.TAG").is_file() {
        return None;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--example", "multiplexer", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target);
    let flag = match profile {
        "debug" => String::new(),
        "release" => " --release".into(),
        other => format!(" --profile {other}"),
    };
    cmd.args(flag.split_whitespace());
    Some(Build {
        cmd,
        shown: format!("cargo build{flag} --example multiplexer"),
    })
}

/// Finds the multiplexer example: `given`, else `examples/multiplexer`
/// beside this binary. A missing binary is an error that names the cargo
/// command that builds it.
fn locate_multiplexer(exe: &Path, given: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(io::Error::other(format!(
                "--multiplexer {}: no such file",
                path.display()
            )))
        };
    }
    let dir = exe.parent().unwrap_or(Path::new("."));
    let path = dir.join("examples").join("multiplexer");
    if path.is_file() {
        return Ok(path);
    }
    let profile = if dir.ends_with("debug") {
        ""
    } else {
        " --release"
    };
    Err(io::Error::other(format!(
        "{} is missing. mux runs the multiplexer example as the router under test: \
         build it with `cargo build{profile} --example multiplexer` \
         (or leave it out: --routers threads,direct)",
        path.display()
    )))
}

/// How long ago `path` was built, for the header (a stale example is
/// easy to measure by mistake: `cargo run --bin` does not rebuild it).
pub fn age(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or_else(
            || "age unknown".into(),
            |d| format!("built {} s ago", d.as_secs()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_multiplexer_names_the_command_that_builds_it() {
        let msg = |exe: &str| {
            locate_multiplexer(Path::new(exe), None)
                .unwrap_err()
                .to_string()
        };
        let release = msg("/nonexistent/target/release/ringpipe-bench");
        assert!(release.contains("/nonexistent/target/release/examples/multiplexer"));
        assert!(release.contains("`cargo build --release --example multiplexer`"));
        let debug = msg("/nonexistent/target/debug/ringpipe-bench");
        assert!(debug.contains("`cargo build --example multiplexer`"));
    }
}
