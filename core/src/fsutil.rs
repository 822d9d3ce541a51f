//! Careful file writes: key files that are never silently overwritten, and atomic
//! replacement (temp file in the same directory, fsync, rename, fsync the directory)
//! so a crash leaves either the old or the new content, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Permission bits for secret files (private keys, the device store).
pub const SECRET_MODE: u32 = 0o600;
/// Permission bits for public files (public keys, armored lic files).
pub const PUBLIC_MODE: u32 = 0o644;

/// Name prefix of the temporary files [`replace`] writes beside their target.
pub const TEMP_PREFIX: &str = ".lic-tmp-";

/// Write `bytes` to a new file at `path`, failing with `AlreadyExists` if there is one.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    set_mode(&mut options, mode);
    let mut file = options.open(path)?;
    let result = file.write_all(bytes).and_then(|()| file.sync_all());
    if result.is_err() {
        // Do not leave a half-written key behind.
        let _ = fs::remove_file(path);
    }
    result?;
    sync_parent(path)
}

/// Replace (or create) the file at `path` with `bytes` atomically.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace_with_hook(path, bytes, mode, &|_| {})
}

/// [`replace`], calling `hook` with the name of each step before it is taken
/// (`write`, `sync`, `rename`, `sync-dir`): the store uses it to inject crashes in tests.
pub fn replace_with_hook(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    hook: &dyn Fn(&str),
) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(dir)?;
    hook("write");
    tmp.write_all(bytes)?;
    hook("sync");
    tmp.as_file().sync_all()?;
    hook("rename");
    tmp.persist(path).map_err(|e| e.error)?;
    hook("sync-dir");
    sync_parent(path)
}

/// Write `bytes` to `path`: a new file, or with `force` a replacement of an existing one.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> io::Result<()> {
    if force {
        replace(path, bytes, mode)
    } else {
        write_new(path, bytes, mode)
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync the directory holding `path`, so a rename or creation survives a power loss.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(parent_dir(path))?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(options: &mut OpenOptions, mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(mode);
}

#[cfg(not(unix))]
fn set_mode(_options: &mut OpenOptions, _mode: u32) {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_new_refuses_to_overwrite_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_new(&path, b"one", SECRET_MODE).unwrap();
        let err = write_new(&path, b"two", SECRET_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn replace_swaps_content_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_new(&path, b"one", SECRET_MODE).unwrap();
        replace(&path, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
