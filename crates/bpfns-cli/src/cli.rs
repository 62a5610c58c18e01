//! The command line, as clap derive types. Parsing only: the commands live in their modules.

use std::ffi::OsString;
use std::path::PathBuf;

use bpfns_kernel::layout::DEFAULT_PIN_ROOT;
use clap::{Args, Parser, Subcommand};

use crate::output::Format;

const ABOUT: &str = "BPF namespaces: per-namespace visibility of BPF programs, maps, links and BTF";

const LONG_ABOUT: &str = "\
BPF namespaces: per-namespace visibility of BPF programs, maps, links and BTF objects on \
unmodified Linux kernels.

Output is a plain table by default; -j prints JSON, -p pretty-printed JSON (as bpftool does). \
Errors go to stderr, with a sentence on what a kernel errno means and what to do; with -j \
also on stdout as {\"error\": {\"code\": CODE, \"message\": TEXT}} (and \"errno\", \
\"hint\" when a kernel call failed).

Exit status (and -j error code):
  0  success
  1  any other error (internal, unavailable: bpfnsd does not answer, failed: a kernel call \
or I/O)
  2  bad usage: the command line, or a request bpfnsd finds malformed (bad_request)
  3  no such namespace, object or process, or not visible to you (not_found)
  4  not allowed (denied)
  5  the state forbids it now: exists already, has members or children (conflict)
  6  a limit of bpfnsd (limit_reached)
`bpfns exec` exits with its command's status once the command runs (126: it cannot be run, \
127: not found); `bpfns doctor` exits 1 when a required feature is missing, `bpfns kernel \
status` when the kernel side is not loaded.

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to see more.";

const LOW_LEVEL: &str = "\
Debugging aid for a kernel side no bpfnsd serves: it writes straight into the pinned maps. \
Refused while a bpfnsd serves the pin root (namespaces proper — path names, policy, limits, \
membership — are bpfnsd's, through `bpfns ns` and `bpfns exec`).";

/// `bpfns`: the command-line tool for BPF namespaces.
#[derive(Debug, Parser)]
#[command(name = "bpfns", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Print JSON (an empty list is `[]`; `bpfns events`: one object a line).
    #[arg(short = 'j', long, global = true)]
    pub json: bool,

    /// Print pretty-printed JSON (implies --json; `bpfns events`: one object after another,
    /// each over several lines).
    #[arg(short = 'p', long, global = true)]
    pub pretty: bool,

    /// bpfnsd's socket (also $BPFNS_SOCKET).
    #[arg(long, global = true, value_name = "PATH", env = "BPFNS_SOCKET", default_value = bpfns_proto::DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Where the kernel side is pinned in bpffs.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line, parsed: by [`Cli::exec_fast`] when it is a plain `bpfns exec`, else
    /// by clap.
    pub fn parse_args(args: &[OsString]) -> Result<Self, clap::Error> {
        match Self::exec_fast(args, std::env::var_os("BPFNS_SOCKET")) {
            Some(cli) => Ok(cli),
            None => Self::try_parse_from(args),
        }
    }

    /// What `bpfns --version` (or `-V`) prints, without building clap's command tree (~1 ms
    /// of a 2 ms process): the floor of a `bpfns` process that benchmarks measure. A test
    /// holds it to clap's own rendering.
    pub fn version_fast(args: &[OsString]) -> Option<String> {
        match args {
            [_, flag] if flag == "--version" || flag == "-V" => {
                Some(format!("bpfns {}\n", env!("CARGO_PKG_VERSION")))
            }
            _ => None,
        }
    }

    /// `bpfns [--socket P] [--pin-root P] exec [--user U] [--caps C] [--writable-cgroups] NS
    /// -- CMD [ARGS...]` (each flag at most once, `--flag=value` too) without clap: building
    /// the whole command tree takes longer than the rest of starting a member (~0.6 ms), and
    /// `bpfns exec` is what runtimes and scripts run per process. Anything else — another
    /// flag, no `--`, a namespace that looks like a flag — is `None`, left to clap. A test
    /// holds both parsers to the same answers.
    pub fn exec_fast(args: &[OsString], socket_env: Option<OsString>) -> Option<Self> {
        let mut rest = args.get(1..)?.iter();
        let mut socket = None;
        let mut pin_root = None;
        let mut user = None;
        let mut caps = None;
        let mut writable_cgroups = false;
        let mut in_exec = false;
        // A flag's value, given as `--flag=value` or as the next argument; `None` when it is
        // missing or the flag was given before.
        fn value<'a>(
            slot: &mut Option<OsString>,
            inline: Option<&[u8]>,
            rest: &mut impl Iterator<Item = &'a OsString>,
        ) -> Option<()> {
            use std::os::unix::ffi::OsStrExt;
            if slot.is_some() {
                return None;
            }
            let v = match inline {
                Some(v) => std::ffi::OsStr::from_bytes(v).to_os_string(),
                None => rest.next()?.clone(),
            };
            // An empty or flag-like value is left to clap's judgement.
            if v.is_empty() || v.as_encoded_bytes().starts_with(b"-") {
                return None;
            }
            *slot = Some(v);
            Some(())
        }
        let namespace = loop {
            let a = rest.next()?;
            let bytes = a.as_encoded_bytes();
            let (name, inline) = match bytes.iter().position(|&b| b == b'=') {
                Some(i) if bytes.starts_with(b"--") => (&bytes[..i], Some(&bytes[i + 1..])),
                _ => (bytes, None),
            };
            match name {
                b"--socket" => value(&mut socket, inline, &mut rest)?,
                b"--pin-root" => value(&mut pin_root, inline, &mut rest)?,
                b"exec" if !in_exec && inline.is_none() => in_exec = true,
                b"--user" if in_exec => value(&mut user, inline, &mut rest)?,
                b"--caps" if in_exec => value(&mut caps, inline, &mut rest)?,
                b"--writable-cgroups" if in_exec && inline.is_none() && !writable_cgroups => {
                    writable_cgroups = true
                }
                _ if in_exec && !bytes.starts_with(b"-") => break a.to_str()?.to_string(),
                _ => return None,
            }
        };
        if rest.next()?.as_encoded_bytes() != b"--" {
            return None;
        }
        let command: Vec<OsString> = rest.cloned().collect();
        if command.is_empty() {
            return None;
        }
        let socket = match (socket, socket_env) {
            (Some(s), _) => s,
            // clap takes an empty variable as unset; left to it.
            (None, Some(e)) if e.is_empty() => return None,
            (None, Some(e)) => e,
            (None, None) => bpfns_proto::DEFAULT_SOCKET.into(),
        };
        // `Some(None)`: not given; `None`: not UTF-8 (clap's error).
        let utf8 = |v: Option<OsString>| match v {
            None => Some(None),
            Some(v) => v.into_string().ok().map(Some),
        };
        Some(Cli {
            json: false,
            pretty: false,
            socket: socket.into(),
            pin_root: pin_root.map_or_else(|| DEFAULT_PIN_ROOT.into(), PathBuf::from),
            command: Command::Exec {
                user: utf8(user)?,
                caps: utf8(caps)?,
                writable_cgroups,
                namespace,
                command,
            },
        })
    }

    /// The output format the flags ask for.
    pub fn format(&self) -> Format {
        Format::from_flags(self.json, self.pretty)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script: `bpfns completions bash > /etc/bash_completion.d/bpfns`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff): `bpfns man | man -l -`.
    Man,

    /// Probe the running kernel for every feature bpfns uses.
    ///
    /// Exits 0 when every required feature is present, 1 otherwise.
    Doctor,

    /// bpfnsd's status: the enforcement layers that run, namespaces, supervised members,
    /// counters.
    ///
    /// The layers are the seccomp supervisor and the tracepoint backstop everywhere, and BPF
    /// LSM where the kernel runs BPF LSM programs (`bpfns doctor` says why not elsewhere).
    Status,

    /// A live stream of what tenants do: namespaces created, deleted, their policy changed,
    /// processes entering them; objects members created, and objects gone (freed, their
    /// record dropped); calls refused (by the supervisor, or by the kernel side) and tasks
    /// the kernel side's backstop stopped.
    ///
    /// One event a line (with -j, a JSON object a line, with -p one pretty-printed object
    /// after another; fields in docs/protocol.md) until interrupted. A namespace member sees the events of its own namespace and below only.
    /// Refusals are reported with the layer that refused: the supervisor, the kernel side
    /// (lsm, backstop) or bpfnsd's API (api).
    ///
    /// A tenant (a top-level namespace with everything below it) makes at most
    /// events_per_namespace_per_sec events a second (bpfnsd.toml; 50 by default): the rest
    /// are left out and counted (events_suppressed in `bpfns status`), and a line before the
    /// tenant's next event says how many (with -j, its `suppressed` field). bpfnsd drops a
    /// subscriber that does not keep reading (its queue is bounded): the stream then ends
    /// with an error and `bpfns status` counts it (events_subscribers_dropped). Needs CAP_BPF
    /// or CAP_SYS_ADMIN, as listing namespaces does.
    #[command(
        after_help = "Example: refusals and stops in /tenant-a and below, as JSON lines:
                              bpfns events -j --ns /tenant-a --kind denied,stopped"
    )]
    Events {
        /// Only the events of this namespace and below.
        #[arg(long, value_name = "PATH")]
        ns: Option<String>,
        /// Only these kinds (comma-separated): ns_created, ns_deleted, ns_policy_changed,
        /// ns_quota_changed, member_entered, denied, stopped, object_created, object_gone.
        #[arg(long, value_name = "KIND,...", value_delimiter = ',')]
        kind: Vec<bpfns_proto::EventKind>,
    },

    /// Namespaces: create, list (as a tree, with object and member counts), show, delete, ps,
    /// identify.
    ///
    /// Served by bpfnsd. Host root may manage any namespace; a namespace member may manage
    /// only namespaces below its own.
    #[command(subcommand)]
    Ns(NsCmd),

    /// Run a command as a member of a namespace: `bpfns exec NS -- CMD [ARGS...]`.
    ///
    /// CMD starts already in NS (its task tag is set before exec, and everything it starts
    /// inherits it), under bpfns's seccomp filter (its bpf() calls that list or open objects
    /// are answered by bpfnsd from NS's view), and in a private mount namespace whose
    /// /sys/fs/bpf is NS's own bpffs and the cgroup filesystems are read-only. Otherwise CMD keeps your credentials — host root stays
    /// host root, but sees only NS's objects — unless --user or --caps say otherwise; where NS
    /// denies tracing, CMD never holds CAP_PERFMON. Signals sent to `bpfns exec` (INT, TERM,
    /// HUP, QUIT, USR1, USR2, WINCH) go on to CMD, and `bpfns exec` exits with CMD's status
    /// once CMD has ended (126: it cannot be run, 127: not found; a command bpfns's kernel side
    /// stopped is explained). Inside a namespace, exec can only go deeper.
    #[command(after_help = "Example: a member that may load BPF and nothing else:
                              bpfns exec --user nobody --caps bpf /tenant-a -- bpftool map show")]
    Exec {
        /// Run CMD as this user (a name or a number; with :GROUP, that group, else the
        /// user's), supplementary groups cleared.
        #[arg(long, value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// Run CMD with only these capabilities (comma-separated, e.g. bpf,net_admin; `none`),
        /// kept across the exec even for a non-root --user; every other one is dropped from
        /// every set, the bounding set included.
        #[arg(long, value_name = "CAPS")]
        caps: Option<String>,
        /// Leave the cgroup filesystems writable for CMD. By default a member started by host
        /// root sees them read-only, so that it cannot move other processes into the cgroup
        /// its programs are attached to.
        #[arg(long)]
        writable_cgroups: bool,
        /// The namespace (path), e.g. /tenant-a.
        namespace: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },

    /// Which namespace's BPF programs use the CPU: a live view in the manner of bpftop.
    ///
    /// Programs (id, name, type, owner namespace, share of one CPU, runs per second, time per
    /// run) and a total per namespace, busiest first, redrawn every interval; q, Esc or
    /// Ctrl-C quits, space pauses. With -j (or when stdout is not a terminal) one sample over
    /// one interval is printed instead. A namespace member sees its own subtree only.
    ///
    /// The kernel counts programs' run time only while BPF run-time statistics are on:
    /// bpfnsd turns them on for as long as `bpfns top` runs (BPF_ENABLE_STATS; each program
    /// run then costs two clock reads) and the kernel turns them off when it ends, however
    /// it ends; the live view says so on screen, a sample on stderr. Needs what listing
    /// programs needs (CAP_BPF or CAP_SYS_ADMIN).
    #[command(
        after_help = "Example: the busiest programs of /tenant-a and below, as JSON:
                              bpfns top -j --namespace /tenant-a -r"
    )]
    Top {
        /// Seconds between samples.
        #[arg(long, short = 'd', default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
        /// Only this namespace's programs.
        #[arg(long, short = 'n', value_name = "PATH")]
        namespace: Option<String>,
        /// With --namespace: and those of the namespaces below it.
        #[arg(long, short = 'r', requires = "namespace")]
        recursive: bool,
    },

    /// Load, inspect and unload the kernel side (needs root).
    #[command(subcommand)]
    Kernel(KernelCmd),

    /// Container engines: register bpfns-oci, the OCI runtime wrapper that puts every
    /// container in a BPF namespace of its own.
    #[command(subcommand)]
    Containers(ContainersCmd),

    /// BPF programs with their owner namespaces: list, show, dump xlated.
    Prog(ProgArgs),

    /// BPF maps with their owner namespaces: list, show, dump.
    Map(MapArgs),

    /// BPF links with their owner namespaces and attach points: list, show.
    Link(LinkArgs),

    /// BTF objects with their owner namespaces: list, show, dump (a summary).
    Btf(BtfArgs),
}

