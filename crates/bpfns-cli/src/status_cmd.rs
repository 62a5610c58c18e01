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
    /// Containers bpfnsd placed and keeps a record of.
    pub containers: u32,
    /// The latest containers collected (gone, their namespaces deleted), most recent last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collected_containers: Vec<String>,
    /// The caller's namespace when it is a member: bpfnsd then tells only its subtree's
    /// namespaces, and none of the host-wide figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_of: Option<String>,
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
            containers: s.containers,
            collected_containers: s.collected_containers,
            member_of: None,
        }
    }
}

impl Render for StatusView {
    fn render_text(&self) -> String {
        let mut out = format!("{}: running\n", self.server);
        out.push_str(&format!("layers: {}\n", self.layers.join(", ")));
        if self.layers.iter().any(|l| l == "tracepoint backstop") {
            if self.pin_root.is_empty() {
                // A member is not told the host's paths.
                out.push_str("kernel side: loaded\n");
            } else {
                out.push_str(&format!("kernel side: {}\n", self.pin_root));
            }
        } else {
            // Unloaded under bpfnsd (`bpfns kernel unload --force`): only the supervisor runs.
            out.push_str(&format!(
                "kernel side: NOT LOADED at {} (no tagging, recording or backstop): restart \
                 bpfnsd, which loads it\n",
                self.pin_root
            ));
        }
        if !self.state_dir.is_empty() {
            out.push_str(&format!("state: {}\n", self.state_dir));
        }
        if let Some(ns) = &self.member_of {
            out.push_str(&format!(
                "namespaces: {} ({ns} and below; host-wide figures are the host's)\n",
                self.namespaces
            ));
            return out;
        }
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
        out.push_str(&format!("containers: {}\n", self.containers));
        if !self.collected_containers.is_empty() {
            out.push_str("containers collected (latest last):\n");
            for c in &self.collected_containers {
                out.push_str(&format!("  {c}\n"));
            }
        }
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
    let me = c.hello().context("asking bpfnsd who we are")?;
    let mut v: StatusView = c.status().context("asking bpfnsd for its status")?.into();
    if me.namespace != "/" {
        v.member_of = Some(me.namespace);
    }
    Ok(v)
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
            containers: 1,
            collected_containers: vec![],
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

    #[test]
    fn a_member_sees_no_host_wide_figures() {
        let mut v = sample();
        v.namespaces = 1;
        v.counters.clear();
        v.member_of = Some("/s".into());
        let t = v.render_text();
        assert!(t.contains("\nnamespaces: 1 (/s and below"), "{t}");
        assert!(!t.contains("listeners") && !t.contains("counters"), "{t}");
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["member_of"], "/s");
    }
}
