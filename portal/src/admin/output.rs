//! What the admin command prints: text for people, versioned JSON documents for scripts
//! (docs/json-output.md).

use crate::*;

/// The version of every JSON document lic-portal prints (docs/json-output.md).
pub(crate) const JSON_VERSION: u32 = 1;

/// A JSON document: the shape's version first, then the command's fields.
#[derive(serde::Serialize)]
pub(crate) struct Doc<T> {
    pub(crate) format: u32,
    #[serde(flatten)]
    pub(crate) body: T,
}

/// `{"format": 1, …fields}` on standard output (pretty-printed; strings escaped as in
/// [`print_json`]).
pub(crate) fn print_doc(body: serde_json::Value) -> anyhow::Result<()> {
    print_json(&Doc {
        format: JSON_VERSION,
        body,
    })
}

/// `{"format": 1, "error": {"code", "message", "hint"}}` on one line of standard error.
pub(crate) fn print_json_error(code: &str, message: &str, hint: &str) {
    let doc = Doc {
        format: JSON_VERSION,
        body: serde_json::json!({
            "error": { "code": code, "message": message, "hint": hint }
        }),
    };
    match serde_json::to_string(&doc) {
        Ok(line) => eprintln!("{}", escape_json(&line)),
        Err(_) => eprintln!("error: {}", escape(message)),
    }
}

/// JSON on standard output; control and bidi characters in strings as `\uXXXX` escapes.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value)?;
    out(&format!("{}\n", escape_json(&json)))
}

/// Standard output; a closed pipe is not an error.
pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub(crate) fn when(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

pub(crate) fn show_license(l: &LicenseInfo) -> String {
    let who = match (&l.key_hint, &l.user_id) {
        (_, Some(u)) => format!("user {u}"),
        (Some(h), None) => format!("key …{h}"),
        _ => "-".into(),
    };
    let usage = l
        .usage
        .iter()
        .map(|(f, n)| format!("{f}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let who = match &l.customer {
        Some(c) => format!("{who}  customer {c}"),
        None => who,
    };
    format!(
        "{}  {}  {}  seats {}/{}  {}  expires {}  {}\n",
        l.id,
        l.product,
        who,
        l.seats_used,
        l.seats,
        l.status,
        when(l.expires),
        usage
    )
}

pub(crate) fn show_activation(a: &Activation) -> String {
    let raised: u64 = a.flags.iter().map(lic_portal::ops::Flag::raised).sum();
    let fork = match (a.fork.as_deref(), raised) {
        (Some(f), n) if n > 1 => format!("  FLAGGED ({n} flags, latest): {f}"),
        (Some(f), _) => format!("  FLAGGED: {f}"),
        (None, _) => String::new(),
    };
    let state = match a.closed_by.as_deref() {
        Some(by) => format!("{} by {by}", a.state),
        None => a.state.clone(),
    };
    format!(
        "{}  license {}  {state}  device {}  serial {}  last seen {}{}{}\n",
        a.id,
        a.license,
        a.device_kid,
        a.serial,
        when(Some(a.last_accessed)),
        floating_seat(a),
        fork
    )
}

/// A floating seat's state: held or free, the lease's end and its instances, the OED;
/// or the seats of an on-premise floating server's pool.
fn floating_seat(a: &Activation) -> String {
    if let Some(n) = a.pool_seats {
        return if a.state == "active" {
            format!("  pool: {n} seat(s)")
        } else {
            format!("  pool: {n} seat(s), freed")
        };
    }
    if !a.floating || a.state != "active" {
        return String::new();
    }
    let mut parts = vec![if a.held { "HELD" } else { "free" }.to_string()];
    if let Some(t) = a.lease_expires {
        parts.push(format!(
            "lease until {} ({} instance(s))",
            when(Some(t)),
            a.instances
        ));
    }
    if let Some(t) = a.offline_expiry {
        parts.push(format!(
            "{} until {}",
            if a.checked_out { "checked out" } else { "OED" },
            when(Some(t))
        ));
    }
    format!("  floating: {}", parts.join(", "))
}

impl From<PageArgs> for PageRequest {
    fn from(p: PageArgs) -> Self {
        PageRequest {
            limit: p.limit,
            after: p.after,
        }
    }
}

/// A page of a list: `{"format": 1, "items": [...], "next": CURSOR or null}`, or in text
/// a line per item and, when more follow, where the next page starts (on standard error,
/// so that standard output holds only the items).
pub(crate) fn print_page<T: serde::Serialize>(
    page: &Page<T>,
    json: bool,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        return print_doc(serde_json::json!({ "items": page.items, "next": page.next }));
    }
    out(&page.items.iter().map(line).collect::<String>())?;
    if let Some(next) = &page.next {
        eprintln!(
            "more: the next page is the same command with --after {next} (and the same filters)"
        );
    }
    Ok(())
}

/// The device variables of an activation, one per line (for `activation show`). They are
/// whatever the customer's device signed: escaped, so that none can move the cursor or
/// turn a line around on the terminal.
pub(crate) fn show_variables(a: &Activation) -> String {
    use lic_core::text::escape;
    if a.variables.is_empty() {
        return "  no device variables\n".into();
    }
    let mut text = format!(
        "  device variables ({}, as the device last sent them; the customer's claims):\n",
        a.variables.len()
    );
    for (name, value) in &a.variables {
        text.push_str(&format!("    {} = {}\n", escape(name), escape(value)));
    }
    text
}
