//! File-backed NOR flash for the Linux port (feature `std`): the flash of the virtual device.
//!
//! Same rules as [`crate::sim::SimFlash`] (aligned writes onto erased bytes only, whole-sector
//! erases, a configurable erased value), but the contents live in a file, so they survive
//! the process: killing the process with `kill -9` between or during operations is a real
//! power cut. Each erase and write is one `pwrite` of at most one sector; an optional delay
//! per operation (`op_delay`) makes a slow part, so tests can cut power mid-update.

extern crate std;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;
use std::vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Why a file-flash operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileFlashError {
    /// The file could not be read or written.
    #[error("flash file: {0}")]
    Io(#[from] io::Error),
    /// Offset or length not aligned to the write or erase unit.
    #[error("flash access not aligned to the write or erase size")]
    NotAligned,
    /// Outside the flash.
    #[error("flash access outside the flash")]
    OutOfBounds,
    /// A write over bytes that are not erased.
    #[error("write over bytes that are not erased at offset {0:#x}")]
    NotErased(u32),
}

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FileFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FileFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// NOR flash in a file: `W`-byte writes, `E`-byte sectors.
#[derive(Debug)]
pub struct FileFlash<const W: usize, const E: usize> {
    file: File,
    capacity: usize,
    erased: u8,
    /// Delay before each erase or write (simulates a slow part).
    pub op_delay: Option<Duration>,
}

impl<const W: usize, const E: usize> FileFlash<W, E> {
    /// Create a new, fully erased flash of `sectors` sectors at `path` (refuses to replace
    /// an existing file).
    pub fn create(path: &Path, sectors: usize, erased: u8) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let sector = vec![erased; E];
        for s in 0..sectors {
            file.write_all_at(&sector, (s * E) as u64)?;
        }
        file.sync_all()?;
        Ok(Self {
            file,
            capacity: sectors * E,
            erased,
            op_delay: None,
        })
    }

    /// Open an existing flash file.
    pub fn open(path: &Path, erased: u8) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 || !len.is_multiple_of(E) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                std::format!(
                    "{} is not a flash image of {E}-byte sectors",
                    path.display()
                ),
            ));
        }
        Ok(Self {
            file,
            capacity: len,
            erased,
            op_delay: None,
        })
    }

    fn check(&self, offset: u32, len: usize) -> Result<(), FileFlashError> {
        if offset as usize + len > self.capacity {
            return Err(FileFlashError::OutOfBounds);
        }
        Ok(())
    }

    fn pause(&self) {
        if let Some(d) = self.op_delay {
            std::thread::sleep(d);
        }
    }
}

impl<const W: usize, const E: usize> ErrorType for FileFlash<W, E> {
    type Error = FileFlashError;
}

impl<const W: usize, const E: usize> ReadNorFlash for FileFlash<W, E> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FileFlashError> {
        self.check(offset, bytes.len())?;
        self.file.read_exact_at(bytes, u64::from(offset))?;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<const W: usize, const E: usize> NorFlash for FileFlash<W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FileFlashError> {
        if !(from as usize).is_multiple_of(E) || !(to as usize).is_multiple_of(E) || from > to {
            return Err(FileFlashError::NotAligned);
        }
        self.check(from, (to - from) as usize)?;
        let sector = vec![self.erased; E];
        for at in (from..to).step_by(E) {
            self.pause();
            self.file.write_all_at(&sector, u64::from(at))?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FileFlashError> {
        if !(offset as usize).is_multiple_of(W) || !bytes.len().is_multiple_of(W) {
            return Err(FileFlashError::NotAligned);
        }
        self.check(offset, bytes.len())?;
        let mut cur = vec![0u8; bytes.len()];
        self.file.read_exact_at(&mut cur, u64::from(offset))?;
        if let Some(i) = cur.iter().position(|&b| b != self.erased) {
            return Err(FileFlashError::NotErased(offset + i as u32));
        }
        self.pause();
        self.file.write_all_at(bytes, u64::from(offset))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_with_nor_rules() {
        let dir = std::env::temp_dir().join(std::format!("bs-ff-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        {
            let mut f: FileFlash<8, 1024> = FileFlash::create(&dir, 4, 0xFF).unwrap();
            f.write(8, &[1; 8]).unwrap();
            assert!(matches!(
                f.write(8, &[0; 8]),
                Err(FileFlashError::NotErased(8))
            ));
            assert!(matches!(
                f.write(3, &[0; 8]),
                Err(FileFlashError::NotAligned)
            ));
            assert!(matches!(f.erase(0, 100), Err(FileFlashError::NotAligned)));
            assert!(matches!(
                f.write(4096, &[0; 8]),
                Err(FileFlashError::OutOfBounds)
            ));
            assert!(
                FileFlash::<8, 1024>::create(&dir, 4, 0xFF).is_err(),
                "never replaces"
            );
        }
        let mut f: FileFlash<8, 1024> = FileFlash::open(&dir, 0xFF).unwrap();
        let mut b = [0u8; 16];
        f.read(0, &mut b).unwrap();
        assert_eq!(&b[8..], &[1; 8]);
        f.erase(0, 1024).unwrap();
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0xFF; 16]);
        std::fs::remove_file(&dir).unwrap();
    }
}
