//! `bpfns status`: what bpfnsd runs — the enforcement layers, namespaces, supervised members
//! and counters.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use bpfns_client::Client;
use bpfns_proto::StatusInfo;
use serde::Serialize;

use crate::output::{Render, Table};

/// bpfnsd's status; counters as a JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub server: String,
    pub pin_root: String,
    pub state_dir: String,
    /// The layers that enforce, in order: `supervisor`, `tracepoint backstop`, and `BPF LSM`
    /// where the kernel runs it.
    pub layers: Vec<String>,
    pub namespaces: u32,
    /// Members' seccomp listeners bpfnsd answers for.
    pub supervised_listeners: u32,
    /// Listeners the listener keeper holds (so that members stay supervised while bpfnsd
    /// restarts).
    pub kept_listeners: u32,
    pub counters: BTreeMap<String, u64>,
}

impl From<StatusInfo> for StatusView {
    fn from(s: StatusInfo) -> Self {
        Self {
            server: s.server,
            pin_root: s.pin_root,
            state_dir: s.state_dir,
            layers: s.layers,
            namespaces: s.namespaces,
            supervised_listeners: s.supervised_listeners,
            kept_listeners: s.kept_listeners,
            counters: s.counters.into_iter().collect(),
        }
    }
}

impl Render for StatusView {
    fn render_text(&self) -> String {
        let mut out = format!("{}: running\n", self.server);
        out.push_str(&format!("layers: {}\n", self.layers.join(", ")));
        if self.layers.iter().any(|l| l == "tracepoint backstop") {
            out.push_str(&format!("kernel side: {}\n", self.pin_root));
        } else {
            // Unloaded under bpfnsd (`bpfns kernel unload --force`): only the supervisor runs.
            out.push_str(&format!(
                "kernel side: NOT LOADED at {} (no tagging, recording or backstop): restart \
                 bpfnsd, which loads it\n",
                self.pin_root
            ));
        }
        out.push_str(&format!("state: {}\n", self.state_dir));
        out.push_str(&format!(
            "namespaces: {} (with the root)\n",
            self.namespaces
        ));
        out.push_str(&format!(
            "supervised members (seccomp listeners): {}\n",
            self.supervised_listeners
        ));
        out.push_str(&format!(
            "listeners held by the listener keeper: {}\n",
            self.kept_listeners
        ));
        out.push_str("counters:\n");
        let mut t = Table::new(["COUNTER", "VALUE"]);
        for (k, v) in &self.counters {
            t.row([k.clone(), v.to_string()]);
        }
        out.push_str(&t.render_indented(2));
        out
    }
}

pub fn status(c: &mut Client) -> Result<StatusView> {
    Ok(c.status().context("asking bpfnsd for its status")?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatusView {
        StatusInfo {
            server: "bpfnsd 0.1.0".into(),
            pin_root: "/sys/fs/bpf/bpfns".into(),
            state_dir: "/var/lib/bpfns".into(),
            layers: vec![
                "supervisor".into(),
                "tracepoint backstop".into(),
                "BPF LSM".into(),
            ],
            namespaces: 3,
            supervised_listeners: 2,
            kept_listeners: 2,
            counters: vec![("tasks_stopped".into(), 1), ("lsm_opens_refused".into(), 4)],
        }
        .into()
    }

    #[test]
    fn json_has_counters_as_an_object() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["counters"]["lsm_opens_refused"], 4);
        assert_eq!(v["layers"][2], "BPF LSM");
        assert_eq!(v["supervised_listeners"], 2);
        assert_eq!(v["kept_listeners"], 2);
    }

    #[test]
    fn text_names_the_layers() {
        let t = sample().render_text();
        assert!(t.starts_with("bpfnsd 0.1.0: running\n"), "{t}");
        assert!(
            t.contains("\nlayers: supervisor, tracepoint backstop, BPF LSM\n"),
            "{t}"
        );
        assert!(t.contains("  lsm_opens_refused  4\n"), "{t}");
    }
}
