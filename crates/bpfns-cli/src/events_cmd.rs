//! `bpfns events`: bpfnsd's audit event stream, one event a line, until interrupted.

use std::io::Write;

use anyhow::{Context, Result};
use bpfns_client::{Client, ClientError};
use bpfns_proto::{EventInfo, EventKind};

use crate::output::{to_json, Format};

/// Subscribe and print events as they come. Ends when stdout closes (`| head`), or with an
/// error when bpfnsd ends the stream (it dropped us for not keeping up, or it stopped).
pub fn events(
    mut c: Client,
    ns: Option<&str>,
    kinds: Vec<EventKind>,
    format: Format,
) -> Result<()> {
    let covered = c.subscribe(ns, kinds)?;
    tracing::info!("events of namespace {covered} and below");
    let mut out = std::io::stdout().lock();
    loop {
        let ev = match c.next_event() {
            Ok(e) => e,
            Err(ClientError::Closed) => anyhow::bail!(
                "bpfnsd ended the event stream: it drops a subscriber whose queue of unread \
                 events is full (bpfns status counts them: events_subscribers_dropped), and \
                 ends every stream when it stops; subscribe again"
            ),
            Err(e) => return Err(e.into()),
        };
        let line = match format {
            Format::Text => match left_out(&ev) {
                Some(l) => format!("{l}\n{}", text(&ev)),
                None => text(&ev),
            },
            Format::Json => to_json(&ev, false)?,
            // One object after another, each over several lines (`jq` reads such a stream).
            Format::PrettyJson => to_json(&ev, true)?,
        };
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        }
    }
}

/// The time of an event as the text lines give it (UTC, to the millisecond).
fn clock(time_ms: u64) -> String {
    let secs = time_ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:03}Z", time_ms % 1000)
}

/// The line that goes before an event that says events of its tenant were left out just
/// before it (over the tenant's limit of events a second), if it says so.
pub fn left_out(e: &EventInfo) -> Option<String> {
    let n = e.suppressed.filter(|&n| n > 0)?;
    // The tenant: the top-level namespace (the host's callers count as one).
    let tenant = match e.namespace.trim_start_matches('/').split('/').next() {
        Some(top) if !top.is_empty() => format!("/{top}"),
        _ => "the host's callers".to_string(),
    };
    Some(format!(
        "{} … {n} event{} of {tenant} left out (over its limit of events a second)",
        clock(e.time_ms),
        if n == 1 { "" } else { "s" }
    ))
}

/// One event as a line of text: time, kind, namespace, then what applies of who and what.
pub fn text(e: &EventInfo) -> String {
    let mut line = format!("{} {} {}", clock(e.time_ms), e.kind.name(), e.namespace);
    let mut add = |k: &str, v: String| {
        line.push_str(&format!(" {k}={v}"));
    };
    if let Some(p) = e.pid {
        add("pid", p.to_string());
    }
    if let Some(c) = &e.comm {
        add("comm", crate::output::printable(c));
    }
    if let Some(u) = e.uid {
        add("uid", u.to_string());
    }
    if let Some(c) = &e.command {
        add("command", c.clone());
    }
    if let (Some(k), Some(id)) = (e.object_kind, e.object_id) {
        add("object", format!("{k}:{id}"));
    }
    if let Some(n) = e.object_name.as_deref().filter(|n| !n.is_empty()) {
        add("name", n.to_string());
    }
    if let Some(p) = &e.path {
        add("path", format!("{p:?}"));
    }
    if let Some(n) = &e.target_namespace {
        add("target_namespace", n.clone());
    }
    if let Some(p) = e.target_pid {
        add("target_pid", p.to_string());
    }
    if let Some(l) = &e.layer {
        add("layer", l.clone());
    }
    if let Some(r) = &e.reason {
        add("reason", format!("{r:?}"));
    }
    if let Some(p) = &e.policy {
        add("policy", p.to_string());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfns_model::{NsId, ObjectKind};

    #[test]
    fn a_denial_reads_as_one_line() {
        let mut e = EventInfo::new(EventKind::Denied, "/a", NsId(2));
        e.time_ms = 3_723_004;
        e.pid = Some(42);
        e.comm = Some("bpftool".into());
        e.command = Some("BPF_MAP_GET_FD_BY_ID".into());
        e.object_kind = Some(ObjectKind::Map);
        e.object_id = Some(7);
        e.layer = Some("supervisor".into());
        assert_eq!(
            text(&e),
            "01:02:03.004Z denied /a pid=42 comm=bpftool command=BPF_MAP_GET_FD_BY_ID \
             object=map:7 layer=supervisor"
        );
        let mut c = EventInfo::new(EventKind::ObjectCreated, "/a", NsId(2));
        c.time_ms = 0;
        c.pid = Some(7);
        c.comm = Some("bpftool".into());
        c.uid = Some(65534);
        c.command = Some("BPF_MAP_CREATE".into());
        c.object_kind = Some(ObjectKind::Map);
        c.object_id = Some(12);
        c.object_name = Some("tenant_map".into());
        assert_eq!(
            text(&c),
            "00:00:00.000Z object_created /a pid=7 comm=bpftool uid=65534 \
             command=BPF_MAP_CREATE object=map:12 name=tenant_map"
        );
        let mut a = EventInfo::new(EventKind::Denied, "/a", NsId(2));
        a.time_ms = 0;
        a.pid = Some(9);
        a.uid = Some(1000);
        a.command = Some("ns_create".into());
        a.target_namespace = Some("/c".into());
        a.layer = Some("api".into());
        a.reason = Some("permission denied".into());
        assert_eq!(left_out(&a), None);
        a.suppressed = Some(31);
        a.namespace = "/t/x".into();
        assert_eq!(
            left_out(&a).as_deref(),
            Some("00:00:00.000Z … 31 events of /t left out (over its limit of events a second)")
        );
        a.namespace = "/a".into();
        assert_eq!(
            text(&a),
            "00:00:00.000Z denied /a pid=9 uid=1000 command=ns_create target_namespace=/c \
             layer=api reason=\"permission denied\""
        );
    }
}