const OBJECTS_AFTER: &str = "\
Without a subcommand, lists every object of this kind you may see (as `list` does).
OBJECT is ID, `id ID` or `pinned PATH` (maps and programs also `name NAME`, programs \
`tag TAG`), as bpftool takes them.";

/// Which namespace's objects a listing shows.
#[derive(Debug, Clone, Default, Args)]
pub struct NsFilter {
    /// Only the objects that namespace owns (a path, e.g. /tenant-a).
    #[arg(long, global = true, value_name = "PATH")]
    pub namespace: Option<String>,
    /// With --namespace: the objects of the namespaces below it too.
    #[arg(short = 'r', long, global = true, requires = "namespace")]
    pub recursive: bool,
}

/// One object, or the objects with a name or tag, as bpftool names them on its command line.
#[derive(Debug, Clone, Default, Args)]
pub struct Target {
    /// ID, `id ID`, `pinned PATH`, `name NAME` (maps, programs) or `tag TAG` (programs).
    #[arg(value_name = "OBJECT", num_args = 0..=2)]
    pub words: Vec<String>,
}

/// What an object command asks, whatever the kind.
#[derive(Debug, Clone, Copy)]
pub enum ObjectCmd<'a> {
    List,
    Show(&'a Target),
    Dump(&'a Target),
}

/// `bpfns map`.
#[derive(Debug, Args)]
#[command(after_help = OBJECTS_AFTER)]
pub struct MapArgs {
    #[command(subcommand)]
    pub action: Option<MapAction>,
    #[command(flatten)]
    pub filter: NsFilter,
}

#[derive(Debug, Subcommand)]
pub enum MapAction {
    /// List every map you may see, with its owner namespace, sizes and flags.
    #[command(visible_alias = "ls")]
    List,
    /// Show one map (OBJECT), the maps with a name, or all of them.
    Show(Target),
    /// Print every key and value of a map (hex bytes, as bpftool does), read through a
    /// read-only descriptor. Ring buffers, queues, stacks and bloom filters have no keys.
    Dump(Target),
}

/// `bpfns prog`.
#[derive(Debug, Args)]
#[command(after_help = OBJECTS_AFTER)]
pub struct ProgArgs {
    #[command(subcommand)]
    pub action: Option<ProgAction>,
    #[command(flatten)]
    pub filter: NsFilter,
}

#[derive(Debug, Subcommand)]
pub enum ProgAction {
    /// List every program you may see, with its owner namespace, tag, load time, uid, sizes,
    /// maps and attach points (those the links you may see tell).
    #[command(visible_alias = "ls")]
    List,
    /// Show one program (OBJECT), the programs with a name or tag, or all of them.
    Show(Target),
    /// Print a program's instructions.
    #[command(subcommand)]
    Dump(ProgDump),
}

#[derive(Debug, Subcommand)]
pub enum ProgDump {
    /// Its instructions as the verifier left them, disassembled (as `bpftool prog dump
    /// xlated`; helper calls show their number only). Needs CAP_BPF.
    Xlated(Target),
}

/// `bpfns link`.
#[derive(Debug, Args)]
#[command(after_help = OBJECTS_AFTER)]
pub struct LinkArgs {
    #[command(subcommand)]
    pub action: Option<LinkAction>,
    #[command(flatten)]
    pub filter: NsFilter,
}

#[derive(Debug, Subcommand)]
pub enum LinkAction {
    /// List every link you may see, with its owner namespace, program and attach point.
    #[command(visible_alias = "ls")]
    List,
    /// Show one link (OBJECT: ID, `id ID`, `pinned PATH`), or all of them.
    Show(Target),
}

/// `bpfns btf`.
#[derive(Debug, Args)]
#[command(after_help = OBJECTS_AFTER)]
pub struct BtfArgs {
    #[command(subcommand)]
    pub action: Option<BtfAction>,
    #[command(flatten)]
    pub filter: NsFilter,
}

#[derive(Debug, Subcommand)]
pub enum BtfAction {
    /// List every BTF object you may see, with its owner namespace, name and size.
    #[command(visible_alias = "ls")]
    List,
    /// Show one BTF object (OBJECT: ID or `id ID`), or all of them.
    Show(Target),
    /// Summarise a BTF object's raw data: its types by kind and its sections' sizes.
    Dump(Target),
}

impl MapArgs {
    pub fn cmd(&self) -> ObjectCmd<'_> {
        match &self.action {
            None | Some(MapAction::List) => ObjectCmd::List,
            Some(MapAction::Show(t)) => ObjectCmd::Show(t),
            Some(MapAction::Dump(t)) => ObjectCmd::Dump(t),
        }
    }
}

