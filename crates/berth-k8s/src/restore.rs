//! Restoring a new app from a backup on Kubernetes, the pure half: the init container that
//! holds each member of the restored part until the operator has restored it, the commands the
//! operator runs in it through `pods/exec`, and which members are waiting.
//!
//! The init container (`berth-restore`) runs the member's own image with the member's env and
//! mounts, plus an `emptyDir` at [`DIR`] and the part's first volume at [`VOLUME_DIR`]. It waits
//! until the operator writes [`DIR`]`/done`, or exits at once when the volume carries the marker
//! [`MARKER`] (a member restored or released before: later restarts of its pod need nobody).
//! The backup's data lands in the member's own volume ([`data_file`]), not on the node's disk.
//! For each waiting member the operator decides with `berth_core::restore::steps`, then:
//! 1. [`receive_command`]: the backup's data streamed on stdin into that file;
//! 2. the operator checks what it streamed against the backup's manifest;
//! 3. [`restore_command`]: the part's restore action, with the data on stdin and its path in
//!    `BERTH_RESTORE_FILE`, as on the local engine;
//! 4. [`release_command`]: removes the data, writes the marker, lets the member start.
//!
//! The init container is rendered only by the operator (`Mode::Operator`), and only while the
//! spec has `restoreFrom`: `berth render` output, meant for clusters without the operator,
//! never waits for it.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Pod, PodTemplateSpec, Volume, VolumeMount,
};

use berth_core::backup::RESTORE_FILE_ENV;
use berth_core::spec::PartSpec;

/// The init container's name.
pub const INIT_CONTAINER: &str = "berth-restore";
/// The init container's scratch directory (an `emptyDir`).
pub const DIR: &str = "/berth-restore";
/// Where the data lands in a part with no writable volume in its first container.
pub const DATA: &str = "/berth-restore/data";
/// The data's name in the member's volume.
pub const DATA_IN_VOLUME: &str = ".berth-restore.data";
/// Where the init container mounts the part's first volume, whole, for the marker.
pub const VOLUME_DIR: &str = "/berth-restore/volume";
/// The marker file, at the root of the part's first volume: this member was restored (or
/// released without a restore) and starts without waiting.
pub const MARKER: &str = ".berth-restored";
/// The `emptyDir` volume's name.
const SCRATCH_VOLUME: &str = "berth-restore";

/// Adds the init container that holds a member until it is restored, first among the pod's
/// init containers (the user's run after it, on restored data), built from the first container.
/// In a pod with the role agent ([`crate::agent`]) it comes right after the agent's install
/// container and mounts the agent's binary, so the member can download its backup itself
/// (`berth agent transfer`, [`carries`]).
pub fn add_init_container(template: &mut PodTemplateSpec, part: &PartSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let Some(main) = spec.containers.first() else {
        return;
    };
    let mut mounts = main.volume_mounts.clone().unwrap_or_default();
    mounts.push(VolumeMount {
        name: SCRATCH_VOLUME.to_string(),
        mount_path: DIR.to_string(),
        ..Default::default()
    });
    let inits = spec.init_containers.get_or_insert_with(Vec::new);
    let install = inits
        .iter()
        .position(|c| c.name == crate::agent::INSTALL_CONTAINER);
    if install.is_some() {
        mounts.push(crate::agent::binary_mount());
    }
    let volume = part.state.persistent.first();
    if let Some(volume) = volume {
        mounts.push(VolumeMount {
            name: volume.name.clone(),
            mount_path: VOLUME_DIR.to_string(),
            ..Default::default()
        });
    }
    let wait = Container {
        name: INIT_CONTAINER.to_string(),
        image: main.image.clone(),
        image_pull_policy: main.image_pull_policy.clone(),
        command: Some(wait_command(volume.is_some())),
        env: main.env.clone(),
        env_from: main.env_from.clone(),
        volume_mounts: Some(mounts),
        security_context: main.security_context.clone(),
        resources: main.resources.clone(),
        working_dir: main.working_dir.clone(),
        ..Default::default()
    };
    inits.insert(install.map_or(0, |i| i + 1), wait);
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: SCRATCH_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
}

