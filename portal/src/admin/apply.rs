//! `lic-portal apply`: files uploaded by mail or a share, applied in bulk, a line each.

use futures_util::StreamExt as _;

use crate::*;

/// Write a response file; an existing file is replaced only if it holds the same text.
pub(crate) fn write_response(path: &Path, text: &str) -> anyhow::Result<()> {
    write_response_now(path, text, true)
}

/// [`write_response`]; `durable`: wait until it is on disk (else the caller syncs it
/// later, with others: `fsutil::sync_files`).
fn write_response_now(path: &Path, text: &str, durable: bool) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return out(text);
    }
    let mode = lic_core::fsutil::PUBLIC_MODE;
    let written = if durable {
        lic_core::fsutil::write_new(path, text.as_bytes(), mode)
    } else {
        lic_core::fsutil::write_new_unsynced(path, text.as_bytes(), mode)
    };
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read(path).is_ok_and(|b| b == text.as_bytes()) {
                Ok(())
            } else {
                Err(anyhow::Error::from(e).context(format!(
                    "{} already exists with other content; it was left as it is",
                    path.display()
                )))
            }
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("cannot write {}", path.display()))),
    }
}

/// Write the response to `target`; if another response holds that name already (two
/// requests named alike, `photo-pro.req` from two machines), beside it under a name made
/// unique by the applied file's hash. Returns where it went.
pub(crate) fn place_response(
    target: PathBuf,
    applied: &Applied,
    durable: bool,
) -> anyhow::Result<PathBuf> {
    match write_response_now(&target, &applied.response, durable) {
        Ok(()) => Ok(target),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists) =>
        {
            let stem = target
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = target
                .extension()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let short = applied.file_hash.get(..12).unwrap_or(&applied.file_hash);
            let unique = target.with_file_name(format!("{stem}-{short}.{ext}"));
            write_response_now(&unique, &applied.response, durable)?;
            Ok(unique)
        }
        Err(e) => Err(e),
    }
}

/// How one file of a bulk `apply` went wrong.
pub(crate) enum Outcome {
    /// The file could not be read.
    Read(anyhow::Error),
    /// The portal refused it.
    Refused(PortalError),
    /// Applied, but its response could not be written.
    NotWritten {
        activation: String,
        error: anyhow::Error,
    },
}

/// Files applied at once by a bulk `apply`: enough to fill the writer's groups.
const IN_FLIGHT: usize = 128;

/// An uploaded file's bytes (standard input for `-`), at most one byte more than a lic
/// file may have (the portal then says it is too large).
fn read_upload(file: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = lic_core::format::armor::MAX_FILE_SIZE as u64 + 1;
    if file == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read {}", file.display()))?;
    }
    Ok(bytes)
}