impl ProgArgs {
    pub fn cmd(&self) -> ObjectCmd<'_> {
        match &self.action {
            None | Some(ProgAction::List) => ObjectCmd::List,
            Some(ProgAction::Show(t)) => ObjectCmd::Show(t),
            Some(ProgAction::Dump(ProgDump::Xlated(t))) => ObjectCmd::Dump(t),
        }
    }
}

impl LinkArgs {
    pub fn cmd(&self) -> ObjectCmd<'_> {
        match &self.action {
            None | Some(LinkAction::List) => ObjectCmd::List,
            Some(LinkAction::Show(t)) => ObjectCmd::Show(t),
        }
    }
}

impl BtfArgs {
    pub fn cmd(&self) -> ObjectCmd<'_> {
        match &self.action {
            None | Some(BtfAction::List) => ObjectCmd::List,
            Some(BtfAction::Show(t)) => ObjectCmd::Show(t),
            Some(BtfAction::Dump(t)) => ObjectCmd::Dump(t),
        }
    }
}

/// Limits per kind of object, beside --max-objects (`bpfns ns create|quota`).
///
/// Each counts the namespace's objects of that kind with its descendants' (a map of /a/b counts
/// in /a/b's and /a's), is never above the nearest ancestor's limit of the kind nor above the
/// namespace's --max-objects, and is stored with the namespace. Unset: only --max-objects (and
/// the ancestors' limits) applies; new namespaces get bpfnsd.toml's `[quota]` ones, if any.
///
/// Over a limit, the creation fails for its creator: where the kernel answers it (maps, BTF;
/// program loads and links where tracing is allowed), a map or program is refused with EPERM
/// where the BPF LSM layer runs, and otherwise (BTF and links always) the creator is stopped
/// (SIGKILL; `bpfns why-stopped` says "quota"); a program load or link that bpfnsd makes for
/// a member (where tracing is denied) fails with EDQUOT. Delete objects (or raise the limit)
/// and the next creation goes in.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct KindLimitArgs {
    /// How many maps it may own with its descendants (failing over it as over
    /// --max-objects). New namespaces: default bpfnsd.toml's [quota] max_maps, at most the
    /// nearest ancestor's; none: only --max-objects.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_maps: Option<u32>,
    /// How many programs it may own with its descendants (failing over it as over
    /// --max-objects). New namespaces: default bpfnsd.toml's [quota] max_progs, at most the
    /// nearest ancestor's; none: only --max-objects.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_progs: Option<u32>,
    /// How many links it may own with its descendants (failing over it as over
    /// --max-objects). New namespaces: default bpfnsd.toml's [quota] max_links, at most the
    /// nearest ancestor's; none: only --max-objects.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_links: Option<u32>,
    /// How many BTF objects it may own with its descendants (failing over it as over
    /// --max-objects). New namespaces: default bpfnsd.toml's [quota] max_btf, at most the
    /// nearest ancestor's; none: only --max-objects.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_btf: Option<u32>,
}