/// Where a member's restore puts the backup's data, what the restore action then reads: the file
/// [`DATA_IN_VOLUME`] in the part's first volume, where the member's first container mounts it
/// (the path `{{ volumes.NAME }}` renders to), so a large backup takes the space of the volume
/// sized for it, not the node's, and an action may hard-link it into place without a copy;
/// [`DATA`] (the `emptyDir`) when that mount is read-only or not in the first container.
pub fn data_file(part: &PartSpec) -> String {
    let main = part
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.as_str());
    let mount = part
        .state
        .persistent
        .first()
        .and_then(|volume| volume.all_mounts().into_iter().next())
        .filter(|m| !m.read_only)
        .filter(|m| {
            m.containers.is_empty() || main.is_some_and(|c| m.containers.iter().any(|n| n == c))
        });
    match mount {
        Some(m) => format!("{}/{DATA_IN_VOLUME}", m.path.trim_end_matches('/')),
        None => DATA.to_string(),
    }
}

/// Whether member `pod`'s `berth-restore` container has berth's binary, so the operator can have
/// it download its backup itself.
pub fn carries(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let inits = spec.and_then(|s| s.init_containers.as_ref());
    inits.into_iter().flatten().any(|c| {
        c.name == INIT_CONTAINER
            && c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == crate::agent::DIR)
    })
}

/// The init container's command: wait for the operator, unless the volume has the marker.
fn wait_command(has_volume: bool) -> Vec<String> {
    let marker = if has_volume {
        format!("{VOLUME_DIR}/{MARKER}")
    } else {
        String::new()
    };
    let script = format!(
        "while [ ! -e {DIR}/done ]; do if [ -n \"$1\" ] && [ -e \"$1\" ]; then exit 0; fi; sleep 1; done"
    );
    sh(&script, &[&marker])
}

/// `/bin/sh -c SCRIPT berth-restore ARGS...`.
fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        INIT_CONTAINER.into(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_string()));
    argv
}

/// Writes what arrives on stdin to `data` ([`data_file`]; through a temporary name, so a broken
/// stream never leaves a complete-looking file).
pub fn receive_command(data: &str) -> Vec<String> {
    sh("cat > \"$1.part\" && mv \"$1.part\" \"$1\"", &[data])
}

/// Runs the rendered restore `action` with `data` on stdin and in `BERTH_RESTORE_FILE`.
pub fn restore_command(action: &[String], data: &str) -> Vec<String> {
    let mut argv = vec!["env".to_string(), format!("{RESTORE_FILE_ENV}={data}")];
    let rest = sh(&format!("exec \"$@\" < \"${RESTORE_FILE_ENV}\""), &[]);
    argv.extend(rest);
    argv.extend(action.iter().cloned());
    argv
}

/// Removes the `data` file and what a broken download into it may have left (the operator's
/// `DATA.part`, `berth agent transfer`'s `DATA` with its extension replaced by `part`), writes
/// the marker on the volume (when the part has one) with the backup's URL, and lets the member
/// start.
pub fn release_command(url: &str, data: &str) -> Vec<String> {
    let script = format!(
        "rm -f \"$2\" \"$2.part\" \"$3\" && if [ -d {VOLUME_DIR} ]; then printf '%s\\n' \"$1\" > {VOLUME_DIR}/{MARKER}; fi && touch {DIR}/done"
    );
    let agents_part = std::path::Path::new(data).with_extension("part");
    sh(&script, &[url, data, &agents_part.to_string_lossy()])
}

/// The ordinals of `pods` (members of workload `workload`) whose `berth-restore` init container
/// is running: the members waiting for their restore.
pub fn waiting(pods: &[Pod], workload: &str) -> Vec<i32> {
    let mut out: Vec<i32> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| init_running(p))
        .filter_map(|p| ordinal(p, workload))
        .collect();
    out.sort_unstable();
    out
}

fn init_running(pod: &Pod) -> bool {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref());
    statuses.into_iter().flatten().any(|s| {
        s.name == INIT_CONTAINER && s.state.as_ref().is_some_and(|st| st.running.is_some())
    })
}

