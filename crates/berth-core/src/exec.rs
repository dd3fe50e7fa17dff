//! The commands berth runs inside members: a part's role probe, its topology actions
//! (switchover, memberJoin, memberLeave) and its backup and restore actions. Their words are templates, rendered here once for every
//! engine with the same variables as config files and container commands (Kubernetes: one
//! rendering for all members, like the pod template; locally: for the member that runs it).
//! An action also learns the member it is about through `BERTH_TARGET*` ([`ActionTarget::env`]).

use minijinja::Value;

use crate::load::ValidatedApp;
use crate::spec::{ActionSpec, PartSpec, StateSpec};
use crate::template::{self, TemplateError};
use crate::topology::{Addressing, MemberRef};

/// A command a part declares to run in its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExecKind {
    /// `roleProbe.exec`: prints the member's role.
    RoleProbe,
    /// `actions.switchover.exec`: hands the writable role to `BERTH_TARGET`.
    Switchover,
    /// `actions.memberJoin.exec`: adds `BERTH_TARGET` to the group.
    MemberJoin,
    /// `actions.memberLeave.exec`: removes `BERTH_TARGET` from the group.
    MemberLeave,
    /// `backup.action.exec`: writes a backup of the member's data to stdout.
    Backup,
    /// `backup.restore.exec`: reads a backup from stdin into the member's volumes.
    Restore,
}

impl ExecKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::RoleProbe,
        Self::Switchover,
        Self::MemberJoin,
        Self::MemberLeave,
        Self::Backup,
        Self::Restore,
    ];

    /// The command's field path inside a part.
    pub fn field(self) -> &'static str {
        match self {
            Self::RoleProbe => "state.topology.roleProbe.exec",
            Self::Switchover => "state.topology.actions.switchover.exec",
            Self::MemberJoin => "state.topology.actions.memberJoin.exec",
            Self::MemberLeave => "state.topology.actions.memberLeave.exec",
            Self::Backup => "state.backup.action.exec",
            Self::Restore => "state.backup.restore.exec",
        }
    }

    /// The path of word `word` of this command in part `index`.
    pub fn path(self, index: usize, word: usize) -> String {
        format!("spec.parts[{index}].{}[{word}]", self.field())
    }

    /// The unrendered words, when the part's state declares this command.
    pub fn words(self, state: &StateSpec) -> Option<&[String]> {
        match self {
            Self::RoleProbe => state
                .topology
                .role_probe
                .as_ref()
                .map(|p| p.exec.as_slice()),
            _ => self.action(state).map(|a| a.exec.as_slice()),
        }
    }

    /// The declared action of this kind (with its timeout); `None` for the role probe.
    pub fn action(self, state: &StateSpec) -> Option<&ActionSpec> {
        let topology = &state.topology;
        match self {
            Self::RoleProbe => None,
            Self::Switchover => topology.switchover(),
            Self::MemberJoin => topology.member_join(),
            Self::MemberLeave => topology.member_leave(),
            Self::Backup => state.backup.as_ref().map(|b| &b.action),
            Self::Restore => state.backup.as_ref().map(|b| &b.restore),
        }
    }
}

/// A word of an exec command that does not render.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {error}")]
pub struct ExecError {
    /// The word's field path, e.g. `spec.parts[0].state.topology.roleProbe.exec[2]`.
    pub path: String,
    /// Why it does not render.
    pub error: TemplateError,
}

/// Renders the `kind` command of part `index` (`part`) word by word with `context`; `None`
/// when the part declares no such command.
///
/// # Errors
/// The first word that does not render, with its field path.
pub fn render(
    part: &PartSpec,
    index: usize,
    kind: ExecKind,
    context: &Value,
) -> Result<Option<Vec<String>>, ExecError> {
    let Some(words) = kind.words(&part.state) else {
        return Ok(None);
    };
    let render_word = |(k, word): (usize, &String)| {
        template::render(word, context).map_err(|error| ExecError {
            path: kind.path(index, k),
            error,
        })
    };
    words
        .iter()
        .enumerate()
        .map(render_word)
        .collect::<Result<_, _>>()
        .map(Some)
}