impl KindLimitArgs {
    /// As the protocol takes them.
    pub fn limits(&self) -> bpfns_model::quota::KindLimits {
        bpfns_model::quota::KindLimits {
            max_progs: self.max_progs,
            max_maps: self.max_maps,
            max_links: self.max_links,
            max_btf: self.max_btf,
        }
    }
}

/// A namespace's policy, in bpffs's `delegate_*` vocabulary (names as the kernel's enums
/// name them, lowercased without the prefix: `map_create`, `hash`, `socket_filter`,
/// `cgroup_inet_ingress`; or `any`). `--allow-X LIST` makes X exactly LIST; `--deny-X LIST`
/// then takes LIST out. Without any, a new namespace gets every command, map and attach
/// type and every program type but the tracing class, as far as its parent allows.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyFlags {
    /// Let members load tracing-class programs (kprobes, tracepoints, tracing and iterator
    /// programs, LSM, struct_ops, ext: they can read kernel memory); shorthand for adding
    /// them to --allow-progs. The parent must allow them too.
    #[arg(long, conflicts_with = "deny_tracing")]
    pub allow_tracing: bool,
    /// Take the tracing-class program types out (the default for new namespaces).
    #[arg(long)]
    pub deny_tracing: bool,
    /// The bpf() commands members may call (delegate_cmds), e.g. map_create,prog_load or any.
    #[arg(long, value_name = "LIST")]
    pub allow_cmds: Option<String>,
    /// The map types members may create (delegate_maps), e.g. array,hash or any.
    #[arg(long, value_name = "LIST")]
    pub allow_maps: Option<String>,
    /// The program types members may load (delegate_progs), e.g. socket_filter,xdp or any.
    #[arg(long, value_name = "LIST")]
    pub allow_progs: Option<String>,
    /// The attach types members may use (delegate_attachs), e.g. cgroup_inet_ingress or any.
    #[arg(long, value_name = "LIST")]
    pub allow_attachs: Option<String>,
    /// bpf() commands to refuse members, e.g. map_create.
    #[arg(long, value_name = "LIST")]
    pub deny_cmds: Option<String>,
    /// Map types to refuse members, e.g. hash.
    #[arg(long, value_name = "LIST")]
    pub deny_maps: Option<String>,
    /// Program types to refuse members, e.g. xdp.
    #[arg(long, value_name = "LIST")]
    pub deny_progs: Option<String>,
    /// Attach types to refuse members, e.g. cgroup_inet_egress.
    #[arg(long, value_name = "LIST")]
    pub deny_attachs: Option<String>,
}

