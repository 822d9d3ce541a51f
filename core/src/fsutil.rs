//! Careful file writes: files that are never silently overwritten, and atomic
//! replacement, so a crash leaves either the old or the new content, never a mix.
//!
//! Both kinds of write go through a temporary file in the target's directory that is
//! written and fsynced before it gets the target's name, and the directory is fsynced
//! after: [`write_new`] gives the name only if it is free (a no-clobber rename or hard
//! link), [`replace`] renames over the old file. A crash or a kill at any moment leaves
//! the target absent (new files), or with its old content, or with the complete new
//! content — never empty or half-written — plus at worst a stray temporary file named
//! [`TEMP_PREFIX`]`…`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Permission bits for secret files (private keys, the device store).
pub const SECRET_MODE: u32 = 0o600;
/// Permission bits for public files (public keys, armored lic files).
pub const PUBLIC_MODE: u32 = 0o644;
/// Permission bits for private directories (a data directory, a key directory).
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Permission bits for public directories (where response files go).
pub const PUBLIC_DIR_MODE: u32 = 0o755;

/// Name prefix of the temporary files [`replace`] and [`write_new`] write beside their
/// target.
pub const TEMP_PREFIX: &str = ".lic-tmp-";

/// Write `bytes` to a new file at `path`, failing with `AlreadyExists` if there is one
/// (the existing file is left as it is). The file appears complete or not at all: if
/// several writers race for the same name, exactly one wins and the others get
/// `AlreadyExists`.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_new_with_hook(path, bytes, mode, &|_| {})
}

/// [`write_new`], calling `hook` with the name of each step before it is taken
/// (`write`, `sync`, `link`, `sync-dir`): the store uses it to inject crashes in tests.
pub fn write_new_with_hook(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    hook: &dyn Fn(&str),
) -> io::Result<()> {
    let tmp = temp_file(path, bytes, mode, hook, true)?;
    hook("link");
    // A no-clobber rename (Linux, macOS) or a hard link; fails with `AlreadyExists` if
    // the name is taken. On failure the temporary file is removed when dropped.
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    hook("sync-dir");
    sync_parent(path)
}

/// [`write_new`] without waiting for the disk: other processes see the file complete or
/// not at all, but a crash may lose it until [`sync_files`] has made it durable. For many
/// files written at once (a bulk `apply`), made durable together at the end.
pub fn write_new_unsynced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_file(path, bytes, mode, &|_| {}, false)?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}

/// Make files written by [`write_new_unsynced`] durable: each file, then each of their
/// directories once, several at a time (a file system commits syncs that wait together
/// in one go, where one after the other each waits for the disk).
pub fn sync_files(paths: &[std::path::PathBuf]) -> io::Result<()> {
    const AT_ONCE: usize = 16;
    let sync = |path: &Path| File::open(path)?.sync_all();
    let mut dirs: Vec<&Path> = paths.iter().map(|p| parent_dir(p)).collect();
    dirs.sort();
    dirs.dedup();
    let chunk = paths.len().div_ceil(AT_ONCE).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = paths
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().try_for_each(|p| sync(p))))
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("a sync failed")))
        })
    })?;
    #[cfg(unix)]
    for dir in dirs {
        sync(dir)?;
    }
    Ok(())
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
    let tmp = temp_file(path, bytes, mode, hook, true)?;
    hook("rename");
    tmp.persist(path).map_err(|e| e.error)?;
    hook("sync-dir");
    sync_parent(path)
}

/// A temporary file beside `path` holding `bytes`, fsynced. It is removed when dropped
/// unless persisted.
fn temp_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    hook: &dyn Fn(&str),
    sync: bool,
) -> io::Result<tempfile::NamedTempFile> {
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
    // Through the plain file: NamedTempFile's own Write adds its scratch name to an error
    // ("… at path \".lic-tmpXXXX\""), and callers name the file being replaced.
    tmp.as_file_mut().write_all(bytes)?;
    if sync {
        hook("sync");
        tmp.as_file().sync_all()?;
    }
    Ok(tmp)
}

/// Write `bytes` to `path`: a new file, or with `force` a replacement of an existing one.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> io::Result<()> {
    if force {
        replace(path, bytes, mode)
    } else {
        write_new(path, bytes, mode)
    }
}

/// Create the directory `dir` and any missing parent, each with exactly the permission
/// bits `mode` whatever the process umask. Directories that exist already, `dir`
/// included, are left as they are.
pub fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    // The missing directories, innermost first.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
        match fs::metadata(d) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", d.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(d),
            Err(e) => return Err(e),
        }
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(mode);
        }
        match builder.create(d) {
            Ok(()) => set_mode(d, mode)?,
            // Made by someone else meanwhile: theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

/// Create an empty file at `path` with exactly the permission bits `mode` whatever the
/// process umask, unless a file is there already (it is left as it is). Returns whether
/// it made the file.
pub fn create_empty(path: &Path, mode: u32) -> io::Result<bool> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    match options.open(path) {
        Ok(file) => {
            // The umask may have taken bits away: give them back.
            set_mode(path, mode)?;
            file.sync_all()?;
            sync_parent(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Set the permission bits of `path` (not subject to the umask). Nothing elsewhere.
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
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
        // The refused write left no temporary file behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unsynced_writes_refuse_to_overwrite_and_are_synced_together() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..40)
            .map(|i| dir.path().join(format!("r{i}.lic")))
            .collect();
        for p in &paths {
            write_new_unsynced(p, b"one", PUBLIC_MODE).unwrap();
        }
        let err = write_new_unsynced(&paths[0], b"two", PUBLIC_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&paths[0]).unwrap(), b"one");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            40,
            "no temporary file left"
        );
        sync_files(&paths).unwrap();
        sync_files(&[]).unwrap();
        // A file that is not there is an error, not a silent success.
        let missing = dir.path().join("gone.lic");
        assert_eq!(
            sync_files(&[missing]).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn write_new_never_shows_a_partial_file() {
        // Stop before the name is given (a crash there): the target does not exist.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let stop = |step: &str| {
            if step == "link" {
                panic!("crash before link");
            }
        };
        let crashed = std::panic::catch_unwind(|| write_new_with_hook(&path, b"key", 0o600, &stop));
        assert!(crashed.is_err());
        assert!(
            !path.exists(),
            "no empty or partial file under the final name"
        );
        write_new(&path, b"key", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"key");
    }

    #[test]
    fn racing_write_new_calls_have_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<io::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let (path, barrier) = (&path, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        write_new(path, &[b'a' + i; 64], SECRET_MODE)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = (0..8).filter(|i| results[*i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert_eq!(r.as_ref().unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        }
        let winner = u8::try_from(winners[0]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), vec![b'a' + winner; 64]);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path)
            .expect("the path exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn create_dir_all_gives_every_new_directory_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep, PRIVATE_DIR_MODE).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode_of(&dir.path().join(d)), 0o700, "{d}");
        }
        // An existing directory is left as it is.
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o750)).unwrap();
        create_dir_all(&deep, PRIVATE_DIR_MODE).unwrap();
        assert_eq!(mode_of(&deep), 0o750);
        // A file in the way is an error.
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = create_dir_all(&file.join("sub"), PUBLIC_DIR_MODE).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory
        ));
        assert!(create_dir_all(&file, PUBLIC_DIR_MODE).is_err());
    }

    #[test]
    fn create_empty_makes_a_file_with_the_mode_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.db");
        assert!(create_empty(&path, SECRET_MODE).unwrap());
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"");
        fs::write(&path, b"data").unwrap();
        assert!(!create_empty(&path, SECRET_MODE).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"data");
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
