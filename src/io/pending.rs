//! Files written under a temporary name beside their target and renamed into place once complete.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An output file in the making. It is written at [`PendingFile::path`], a hidden name in the target's
/// folder (same file system, same extension), and becomes the target only at [`PendingFile::commit`], by
/// a rename: a reader of the target never sees a half-written file, two runs writing the same target
/// each leave a whole one (the last to finish wins), and a run that fails removes its part.
#[derive(Debug)]
pub struct PendingFile {
    part: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PendingFile {
    /// The pending file for `target`; fails when its folder does not exist.
    pub fn new(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{}: not a file name", target.display())))?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{}: the folder {} does not exist",
                target.display(),
                dir.display()
            )));
        }
        let stem = Path::new(name).file_stem().unwrap_or(name).to_string_lossy();
        let ext = Path::new(name).extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
        let part = dir.join(format!(".{stem}.lipsync-{}.part{ext}", std::process::id()));
        Ok(PendingFile { part, target: target.to_owned(), committed: false })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.part
    }

    /// Renames the written file onto the target.
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.part, &self.target).map_err(super::io_error(&self.target))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_appears_only_when_committed() {
        let dir = std::env::temp_dir().join(format!("lipsync-pending-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.mp4");
        std::fs::write(&target, b"old").unwrap();
        let pending = PendingFile::new(&target).unwrap();
        assert_eq!(pending.path().parent(), Some(dir.as_path()));
        assert_eq!(pending.path().extension().unwrap(), "mp4");
        std::fs::write(pending.path(), b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"old", "the target is untouched until the commit");
        pending.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // Dropped without a commit (the run failed): the part goes, the target stays.
        let pending = PendingFile::new(&target).unwrap();
        std::fs::write(pending.path(), b"half").unwrap();
        let part = pending.path().to_owned();
        drop(pending);
        assert!(!part.exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(PendingFile::new(&dir.join("missing/out.mp4")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