impl PolicyFlags {
    /// Whether any flag was given.
    pub fn any(&self) -> bool {
        self.allow_tracing
            || self.deny_tracing
            || self
                .allows()
                .iter()
                .chain(self.denies().iter())
                .any(|(_, l)| l.is_some())
    }

    fn allows(&self) -> [(bpfns_model::Field, &Option<String>); 4] {
        use bpfns_model::Field;
        [
            (Field::Cmds, &self.allow_cmds),
            (Field::Maps, &self.allow_maps),
            (Field::Progs, &self.allow_progs),
            (Field::Attachs, &self.allow_attachs),
        ]
    }

    fn denies(&self) -> [(bpfns_model::Field, &Option<String>); 4] {
        use bpfns_model::Field;
        [
            (Field::Cmds, &self.deny_cmds),
            (Field::Maps, &self.deny_maps),
            (Field::Progs, &self.deny_progs),
            (Field::Attachs, &self.deny_attachs),
        ]
    }

    /// `base` with the flags applied: the allow lists replace their field, then tracing is
    /// added or taken out, then the deny lists are taken out. An unknown name is an error
    /// that lists the valid ones.
    pub fn apply(
        &self,
        base: bpfns_model::Policy,
    ) -> Result<bpfns_model::Policy, bpfns_sys::names::UnknownName> {
        use bpfns_sys::names::parse_list;
        let mut p = base;
        for (f, list) in self.allows() {
            if let Some(l) = list {
                p.set(f, parse_list(f, l)?);
            }
        }
        if self.allow_tracing {
            p = p.with_tracing();
        }
        if self.deny_tracing {
            p.progs = p.progs.minus(bpfns_model::TRACING_PROGS);
        }
        for (f, list) in self.denies() {
            if let Some(l) = list {
                p.set(f, p.get(f).minus(parse_list(f, l)?));
            }
        }
        Ok(p)
    }
}

