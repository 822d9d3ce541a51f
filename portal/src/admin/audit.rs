//! `lic-portal audit`: the audit log, newest first.

use crate::*;

pub(crate) async fn audit(g: &Global, args: AuditArgs, json: bool) -> anyhow::Result<ExitCode> {
    let AuditArgs { subject, page } = args;
    let portal = open(g).await?;
    let page = portal
        .list_audit(&AuditFilter { subject }, &page.into())
        .await?;
    print_page(&page, json, |e| {
        let at = chrono::DateTime::from_timestamp_millis(e.at)
            .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        format!(
            "{at}  {}  {}  {}{}{}\n",
            e.actor,
            e.action,
            e.subject.as_deref().unwrap_or("-"),
            e.reason
                .as_deref()
                .map_or(String::new(), |r| format!("  reason: {r}")),
            e.file_hash.as_deref().map_or(String::new(), |h| format!(
                "  file {}",
                &h[..16.min(h.len())]
            )),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