impl ValidatedApp {
    /// The `kind` command of part `index`, rendered for `viewer` under `addressing` (Kubernetes:
    /// `viewer` `None`, one command for every member; locally: the member that runs it).
    /// `$(VAR)` references are left for the engine to expand from the member's env.
    ///
    /// # Errors
    /// The first word that does not render (only possible with an engine whose addressing
    /// differs from the one validation used).
    pub fn exec_command(
        &self,
        index: usize,
        kind: ExecKind,
        addressing: &dyn Addressing,
        viewer: Option<&MemberRef>,
    ) -> Result<Option<Vec<String>>, ExecError> {
        let context = self.context(index, addressing, viewer);
        render(&self.parts()[index], index, kind, &context)
    }
}

/// The member an action is about: the one a switchover hands the writable role to, or the one
/// that joins or leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionTarget {
    /// What to connect to: its stable DNS name on Kubernetes, its loopback address locally.
    pub address: String,
    /// Its name.
    pub member: String,
    /// Its ordinal.
    pub ordinal: i32,
}

impl ActionTarget {
    /// `member` of a part whose headless Service is `headless`, addressed by `addressing`.
    pub fn new(member: &MemberRef, headless: &str, addressing: &dyn Addressing) -> Self {
        Self {
            address: addressing.address(member, headless).fqdn,
            member: member.name(),
            ordinal: member.ordinal,
        }
    }

    /// The variables an action gets on top of the member's env, on every engine:
    /// `BERTH_TARGET` (the address), `BERTH_TARGET_MEMBER`, `BERTH_TARGET_ORDINAL`.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("BERTH_TARGET", self.address.clone()),
            ("BERTH_TARGET_MEMBER", self.member.clone()),
            ("BERTH_TARGET_ORDINAL", self.ordinal.to_string()),
        ]
    }
}

/// What a failed action's output says, for its failure message: the last lines of its stderr
/// (of its stdout when stderr is empty), at most [`TAIL_LINES`] lines and [`TAIL_CHARS`]
/// characters.
pub fn output_tail(stderr: &[u8], stdout: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let stdout = String::from_utf8_lossy(stdout);
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    let skip = tail.chars().count().saturating_sub(TAIL_CHARS);
    tail.chars().skip(skip).collect()
}

/// Lines of a failed action's output kept in its failure.
pub const TAIL_LINES: usize = 5;
/// Characters of a failed action's output kept in its failure.
pub const TAIL_CHARS: usize = 800;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Inputs, load};
    use crate::topology::{KubernetesAddressing, MemberAddress, members};

    const REDIS: &str = include_str!("../../../examples/redis.yaml");

    const APP: &str = r#"
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: kv, namespace: ns}
spec:
  parts:
    - name: kv
      replicas: 2
      template:
        spec:
          containers: [{name: kv, image: kv:1}]
      state:
        config:
          files:
            - {name: ctl, path: /etc/kv/ctl, content: "x"}
        topology:
          ports: [{name: client, port: 7000}]
          roles: [{name: leader, writable: true}, {name: follower}]
          roleProbe: {exec: [kv-role, "--port={{ ports.client }}"]}
          actions:
            memberJoin: {exec: ["{{ files.ctl }}", add, "$(BERTH_TARGET)"]}
            memberLeave: {exec: ["{{ files.ctl }}", remove, "{{ members[1].address }}"]}