#[derive(Debug, Subcommand)]
pub enum NsCmd {
    /// Create a namespace; its parent must exist (e.g. /tenant-a/ci needs /tenant-a).
    ///
    /// Its members may not load tracing-class programs (kprobes, tracepoints, tracing and
    /// iterator programs, LSM, struct_ops, ext: they can read kernel memory) unless
    /// --allow-tracing is given, which its parent must allow too.
    ///
    /// It may own --max-objects objects with its descendants, and of a kind with a limit
    /// (--max-maps, --max-progs, --max-links, --max-btf) that many. Over a limit the creation
    /// fails for its creator: where the kernel answers it (maps, BTF; program loads and
    /// links where tracing is allowed), a map or program is refused with EPERM where the BPF
    /// LSM layer runs, and otherwise (BTF and links always) the creator is stopped (SIGKILL,
    /// reason quota); a program load or link that bpfnsd makes for a member (where tracing is
    /// denied) fails with EDQUOT. Change limits later with `bpfns ns quota`.
    Create {
        /// The new namespace, e.g. /tenant-a or /tenant-a/ci.
        path: String,
        #[command(flatten)]
        policy: PolicyFlags,
        /// How many objects (programs, maps, links, BTF) it may own with its descendants
        /// [default: bpfnsd's max_objects, at most the parent's]; creating more fails for the
        /// creator (EPERM with BPF LSM, else stopped; EDQUOT for program loads and links
        /// bpfnsd makes). Not above the parent's; top-level namespaces share the kernel's
        /// ownership table (about a million records).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_objects: Option<u32>,
        /// Limits per kind (see `bpfns ns quota --help`).
        #[command(flatten)]
        limits: KindLimitArgs,
        /// Bind it to this cgroup v2 cgroup (a path below the cgroup2 root, /x/y, or under
        /// its mount, /sys/fs/cgroup/x/y): its members may attach programs to it and the
        /// cgroups below it, to no other. Without it, its first member's cgroup binds it
        /// (a container's own cgroup). Below a namespace other than the root: within the
        /// parent's cgroup.
        #[arg(long, value_name = "PATH")]
        cgroup: Option<String>,
        /// Create missing ancestors too (with the default policy and limit), and do not fail if
        /// the namespace exists (as `mkdir -p`; `-p` itself is pretty JSON, as in bpftool).
        #[arg(long)]
        parents: bool,
    },
    /// Change a namespace's limits on the objects it may own with its descendants.
    ///
    /// --max-objects counts every kind; --max-maps, --max-progs, --max-links and --max-btf one
    /// kind each. Limits not given are kept. A namespace's limit is never above its parent's
    /// (per kind: the nearest ancestor's) nor below a child's: raise from the top down, lower
    /// from the bottom up. Host root may change any namespace but the root; a member only the
    /// namespaces below its own. Objects over a lowered limit stay; new ones fail until enough
    /// are gone.
    ///
    /// Over a limit, the creation fails for its creator: where the kernel answers it (maps,
    /// BTF; program loads and links where tracing is allowed), a map or program is refused with
    /// EPERM where the BPF LSM layer runs, and otherwise (BTF and links always) the creator is
    /// stopped (SIGKILL; `bpfns why-stopped` says "quota"); a program load or link that bpfnsd
    /// makes for a member (where tracing is denied) fails with EDQUOT.
    Quota {
        /// The namespace, e.g. /tenant-a.
        path: String,
        /// How many objects of every kind it may own with its descendants.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_objects: Option<u32>,
        #[command(flatten)]
        limits: KindLimitArgs,
    },
    /// Change a namespace's program policy.
    /// Show or change a namespace's policy: the bpf() commands, map types, program types and
    /// attach types its members may use.
    ///
    /// Without flags, prints it (its own, and what its ancestors cap it to). With flags,
    /// changes it starting from the current one. A namespace never allows more than its
    /// parent: widen from the top down, narrow from the bottom up. Host root may change any
    /// namespace but the root; a member only the namespaces below its own. Takes effect at
    /// once for every member's next program load, attach and link; commands and map types
    /// for members that enter afterwards (those inside keep the filter they entered with;
    /// the supervisor and the kernel side still refuse them programs, attach types and map
    /// types outside the new policy); narrowing unloads nothing loaded before.
    Policy {
        /// The namespace, e.g. /tenant-a.
        path: String,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// List the namespaces you can see as a tree, with object and member counts.
    #[command(visible_alias = "ls")]
    List,
    /// Show one namespace.
    Show { path: String },
    /// The member processes of a namespace: pid, command, uid, threads and namespace.
    ///
    /// Process ids are bpfnsd's (the host's pid namespace). You see your own namespace and
    /// those below it.
    Ps {
        /// The namespace, e.g. /tenant-a.
        path: String,
        /// Those of the namespaces below it too.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Which namespace a process is in (`/` for none).
    ///
    /// A process outside your namespace and those below it is not found, as one that does
    /// not exist.
    Identify {
        /// The process id (bpfnsd's: the host's pid namespace).
        #[arg(value_parser = clap::value_parser!(i32).range(1..))]
        pid: i32,
    },
    /// Delete a namespace; its objects (and pins, under orphans/NAME-ID in the parent's
    /// bpffs) move to its parent.
    ///
    /// Refused while it has children (unless -r) or member tasks (unless --force). A
    /// deletion that fails changes nothing.
    #[command(visible_alias = "rm")]
    Delete {
        path: String,
        /// Delete its descendants first, deepest first.
        #[arg(short, long)]
        recursive: bool,
        /// Kill (SIGKILL) the member tasks of each namespace deleted, instead of refusing.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainersCmd {
    /// Register bpfns-oci with a container engine (podman, docker, containerd), or undo it.
    ///
    /// podman: a drop-in /etc/containers/containers.conf.d/bpfns.conf with the runtimes
    /// bpfns-crun and bpfns-runc; docker: the runtime `bpfns` in /etc/docker/daemon.json;
    /// containerd: the CRI runtime `bpfns` (runc v2 shim, BinaryName the wrapper) in
    /// /etc/containerd/config.toml. The existing configuration is merged, keeping every other
    /// setting and comment; the links bpfns-oci-crun and bpfns-oci-runc are made beside
    /// bpfns-oci. What was there before is kept under /var/lib/bpfns/containers, and --undo
    /// puts it back byte for byte (a file that did not exist is removed). Running it again
    /// changes nothing. Without --default, containers use bpfns only when asked (podman run
    /// --runtime bpfns-runc, docker run --runtime bpfns).
    #[command(after_help = "Examples:
  bpfns containers install --engine podman --default --dry-run   # show the change
  bpfns containers install --engine docker
  bpfns containers install --engine docker --undo")]
    Install(InstallArgs),
}

/// A container engine bpfns-oci can be registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Podman,
    Docker,
    Containerd,
}

/// The real OCI runtime bpfns-oci runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OciRuntime {
    Runc,
    Crun,
}

/// `bpfns containers install`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// The engine.
    #[arg(long, value_enum, default_value = "podman")]
    pub engine: Engine,
    /// Make bpfns the engine's default runtime: every container runs under it.
    #[arg(long)]
    pub default: bool,
    /// The runtime bpfns-oci runs for docker and containerd, and podman's default with
    /// --default (both work: docs/containers.md) [default: the engine's own default: runc for
    /// docker and containerd; for podman the `runtime` its containers.conf files name, else
    /// crun, podman's built-in default].
    #[arg(long, value_enum)]
    pub runtime: Option<OciRuntime>,
    /// Put back what was there before bpfns registered itself.
    #[arg(long)]
    pub undo: bool,
    /// Print the change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go on although the configuration changed since bpfns wrote it (--undo then puts back
    /// what was there before bpfns, losing those changes).
    #[arg(long)]
    pub force: bool,
    /// Do not signal dockerd to reload its configuration.
    #[arg(long)]
    pub no_reload: bool,
    /// Read and write the engine's configuration and bpfns's records below DIR instead of
    /// / (for images and tests); the engine is not signalled.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The engine's configuration file [default: the engine's, as above].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Where bpfns keeps what was there before [default: /var/lib/bpfns/containers].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The bpfns-oci executable [default: beside bpfns, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub wrapper: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KernelCmd {
    /// Load (or upgrade in place) the kernel side and pin it under --pin-root.
    ///
    /// Mounts bpffs if needed; pinned state (task tags, ownership, namespace table) from an
    /// earlier load is reused, and the programs are swapped without a gap in enforcement.
    Load,

    /// Detach the kernel side and remove its pins. Tags and ownership records are lost.
    ///
    /// Refused while the kernel side is in use — a bpfnsd serves it (on --socket), or its
    /// namespace table or task tags are not empty — since that switches enforcement off
    /// for every namespace member; stop bpfnsd first, or pass --force.
    Unload {
        /// Unload even while it is in use (with a warning).
        #[arg(long)]
        force: bool,
    },

    /// Whether the kernel side is loaded, with its programs, counters, namespace table and
    /// number of ownership records.
    ///
    /// Exits 0 when loaded, 1 when not.
    Status,

