//! Reading inputs and writing outputs safely, for every job.
//!
//! - Inputs must be regular files no larger than a limit known before reading (a package,
//!   an image, a key, a text list): a device node, a FIFO or a 3 GB file are refused without
//!   reading them.
//! - Outputs must be regular files or not exist, and never the same file (device and inode,
//!   not just the same path) as an input of the same job.
//! - Outputs are written to a temporary file beside them, synced, then renamed: a failure
//!   never leaves a half-written output, and a replaced output keeps its permissions.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, ErrorKind};

/// Largest firmware image accepted (the format allows 4 GiB - 1; creating a delta needs
/// about 8.5 bytes of RAM per image byte).
pub const MAX_IMAGE: u64 = 1 << 30;
/// Largest package accepted (header, manifest and payloads of up to 16 components).
pub const MAX_PACKAGE: u64 = (1 << 30) + (1 << 20);
/// Largest key file.
pub const MAX_KEY: u64 = 64 << 10;
/// Largest text list (UIDs, codes).
pub const MAX_TEXT: u64 = 512 << 20;

/// Read the regular file `path`, refusing anything larger than `limit` bytes; `what` names
/// it in messages ("package", "image", "key").
pub fn read_input(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, "cannot read", &e))?;
    if meta.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is a directory, not a {what} file", path.display()),
        ));
    }
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file (a device, a pipe or a socket): give a {what} file",
                path.display()
            ),
        ));
    }
    if meta.len() > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is {} bytes, more than any {what} this tool takes ({limit} bytes)",
                path.display(),
                meta.len()
            ),
        ));
    }
    let f = std::fs::File::open(path).map_err(|e| io_error(path, "cannot read", &e))?;
    let mut buf = Vec::new();
    buf.try_reserve(usize::try_from(meta.len()).unwrap_or(0))
        .map_err(|_| Error::new(ErrorKind::Io, "not enough memory to read the file"))?;
    f.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| io_error(path, "cannot read", &e))?;
    if buf.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} grew beyond {limit} bytes while being read",
                path.display()
            ),
        ));
    }
    Ok(buf)
}

/// Read a UTF-8 text input.
pub fn read_text(path: &Path, what: &str, limit: u64) -> Result<String, Error> {
    String::from_utf8(read_input(path, what, limit)?).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a text file", path.display()),
        )
    })
}

fn io_error(path: &Path, doing: &str, e: &std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{doing} {}: {e}", path.display()))
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// Check that `out` may be written by a job that reads `inputs`: it is a regular file or
/// does not exist, its folder exists, and it is none of the inputs (same file, whatever the
/// path).
pub fn check_output(out: &Path, inputs: &[&Path]) -> Result<(), Error> {
    let conflict = |m: String| Error::new(ErrorKind::OutputConflict, m);
    if let Ok(meta) = std::fs::metadata(out) {
        if !meta.is_file() {
            return Err(conflict(format!(
                "{} exists and is not a regular file (a folder, a device or a pipe); choose another output file",
                out.display()
            )));
        }
        for i in inputs {
            if std::fs::metadata(i).is_ok_and(|m| same_file(&m, &meta)) {
                return Err(conflict(format!(
                    "the output {} is the input {}: choose another output file (nothing was written)",
                    out.display(),
                    i.display()
                )));
            }
        }
    } else if std::fs::symlink_metadata(out).is_ok() {
        return Err(conflict(format!(
            "{} is a dangling symbolic link; choose another output file",
            out.display()
        )));
    } else if let Some(i) = inputs.iter().find(|i| same_place(out, i)) {
        // Neither exists yet (a registry created by this job): the same name in the same folder.
        return Err(conflict(format!(
            "the output {} is the input {}: choose another output file (nothing was written)",
            out.display(),
            i.display()
        )));
    }
    let dir = parent(out);
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("the folder {} does not exist", dir.display()),
        ));
    }
    Ok(())
}

/// Same file name in the same folder (for paths that do not exist yet).
fn same_place(a: &Path, b: &Path) -> bool {
    let dir_of = |p: &Path| std::fs::canonicalize(parent(p)).ok();
    a.file_name().is_some()
        && a.file_name() == b.file_name()
        && dir_of(a).is_some()
        && dir_of(a) == dir_of(b)
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An output prepared in full beside its destination, not yet visible.
#[derive(Debug)]
pub struct Staged {
    /// Closed (a batch may stage thousands), removed when dropped uncommitted.
    tmp: tempfile::TempPath,
    dest: PathBuf,
}

impl Staged {
    /// Make the output visible (atomic rename).
    pub fn commit(self) -> Result<(), Error> {
        let dest = self.dest;
        self.tmp
            .persist(&dest)
            .map_err(|e| io_error(&dest, "cannot write", &e.error))?;
        Ok(())
    }
}

/// Write `data` to a temporary file beside `dest` and sync it; [`Staged::commit`] renames it
/// into place. A new file gets `mode` (unix); a replaced one keeps its permissions.
pub fn stage(dest: &Path, data: &[u8], mode: u32) -> Result<Staged, Error> {
    let dir = parent(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(".bluesphere-")
        .tempfile_in(&dir)
        .map_err(|e| io_error(&dir, "cannot create a file in", &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = match std::fs::metadata(dest) {
            Ok(m) if m.is_file() => m.permissions(),
            _ => std::fs::Permissions::from_mode(mode),
        };
        std::fs::set_permissions(tmp.path(), perms)
            .map_err(|e| io_error(dest, "cannot set the permissions of", &e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_error(dest, "cannot write", &e))?;
    Ok(Staged {
        tmp: tmp.into_temp_path(),
        dest: dest.to_path_buf(),
    })
}

/// [`stage`] and commit at once.
pub fn write_atomic(dest: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    stage(dest, data, mode)?.commit()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_output_that_is_an_input_is_refused_whatever_its_path() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.bin");
        std::fs::write(&a, b"old").unwrap();
        let other_path = d.path().join(".").join("a.bin");
        let e = check_output(&other_path, &[&a]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutputConflict);
        #[cfg(unix)]
        {
            let link = d.path().join("link.bin");
            std::os::unix::fs::symlink(&a, &link).unwrap();
            assert_eq!(
                check_output(&link, &[&a]).unwrap_err().kind,
                ErrorKind::OutputConflict
            );
            let hard = d.path().join("hard.bin");
            std::fs::hard_link(&a, &hard).unwrap();
            assert_eq!(
                check_output(&hard, &[&a]).unwrap_err().kind,
                ErrorKind::OutputConflict
            );
        }
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
        check_output(&d.path().join("new.bin"), &[&a]).unwrap();
    }

    #[test]
    fn devices_folders_and_large_files_are_not_inputs() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            read_input(d.path(), "image", MAX_IMAGE).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        #[cfg(unix)]
        {
            let e = read_input(Path::new("/dev/zero"), "package", MAX_PACKAGE).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput);
            assert!(e.message.contains("not a regular file"), "{}", e.message);
            assert_eq!(
                check_output(Path::new("/dev/null"), &[]).unwrap_err().kind,
                ErrorKind::OutputConflict
            );
        }
        let big = d.path().join("sparse.bin");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(3 << 30).unwrap();
        let e = read_input(&big, "package", MAX_PACKAGE).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.contains("more than any package"), "{}", e.message);
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_output_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.bin");
        std::fs::write(&p, b"x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let fresh = d.path().join("fresh.pem");
        write_atomic(&fresh, b"k", 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