"#;

    fn app(text: &str) -> ValidatedApp {
        let inputs = Inputs {
            app_file: "app.yaml".into(),
            app_text: text.into(),
            ..Default::default()
        };
        load(&inputs).unwrap_or_else(|e| panic!("{e}"))
    }

    fn on_kubernetes(app: &ValidatedApp, kind: ExecKind) -> Option<Vec<String>> {
        let addressing = KubernetesAddressing::new(&app.namespace());
        app.exec_command(0, kind, &addressing, None).unwrap()
    }

    /// Loopback addresses, and container paths under `/m/<member>` for a viewer.
    struct PerMember;

    impl Addressing for PerMember {
        fn address(&self, member: &MemberRef, _headless: &str) -> MemberAddress {
            let ip = format!("127.9.0.{}", member.ordinal + 1);
            MemberAddress {
                host: ip.clone(),
                fqdn: ip,
            }
        }

        fn container_path(&self, member: Option<&MemberRef>, path: &str) -> String {
            match member {
                Some(m) => format!("/m/{}{path}", m.name()),
                None => path.to_string(),
            }
        }
    }

    #[test]
    fn the_redis_probe_and_switchover_render_on_kubernetes() {
        let redis = app(REDIS);
        let probe = on_kubernetes(&redis, ExecKind::RoleProbe).unwrap();
        assert_eq!(probe[..2], ["/bin/sh", "-c"]);
        assert!(
            probe[2].starts_with("redis-cli -h $BERTH_POD_IP -p 6379 info replication"),
            "{probe:?}"
        );
        assert!(!probe[2].contains("{{"), "{probe:?}");
        let switchover = on_kubernetes(&redis, ExecKind::Switchover).unwrap();
        assert_eq!(switchover, ["/bin/sh", "/etc/redis/switchover.sh"]);
        assert_eq!(on_kubernetes(&redis, ExecKind::MemberJoin), None);
        assert_eq!(on_kubernetes(&redis, ExecKind::MemberLeave), None);
    }

    #[test]
    fn membership_actions_render_for_the_member_that_runs_them() {
        let kv = app(APP);
        assert_eq!(
            on_kubernetes(&kv, ExecKind::MemberJoin).unwrap(),
            ["/etc/kv/ctl", "add", "$(BERTH_TARGET)"]
        );
        assert_eq!(
            on_kubernetes(&kv, ExecKind::MemberLeave).unwrap(),
            [
                "/etc/kv/ctl",
                "remove",
                "kv-1.kv-headless.ns.svc.cluster.local"
            ]
        );
        let member = &members(&kv.app, &kv.parts()[0], 2)[0];
        let leave = kv.exec_command(0, ExecKind::MemberLeave, &PerMember, Some(member));
        assert_eq!(
            leave.unwrap().unwrap(),
            ["/m/kv-0/etc/kv/ctl", "remove", "127.9.0.2"]
        );
        let probe = kv.exec_command(0, ExecKind::RoleProbe, &PerMember, Some(member));
        assert_eq!(probe.unwrap().unwrap(), ["kv-role", "--port=7000"]);
        assert_eq!(on_kubernetes(&kv, ExecKind::Switchover), None);
    }

    #[test]
    fn a_word_that_does_not_render_is_named_by_its_path() {
        let mut kv = app(APP);
        let topology = &mut kv.app.spec.parts[0].state.topology;
        let leave = topology.actions.as_mut().unwrap().member_leave.as_mut();
        leave.unwrap().exec[1] = "{{ part.nope }}".into();
        let addressing = KubernetesAddressing::new("ns");
        let err = kv
            .exec_command(0, ExecKind::MemberLeave, &addressing, None)
            .unwrap_err();
        assert_eq!(
            err.path,
            "spec.parts[0].state.topology.actions.memberLeave.exec[1]"
        );
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn validation_reports_a_probe_or_action_word_that_does_not_render() {
        let text = APP.replace("--port={{ ports.client }}", "--port={{ ports.nope }}");
        let inputs = Inputs {
            app_file: "app.yaml".into(),
            app_text: text,
            ..Default::default()
        };
        let err = load(&inputs).unwrap_err().to_string();
        assert!(
            err.contains("spec.parts[0].state.topology.roleProbe.exec[1]"),
            "{err}"
        );
    }

    #[test]
    fn the_target_env_names_address_member_and_ordinal() {
        let kv = app(APP);
        let member = &members(&kv.app, &kv.parts()[0], 2)[1];
        let addressing = KubernetesAddressing::new("ns");
        let target = ActionTarget::new(member, "kv-headless", &addressing);
        assert_eq!(
            target.env(),
            [
                (
                    "BERTH_TARGET",
                    "kv-1.kv-headless.ns.svc.cluster.local".to_string()
                ),
                ("BERTH_TARGET_MEMBER", "kv-1".to_string()),
                ("BERTH_TARGET_ORDINAL", "1".to_string()),
            ]
        );
        let local = ActionTarget::new(member, "kv-headless", &PerMember);
        assert_eq!(local.address, "127.9.0.2");
    }

    #[test]
    fn a_failures_output_is_the_end_of_stderr_else_stdout() {
        let many: String = (1..=8).map(|n| format!("line {n}\n")).collect();
        assert_eq!(
            output_tail(many.as_bytes(), b"out"),
            "line 4\nline 5\nline 6\nline 7\nline 8"
        );
        assert_eq!(output_tail(b"  \n", b"only stdout\n\n"), "only stdout");
        let long = "x".repeat(2000);
        assert_eq!(output_tail(long.as_bytes(), b"").len(), TAIL_CHARS);
    }
}
