//! What the examples share: how `main` reports an error.

use std::error::Error;
use std::process::ExitCode;

/// The exit of an example whose work is `result`: on an error, its
/// message (`Display`, which names the path or transport at fault) and
/// the causes the message does not already say, on stderr, after the
/// example's name; not the `Debug` dump a `main` returning `Result`
/// prints.
pub fn exit<E: Into<Box<dyn Error>>>(result: Result<(), E>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let error = error.into();
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = c.source();
    }
    eprintln!("{}: error: {message}", env!("CARGO_BIN_NAME"));
    ExitCode::FAILURE
}