fn ordinal(pod: &Pod, workload: &str) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    name.strip_prefix(workload)?.strip_prefix('-')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStatus, PodSpec, PodStatus,
    };
    use std::process::Command;

    fn part() -> PartSpec {
        let yaml = r"
name: redis
template:
  spec:
    containers: [{name: redis, image: redis:7, env: [{name: A, value: b}]}]
state:
  persistent: [{name: data, size: 1Gi, mountPath: /data}]
";
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn template(part: &PartSpec) -> PodTemplateSpec {
        let mut t = part.template.clone();
        let spec = t.spec.get_or_insert_with(PodSpec::default);
        spec.containers[0].volume_mounts = Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]);
        t
    }

    #[test]
    fn the_init_container_is_the_member_with_the_scratch_dir_and_the_whole_volume() {
        let part = part();
        let mut t = template(&part);
        add_init_container(&mut t, &part);
        let spec = t.spec.unwrap();
        let init = &spec.init_containers.unwrap()[0];
        assert_eq!(init.name, INIT_CONTAINER);
        assert_eq!(init.image.as_deref(), Some("redis:7"));
        assert_eq!(init.env.as_ref().unwrap()[0].name, "A");
        let mounts: Vec<(&str, &str)> = init
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(
            mounts,
            [
                ("data", "/data"),
                ("berth-restore", DIR),
                ("data", VOLUME_DIR)
            ]
        );
        assert!(spec.volumes.unwrap().iter().any(|v| v.empty_dir.is_some()));
    }

    #[test]
    fn the_data_lands_in_the_first_volume_where_the_member_mounts_it_else_in_the_scratch_dir() {
        let mut part = part();
        assert_eq!(data_file(&part), format!("/data/{DATA_IN_VOLUME}"));
        let volume = &mut part.state.persistent[0];
        volume.mount_path = None;
        volume.mounts =
            serde_yaml_ng::from_str("[{path: /var/lib/x/, containers: [redis]}]").unwrap();
        assert_eq!(data_file(&part), format!("/var/lib/x/{DATA_IN_VOLUME}"));
        for unusable in [
            "[{path: /var/lib/x, readOnly: true}]",
            "[{path: /var/lib/x, containers: [sidecar]}]",
            "[]",
        ] {
            part.state.persistent[0].mounts = serde_yaml_ng::from_str(unusable).unwrap();
            assert_eq!(data_file(&part), DATA, "{unusable}");
        }
        part.state.persistent.clear();
        assert_eq!(data_file(&part), DATA);
    }

    fn pod(name: &str, init_running: bool, deleted: bool) -> Pod {
        let state = ContainerState {
            running: init_running.then(ContainerStateRunning::default),
            ..Default::default()
        };
        let mut pod = Pod {
            status: Some(PodStatus {
                init_container_statuses: Some(vec![ContainerStatus {
                    name: INIT_CONTAINER.into(),
                    state: Some(state),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.metadata.name = Some(name.into());
        if deleted {
            pod.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        pod
    }

    #[test]
    fn members_wait_while_their_init_container_runs() {
        let pods = [
            pod("redis-2", true, false),
            pod("redis-0", true, false),
            pod("redis-1", false, false),
            pod("redis-3", true, true),
            pod("redis-x-0", true, false),
        ];
        assert_eq!(waiting(&pods, "redis"), [0, 2]);
    }

    /// Runs `argv` with `/bin/sh` after replacing the fixed paths with `dir`'s.
    fn run(argv: &[String], dir: &std::path::Path, stdin: &str) -> std::process::Output {
        let local: Vec<String> = argv
            .iter()
            .map(|a| a.replace(DIR, dir.to_str().unwrap()))
            .collect();
        let mut child = Command::new(&local[0])
            .args(&local[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn the_commands_receive_restore_and_release_as_the_init_container_expects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("volume")).unwrap();
        // the data in the volume, as `data_file` places it
        let data = format!("{VOLUME_DIR}/{DATA_IN_VOLUME}");
        let data_here = dir.path().join("volume").join(DATA_IN_VOLUME);
        let received = run(&receive_command(&data), dir.path(), "the backup");
        assert!(received.status.success());
        assert_eq!(std::fs::read_to_string(&data_here).unwrap(), "the backup");
        let action: Vec<String> = [
            "/bin/sh",
            "-c",
            "cat > \"$0\"/restored; echo \"$BERTH_RESTORE_FILE\" > \"$0\"/file",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([dir.path().display().to_string()])
        .collect();
        let restored = run(&restore_command(&action, &data), dir.path(), "");
        assert!(restored.status.success(), "{restored:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("restored")).unwrap(),
            "the backup"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("file"))
                .unwrap()
                .trim(),
            data_here.display().to_string()
        );
        // what a broken download by the agent left (`berth_backup`'s partial name) goes too
        let agents_part = data_here.with_extension("part");
        std::fs::write(&agents_part, "half").unwrap();
        let released = run(&release_command("s3://b/k", &data), dir.path(), "");
        assert!(released.status.success(), "{released:?}");
        assert!(!data_here.exists());
        assert!(!agents_part.exists());
        assert!(dir.path().join("done").exists());
        let marker = std::fs::read_to_string(dir.path().join("volume").join(MARKER)).unwrap();
        assert_eq!(marker, "s3://b/k\n");
        // the wait ends at once with the marker, even without `done`
        std::fs::remove_file(dir.path().join("done")).unwrap();
        let waited = run(&wait_command(true), dir.path(), "");
        assert!(waited.status.success());
    }
}
