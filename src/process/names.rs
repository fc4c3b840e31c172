//! FIFO names and the `{in:NAME}` / `{out:NAME}` placeholders: checking
//! the declared names, and putting the FIFOs' paths into arguments and
//! environment values.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::{FifoCommand, ProcessError};

impl FifoCommand {
    /// Refuses a name that is no plain file name in the FIFOs' directory,
    /// that a placeholder could not hold, or that is declared twice.
    pub(super) fn check_names(&self) -> Result<(), ProcessError> {
        let names = self
            .inputs
            .iter()
            .map(|(n, _)| n)
            .chain(self.outputs.iter())
            .chain(self.piped.iter());
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            let why = if name.is_empty() {
                Some("empty")
            } else if name == "." || name == ".." || name.contains(['/', '\0']) {
                Some("not a plain file name")
            } else if name.contains('}') {
                Some("contains '}'")
            } else if !seen.insert(name) {
                Some("declared twice")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ProcessError::InvalidName {
                    name: name.clone(),
                    why,
                });
            }
        }
        Ok(())
    }

    /// Replaces every `{in:NAME}` / `{out:NAME}` in `text` with the path.
    pub(super) fn substitute(&self, text: &OsStr, dir: &Path) -> Result<OsString, ProcessError> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while let Some(at) = find_placeholder(rest) {
            let tail = &rest[at..];
            // Without a closing brace it is no placeholder: keep it as is.
            let Some(end) = tail.iter().position(|&b| b == b'}') else {
                break;
            };
            let (is_input, name) = match tail.strip_prefix(b"{in:") {
                Some(_) => (true, &tail[4..end]),
                None => (false, &tail[5..end]),
            };
            let declared = if is_input {
                self.inputs.iter().any(|(n, _)| n.as_bytes() == name)
                    || self.piped.iter().any(|n| n.as_bytes() == name)
            } else {
                self.outputs.iter().any(|n| n.as_bytes() == name)
            };
            if !declared {
                return Err(ProcessError::UnknownPlaceholder {
                    text: text.to_string_lossy().into_owned(),
                    placeholder: String::from_utf8_lossy(&tail[..=end]).into_owned(),
                });
            }
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(dir.join(OsStr::from_bytes(name)).as_os_str().as_bytes());
            rest = &tail[end + 1..];
        }
        out.extend_from_slice(rest);
        Ok(OsString::from_vec(out))
    }
}

/// Offset of the next `{in:` or `{out:` in `bytes`.
fn find_placeholder(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&i| bytes[i..].starts_with(b"{in:") || bytes[i..].starts_with(b"{out:"))
}
