//! A transport's name (its FIFO's path, or a label), kept for the errors
//! that name it. There is one per transport and errors are rare, so it
//! takes 24 bytes and, in the common case, no allocation of its own: the
//! directory part is shared by the names made one after another in the
//! same directory, and a short last part is kept inline.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Bytes of a last part kept inline.
const SHORT: usize = 14;

/// A name, cut after its last `/`: joined again, the exact bytes given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Name {
    /// Up to and including the last `/`; `None` without one.
    dir: Option<Rc<PathBuf>>,
    rest: Rest,
}

/// The bytes after the directory part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rest {
    Short {
        len: u8,
        bytes: [u8; SHORT],
    },
    /// Boxed twice, so the pointer is thin and the name stays 24 bytes.
    Long(Box<Box<[u8]>>),
}

/// The directory of the last name made: the next one in it shares it.
#[derive(Debug, Default)]
pub(super) struct Dirs(Option<Rc<PathBuf>>);

impl Name {
    /// `path` as a name, sharing its directory part through `dirs`.
    pub(super) fn new(path: &Path, dirs: &mut Dirs) -> Name {
        let bytes = path.as_os_str().as_bytes();
        let cut = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        let (dir, rest) = bytes.split_at(cut);
        let dir = (!dir.is_empty()).then(|| match &dirs.0 {
            Some(last) if last.as_os_str().as_bytes() == dir => Rc::clone(last),
            _ => {
                let fresh = Rc::new(PathBuf::from(OsStr::from_bytes(dir)));
                dirs.0 = Some(Rc::clone(&fresh));
                fresh
            }
        });
        let rest = match u8::try_from(rest.len()) {
            Ok(len) if usize::from(len) <= SHORT => {
                let mut short = [0; SHORT];
                if let Some(to) = short.get_mut(..rest.len()) {
                    to.copy_from_slice(rest);
                }
                Rest::Short { len, bytes: short }
            }
            _ => Rest::Long(Box::new(rest.into())),
        };
        Name { dir, rest }
    }

    /// The name as a path, as it was given.
    pub(super) fn to_path_buf(&self) -> PathBuf {
        let rest = match &self.rest {
            Rest::Short { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(bytes),
            Rest::Long(b) => b,
        };
        let dir = self
            .dir
            .as_ref()
            .map_or(&[][..], |d| d.as_os_str().as_bytes());
        let mut out = Vec::with_capacity(dir.len() + rest.len());
        out.extend_from_slice(dir);
        out.extend_from_slice(rest);
        PathBuf::from(OsString::from_vec(out))
    }
}

#[cfg(test)]
mod tests {
    use super::{Dirs, Name};
    use std::path::Path;
    use std::rc::Rc;

    #[test]
    fn a_name_gives_back_the_exact_path() {
        let mut dirs = Dirs::default();
        for p in [
            "",
            "fifo",
            "/",
            "/a",
            "a/b/",
            "./in-7",
            "/dev/shm/x/in-1234",
            "/dev/shm/x/a-last-part-longer-than-fourteen",
            "rel/../fourteen_bytes",
            "dir//x",
        ] {
            let name = Name::new(Path::new(p), &mut dirs);
            assert_eq!(name.to_path_buf(), Path::new(p), "{p:?}");
        }
    }

    #[test]
    fn names_in_one_directory_share_it() {
        let mut dirs = Dirs::default();
        let a = Name::new(Path::new("/run/fifos/in-1"), &mut dirs);
        let b = Name::new(Path::new("/run/fifos/in-2"), &mut dirs);
        let c = Name::new(Path::new("/run/other/in-1"), &mut dirs);
        let (Some(da), Some(db), Some(dc)) = (&a.dir, &b.dir, &c.dir) else {
            panic!("every name here has a directory");
        };
        assert!(Rc::ptr_eq(da, db));
        assert!(!Rc::ptr_eq(da, dc));
        assert_eq!(b.to_path_buf(), Path::new("/run/fifos/in-2"));
        assert_eq!(c.to_path_buf(), Path::new("/run/other/in-1"));
    }

    /// One per transport: its size counts with many idle FIFOs.
    #[test]
    fn a_name_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Option<Name>>(), 24);
    }
}