pub(crate) async fn apply(
    g: &Global,
    files: &[PathBuf],
    out_dir: Option<&Path>,
    actor: &Actor,
) -> anyhow::Result<ExitCode> {
    let json = g.format == Format::Json;
    let portal = open(g).await?;
    if let Some(dir) = out_dir {
        // Before anything is applied: a file applied whose response has nowhere to go
        // takes a seat for nothing until it is applied again.
        lic_core::fsutil::create_dir_all(dir, lic_core::fsutil::PUBLIC_DIR_MODE).with_context(
            || {
                format!(
                    "cannot create the output directory {}; nothing was applied: create it, \
                     or choose another directory with --out-dir",
                    dir.display()
                )
            },
        )?;
    }
    let bar = if std::io::stderr().is_terminal() && files.len() > 1 {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut ok, mut refused, mut unwritten) = (0usize, 0usize, 0usize);
    let mut items = Vec::new();
    let mut written = Vec::new();
    // Files are read and applied IN_FLIGHT at a time, so that the portal's writer can
    // group them into one commit; the answers come back in the files' order and are
    // written out one by one (so which of two same-named responses keeps the plain name
    // does not depend on timing).
    // (Each on a task of its own: the checks and signatures use every core.)
    let portal = std::sync::Arc::new(portal);
    let mut answers = futures_util::stream::iter(files)
        .map(|file| {
            let (portal, actor, file) =
                (std::sync::Arc::clone(&portal), actor.clone(), file.clone());
            tokio::spawn(async move {
                let bytes = read_upload(&file).map_err(Outcome::Read)?;
                portal.apply(&bytes, &actor).await.map_err(Outcome::Refused)
            })
        })
        .buffered(IN_FLIGHT);
    for file in files {
        let answer = match answers.next().await {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => Err(Outcome::Read(anyhow::anyhow!("applying it failed: {e}"))),
            None => Err(Outcome::Read(anyhow::anyhow!("no answer"))),
        };
        let result: Result<(Applied, Option<PathBuf>), Outcome> = (|| {
            let applied = answer?;
            let ext = if applied.response_kind == "license" {
                "lic"
            } else {
                "receipt"
            };
            if file == Path::new("-") {
                // Standard output: the response itself, or (JSON) in the document.
                if !json {
                    write_response(Path::new("-"), &applied.response).map_err(|e| {
                        Outcome::NotWritten {
                            activation: applied.activation.clone().unwrap_or_default(),
                            error: e,
                        }
                    })?;
                }
                return Ok((applied, None));
            }
            let name = format!(
                "{}.{ext}",
                file.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "response".into())
            );
            let target = out_dir.map_or_else(|| file.with_file_name(&name), |d| d.join(&name));
            // (Made durable all together once every file is applied.)
            let target =
                place_response(target, &applied, false).map_err(|e| Outcome::NotWritten {
                    activation: applied.activation.clone().unwrap_or_default(),
                    error: e,
                })?;
            written.push(target.clone());
            Ok((applied, Some(target)))
        })();
        // A line may quote the file's strings (a product name, an activation id) and
        // its file name: control characters and bidi overrides are escaped.
        let mut notes = Vec::new();
        let (line, item) = match result {
            Ok((applied, target)) => {
                ok += 1;
                let activation = applied.activation.as_deref().unwrap_or("-");
                let replay = if applied.replay {
                    " (applied before: same response)"
                } else {
                    ""
                };
                let place = target
                    .as_ref()
                    .map_or("-".into(), |t| t.display().to_string());
                let line = format!(
                    "ok       {}  {activation} → {} {place}{replay}",
                    file.display(),
                    applied.response_kind,
                );
                notes.extend(applied.flags.iter().map(|f| format!("FLAGGED: {f}")));
                // A receipt is kept, not installed: say what it is.
                if applied.response_kind == "receipt" {
                    notes.push(applied.note.clone());
                }
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "ok",
                    "kind": applied.kind,
                    "activation": applied.activation,
                    "response_kind": applied.response_kind,
                    "response_file": target.map(|t| t.display().to_string()),
                    "response": if file == Path::new("-") { Some(&applied.response) } else { None },
                    "replay": applied.replay,
                    "file_hash": applied.file_hash,
                    "flags": applied.flags,
                    "note": applied.note,
                });
                (line, item)
            }
            Err(Outcome::NotWritten { activation, error }) => {
                // Applied: the database has it. Applying the file again gives the same
                // response, so the operator can fetch it once the path is sorted out.
                unwritten += 1;
                let (code, message, hint) = describe(&error);
                let line = format!(
                    "APPLIED  {}  {activation}, but the response was not written: {message} \
                     (apply the file again for the same response)",
                    file.display()
                );
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "not-written",
                    "activation": activation,
                    "error": { "code": code, "message": message, "hint": hint },
                });
                (line, item)
            }
            Err(Outcome::Read(e)) => {
                refused += 1;
                let (code, message, hint) = describe(&e);
                let line = format!("REFUSED  {}  error: {message}", file.display());
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "refused",
                    "error": { "code": code, "message": message, "hint": hint },
                });
                (line, item)
            }
            Err(Outcome::Refused(e)) => {
                refused += 1;
                let line = format!("REFUSED  {}  {}: {e}", file.display(), e.code());
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "refused",
                    "error": { "code": e.code(), "message": e.to_string(), "hint": e.hint() },
                });
                (line, item)
            }
        };
        if json {
            items.push(item);
        } else {
            // Each line escaped on its own: a note under an applied file keeps its line,
            // and nothing from a file can start a line of its own.
            let mut text = format!("{}\n", escape(&line));
            for note in &notes {
                text.push_str(&format!("         {}\n", escape(note)));
            }
            bar.suspend(|| print!("{text}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Every response on disk before the command says so (one sync per file, many at
    // once, instead of two in a row per file).
    lic_core::fsutil::sync_files(&written).with_context(|| {
        format!(
            "the {} response file(s) were written but could not be made durable; apply \
             the same files again to write the same responses",
            written.len()
        )
    })?;
    if json {
        print_doc(serde_json::json!({
            "items": items,
            "applied": ok,
            "refused": refused,
            "not_written": unwritten,
        }))?;
    } else {
        let unwritten_note = if unwritten > 0 {
            format!(" ({unwritten} more applied without their response written)")
        } else {
            String::new()
        };
        eprintln!(
            "{} file(s): {ok} applied, {refused} refused{unwritten_note}",
            files.len()
        );
    }
    Ok(if refused == 0 && unwritten == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