    /// Remove ownership records of objects that no longer exist.
    Gc,

    /// Debugging aids that write the kernel side's tables directly (hidden; for tests and
    /// experiments on a kernel side no bpfnsd serves).
    #[command(subcommand, hide = true)]
    Debug(DebugCmd),
}

/// `bpfns kernel debug ...`: refused while a bpfnsd serves the pin root.
#[derive(Debug, Subcommand)]
pub enum DebugCmd {
    /// record namespace ID with parent P in the kernel's namespace table.
    #[command(name = "ns-set", long_about = LOW_LEVEL)]
    NsSet {
        /// The namespace id (1 or more; 0 is the root).
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        id: u32,
        /// The parent namespace id (0 for the root); it must already be in the table.
        #[arg(long, value_name = "P")]
        parent: u32,
        /// Depth below the root (default: the parent's depth + 1).
        #[arg(long, value_name = "D")]
        depth: Option<u32>,
    },

    /// remove namespace ID from the kernel's namespace table.
    #[command(
        name = "ns-rm",
        long_about = "Remove namespace ID from the kernel's namespace table. Refused while other \
                      namespaces in the table have ID as parent. Objects still owned by ID become \
                      visible from the root only; tasks still tagged with ID keep the tag.\n\n\
                      Low-level kernel-side aid: it writes straight into the pinned maps of the \
                      kernel side, behind bpfnsd's back. Namespaces proper are managed by bpfnsd \
                      through `bpfns ns`."
    )]
    NsRm {
        /// The namespace id.
        id: u32,
    },

    /// put every thread of process PID into namespace NS_ID (0 = the root).
    #[command(long_about = LOW_LEVEL)]
    Tag {
        /// The process id.
        pid: i32,
        /// The namespace id; it must be in the kernel's table (or 0).
        ns_id: u32,
    },

    /// run CMD in namespace NS_ID; returns its exit status (128+N on signal N).
    #[command(
        long_about = "Run CMD as a child tagged with namespace NS_ID before it executes anything, \
                      and return its exit status (128+N when it is killed by signal N, e.g. 137 \
                      when the backstop stops it with SIGKILL). CMD keeps bpfns's stdin, stdout \
                      and stderr, and everything it starts inherits the namespace.\n\n\
                      Low-level kernel-side aid: it writes straight into the pinned maps of the \
                      kernel side, behind bpfnsd's back; a member proper is started by `bpfns \
                      exec`, which also puts it under bpfnsd's supervisor.",
        after_help = "Example: bpfns kernel debug run 1 -- bpftool map show"
    )]
    Run {
        /// The namespace id; it must be in the kernel's table (or 0).
        ns_id: u32,
        /// The command and its arguments (put `--` before them).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bpfns").chain(args.iter().copied()))
    }

    #[test]
    fn the_fast_version_is_clap_s() {
        let args = |a: &[&str]| -> Vec<OsString> { a.iter().map(Into::into).collect() };
        let clap = Cli::command().render_version();
        for flag in ["--version", "-V"] {
            assert_eq!(
                Cli::version_fast(&args(&["bpfns", flag])).as_deref(),
                Some(clap.as_str())
            );
        }
        for other in [
            &["bpfns"][..],
            &["bpfns", "--version", "x"],
            &["bpfns", "-v"],
        ] {
            assert_eq!(Cli::version_fast(&args(other)), None);
        }
    }

    /// Every command line the fast `exec` parser takes, clap parses to the same; the ones it
    /// leaves to clap include every other flag and form.
    #[test]
    fn the_fast_exec_parser_agrees_with_clap() {
        let taken: &[&[&str]] = &[
            &["exec", "/a", "--", "true"],
            &["exec", "/a", "--", "sh", "-c", "echo -j --socket x"],
            &["--socket", "/run/s.sock", "exec", "/a", "--", "true"],
            &["--socket=/run/s.sock", "exec", "/a/b", "--", "true", "--"],
            &[
                "exec",
                "--socket",
                "/s",
                "--pin-root=/sys/fs/bpf/p",
                "/a",
                "--",
                "x",
            ],
            &[
                "exec",
                "--user",
                "nobody",
                "--caps",
                "bpf,perfmon",
                "/a",
                "--",
                "bpftool",
            ],
            &[
                "exec",
                "--user=1000:1000",
                "--caps=none",
                "--writable-cgroups",
                "/a",
                "--",
                "x",
            ],
            &[
                "--pin-root",
                "/p",
                "exec",
                "--writable-cgroups",
                "/t",
                "--",
                "--",
                "-x",
            ],
            &["exec", "/ä", "--", "true"],
        ];
        let left: &[&[&str]] = &[
            &["exec", "/a", "true"],
            &["exec", "/a", "--"],
            &["exec", "-j", "/a", "--", "true"],
            &["-p", "exec", "/a", "--", "true"],
            &["exec", "--help"],
            &["exec", "/a", "--help", "--", "true"],
            &["exec", "--socket", "/a", "--socket", "/b", "/a", "--", "x"],
            &["exec", "--user", "--", "/a", "--", "x"],
            &["exec", "--user=", "/a", "--", "x"],
            &[
                "exec",
                "--writable-cgroups",
                "--writable-cgroups",
                "/a",
                "--",
                "x",
            ],
            &["exec", "--writable-cgroups=true", "/a", "--", "x"],
            &["exec", "--unknown", "/a", "--", "x"],
            &["exec", "--", "/a", "--", "x"],
            &["ns", "list"],
            &["--version"],
            &[],
            &["exec"],
            &["--socket", "/s"],
            &["exec", "exec", "/a", "--", "x"],
        ];
        let args = |a: &[&str]| -> Vec<OsString> {
            std::iter::once("bpfns")
                .chain(a.iter().copied())
                .map(Into::into)
                .collect()
        };
        for env in [None, Some("/run/env.sock")] {
            let env_os = env.map(OsString::from);
            for a in taken {
                let fast = Cli::exec_fast(&args(a), env_os.clone())
                    .unwrap_or_else(|| panic!("not taken: {a:?}"));
                let mut slow = parse(a).unwrap_or_else(|e| panic!("{a:?}: {e}"));
                // clap reads the variable itself; the fast parser is given it.
                if !a.iter().any(|x| x.starts_with("--socket")) {
                    slow.socket = env
                        .map_or_else(|| PathBuf::from(bpfns_proto::DEFAULT_SOCKET), PathBuf::from);
                }
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{a:?}");
            }
            for a in left {
                assert!(Cli::exec_fast(&args(a), env_os.clone()).is_none(), "{a:?}");
            }
        }
        assert!(Cli::exec_fast(&args(&["exec", "/a", "--", "x"]), Some("".into())).is_none());
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let c = parse(&["map", "list", "-j"]).unwrap();
        assert_eq!(c.format(), Format::Json);
        let c = parse(&["-p", "map"]).unwrap();
        assert_eq!(c.format(), Format::PrettyJson);
        let c = parse(&["kernel", "status", "--pin-root", "/sys/fs/bpf/x"]).unwrap();
        assert_eq!(c.pin_root, PathBuf::from("/sys/fs/bpf/x"));
        let c = parse(&["--pin-root", "/sys/fs/bpf/y", "kernel", "load"]).unwrap();
        assert_eq!(c.pin_root, PathBuf::from("/sys/fs/bpf/y"));
        let c = parse(&["doctor"]).unwrap();
        assert_eq!(c.pin_root, PathBuf::from(DEFAULT_PIN_ROOT));
        assert_eq!(c.format(), Format::Text);
    }

    #[test]
    fn object_commands() {
        let c = parse(&["map", "show", "42"]).unwrap();
        let Command::Map(a) = c.command else {
            panic!("not map");
        };
        let ObjectCmd::Show(t) = a.cmd() else {
            panic!("not show");
        };
        assert_eq!(t.words, ["42"]);
        for args in [
            &["map", "show", "id", "42"][..],
            &["map", "dump", "pinned", "/sys/fs/bpf/x"],
            &["prog", "dump", "xlated", "id", "3"],
            &["prog", "show", "tag", "0123456789abcdef"],
            &["btf", "dump", "1"],
            &["link", "show", "pinned", "/sys/fs/bpf/l"],
        ] {
            let c = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let cmd = match &c.command {
                Command::Map(a) => a.cmd(),
                Command::Prog(a) => a.cmd(),
                Command::Btf(a) => a.cmd(),
                Command::Link(a) => a.cmd(),
                _ => panic!("{args:?}"),
            };
            let (ObjectCmd::Show(t) | ObjectCmd::Dump(t)) = cmd else {
                panic!("{args:?}");
            };
            assert_eq!(
                t.words.len(),
                if args.len() == 3 { 1 } else { 2 },
                "{args:?}"
            );
        }
        for args in [
            &["btf"][..],
            &["btf", "list"],
            &["btf", "ls"],
            &["btf", "--namespace", "/a", "-r"],
            &["btf", "list", "--namespace", "/a"],
        ] {
            let c = parse(args).unwrap();
            let Command::Btf(a) = c.command else {
                panic!("not btf: {args:?}");
            };
            assert!(matches!(a.cmd(), ObjectCmd::List), "{args:?}");
        }
        let c = parse(&["map", "list", "--namespace", "/a", "-r"]).unwrap();
        let Command::Map(a) = c.command else {
            panic!("not map");
        };
        assert_eq!(a.filter.namespace.as_deref(), Some("/a"));
        assert!(a.filter.recursive);
        // Commands that cannot work are not offered.
        for args in [&["link", "dump", "1"][..], &["prog", "dump", "1"]] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let c = parse(&["ns", "identify", "42"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Ns(NsCmd::Identify { pid: 42 })
        ));
        let c = parse(&["ns", "ps", "-r", "/a"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Ns(NsCmd::Ps {
                recursive: true,
                ..
            })
        ));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for args in [
            &["maps", "list"][..],
            &["map", "show", "-1"],
            &["map", "show", "id", "1", "2"],
            &["map", "list", "-r"],
            &["ns", "identify", "0"],
            &["kernel", "debug", "ns-set", "0", "--parent", "0"],
            &["kernel", "debug", "ns-set", "3"],
            &["kernel", "debug", "run", "1"],
            &["kernel", "debug", "tag", "x", "1"],
            &["kernel", "ns-set", "3", "--parent", "0"],
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_ne!(e.exit_code(), 0, "{args:?}");
        }
    }

    #[test]
    fn run_takes_the_rest_verbatim() {
        let c = parse(&[
            "kernel", "debug", "run", "3", "--", "ls", "-l", "--color", "x",
        ])
        .unwrap();
        let Command::Kernel(KernelCmd::Debug(DebugCmd::Run { ns_id, command })) = c.command else {
            panic!("not run");
        };
        assert_eq!(ns_id, 3);
        assert_eq!(command, ["ls", "-l", "--color", "x"]);
        // Flags after CMD belong to CMD, not to bpfns.
        let c = parse(&["kernel", "debug", "run", "3", "--", "sh", "-j"]).unwrap();
        assert_eq!(c.format(), Format::Text);
    }

    /// The manual page and the completions come from these definitions: every command is
    /// there (the manual page leaves out the hidden debugging aids).
    #[test]
    fn man_page_and_completions_follow_the_definitions() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH bpfns 1"), "{page}");
        for sub in ["exec", "doctor", "status", "completions"] {
            assert!(page.contains(sub), "{sub} missing from the manual page");
        }
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "bpfns",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("identify") && bash.contains("exec"));
        assert!(
            !page.contains("ns\\-set"),
            "a hidden aid is in the manual page"
        );
    }
}
