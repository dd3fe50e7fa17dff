//! Tests of the role agent's rendering: the Redis example's pods and objects with and without
//! an agent image, a template's own ServiceAccount, and the agent's state from pod statuses.

use super::*;
use crate::render::{Mode, render_for_operator, render_with};
use berth_core::load::{Inputs, load};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, PodSpec,
    PodStatus,
};
use serde_json::Value;

const IMAGE: &str = "berth.local/berth-operator:abc";

fn redis(edit: impl FnOnce(&mut String)) -> ValidatedApp {
    let mut text = include_str!("../../../../examples/redis.yaml").to_string();
    edit(&mut text);
    load(&Inputs {
        app_file: "redis.yaml".into(),
        app_text: text,
        ..Default::default()
    })
    .unwrap()
}

fn stateful_set(objects: &[Value]) -> StatefulSet {
    let object = objects.iter().find(|o| o["kind"] == "StatefulSet").unwrap();
    serde_json::from_value(object.clone()).unwrap()
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect()
}

fn pod_spec(objects: &[Value]) -> PodSpec {
    stateful_set(objects).spec.unwrap().template.spec.unwrap()
}

#[test]
fn the_operator_with_an_image_runs_the_probe_in_a_sidecar() {
    let app = redis(|_| {});
    let objects = render_for_operator(&app, Some(IMAGE)).unwrap();
    let spec = pod_spec(&objects);
    let inits = spec.init_containers.as_ref().unwrap();
    let names: Vec<&str> = inits.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names[names.len() - 2..], [INSTALL_CONTAINER, CONTAINER]);
    let install = &inits[names.len() - 2];
    assert_eq!(install.image.as_deref(), Some(IMAGE));
    let agent = &inits[names.len() - 1];
    assert_eq!(agent.image, spec.containers[0].image, "the member's image");
    assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
    let command = agent.command.as_ref().unwrap();
    assert_eq!(command[..5], [BINARY, "agent", "run", "--period", "2"]);
    let probe = &command[command.iter().position(|w| w == "--").unwrap() + 1..];
    let exec = crate::roles::exec_command(&app, 0, berth_core::exec::ExecKind::RoleProbe)
        .unwrap()
        .unwrap();
    assert_eq!(probe, exec, "the probe as the operator would exec it");
    assert!(command.windows(2).any(|w| w == ["--writable", "master"]));
    let env: Vec<&str> = agent
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env.contains(&ENV_POD) && env.contains(&"BERTH_POD_IP"),
        "{env:?}"
    );
    let mounts: Vec<&str> = agent
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(
        mounts.contains(&TOKEN_DIR) && mounts.contains(&DIR),
        "{mounts:?}"
    );
    assert!(
        spec.containers.iter().all(|c| c
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != TOKEN_VOLUME)),
        "only the agent gets the token"
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("redis-berth-agent")
    );
    assert_eq!(spec.automount_service_account_token, Some(false));
    let kinds = kinds(&objects);
    for kind in ["ServiceAccount", "Role", "RoleBinding"] {
        assert!(kinds.contains(&kind.to_string()), "{kinds:?}");
    }
}

#[test]
fn a_preview_finds_the_agent_image_in_the_live_stateful_set() {
    let with = stateful_set(&render_for_operator(&redis(|_| {}), Some(IMAGE)).unwrap());
    assert_eq!(image_of(&with).as_deref(), Some(IMAGE));
    let without = stateful_set(&render_for_operator(&redis(|_| {}), None).unwrap());
    assert_eq!(image_of(&without), None);
}

#[test]
fn the_role_names_every_member_pod_and_only_them() {
    let objects = render_for_operator(&redis(|_| {}), Some(IMAGE)).unwrap();
    let role = objects.iter().find(|o| o["kind"] == "Role").unwrap();
    let role: Role = serde_json::from_value(role.clone()).unwrap();
    let rule = &role.rules.unwrap()[0];
    assert_eq!(
        rule.resource_names.as_deref().unwrap(),
        ["redis-0", "redis-1", "redis-2"]
    );
    assert!(!rule.verbs.iter().any(|v| v == "delete" || v == "update"));
}

#[test]
fn without_an_image_or_outside_the_operator_there_is_no_agent() {
    let app = redis(|_| {});
    for objects in [
        render_for_operator(&app, None).unwrap(),
        render_with(&app, Mode::Standalone).unwrap(),
    ] {
        let spec = pod_spec(&objects);
        assert!(
            spec.init_containers
                .iter()
                .flatten()
                .all(|c| !c.name.starts_with("berth-agent"))
        );
        assert_eq!(spec.service_account_name, None);
        assert!(!kinds(&objects).contains(&"Role".to_string()));
    }
}

#[test]
fn a_template_service_account_is_kept_and_bound() {
    let app = redis(|text| {
        *text = text.replacen(
            "        spec:\n",
            "        spec:\n          serviceAccountName: mine\n",
            1,
        );
    });
    let objects = render_for_operator(&app, Some(IMAGE)).unwrap();
    let spec = pod_spec(&objects);
    assert_eq!(spec.service_account_name.as_deref(), Some("mine"));
    assert_eq!(spec.automount_service_account_token, None);
    assert!(!kinds(&objects).contains(&"ServiceAccount".to_string()));
    let binding = objects.iter().find(|o| o["kind"] == "RoleBinding").unwrap();
    assert_eq!(binding["subjects"][0]["name"], "mine");
}

fn pod(declared: bool, status: Option<ContainerStatus>) -> Pod {
    let mut pod = Pod::default();
    if declared {
        pod.spec = Some(PodSpec {
            init_containers: Some(vec![Container {
                name: CONTAINER.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
    }
    pod.status = Some(PodStatus {
        init_container_statuses: status.map(|s| vec![s]),
        ..Default::default()
    });
    pod
}

fn status(ready: bool, running: bool) -> ContainerStatus {
    let state = if running {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    } else {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 143,
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    ContainerStatus {
        name: CONTAINER.into(),
        ready,
        state: Some(state),
        ..Default::default()
    }
}

#[test]
fn an_agent_is_running_only_when_ready_and_running() {
    assert_eq!(state(&pod(false, None)), AgentState::Absent);
    assert_eq!(state(&pod(true, None)), AgentState::Down);
    assert_eq!(
        state(&pod(true, Some(status(true, true)))),
        AgentState::Running
    );
    assert_eq!(
        state(&pod(true, Some(status(false, true)))),
        AgentState::Down
    );
    assert_eq!(
        state(&pod(true, Some(status(false, false)))),
        AgentState::Down
    );
}

fn running_pod(status: ContainerStatus) -> Pod {
    let mut pod = pod(true, Some(status));
    pod.metadata.name = Some("redis-1".into());
    pod.status.as_mut().unwrap().phase = Some("Running".into());
    pod
}

fn started(mut status: ContainerStatus, at: k8s_openapi::jiff::Timestamp) -> ContainerStatus {
    status.state = Some(ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)),
        }),
        ..Default::default()
    });
    status
}

#[test]
fn an_agent_is_trouble_once_it_died_or_stays_unready() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let now = Timestamp::now();
    let recent = now - SignedDuration::from_secs(5);
    let long_ago = now - SignedDuration::from_secs(START_GRACE_SECONDS + 5);
    let starting = started(status(false, true), recent);
    assert_eq!(
        trouble(&running_pod(starting.clone()), now),
        None,
        "a first start"
    );
    let mut restarted = starting;
    restarted.restart_count = 2;
    let why = trouble(&running_pod(restarted), now).unwrap();
    assert!(
        why.contains("redis-1") && why.contains("restarted 2 times"),
        "{why}"
    );
    let mut dead = status(false, false);
    dead.restart_count = 1;
    assert!(trouble(&running_pod(dead), now).is_some());
    let stuck = started(status(false, true), long_ago);
    assert!(
        trouble(&running_pod(stuck), now)
            .unwrap()
            .contains("not ready")
    );
    let healthy = started(status(true, true), long_ago);
    assert_eq!(trouble(&running_pod(healthy), now), None);
}

#[test]
fn a_label_patch_is_what_labelled_reads_back() {
    let wanted = Labelled {
        role: Some("leader".into()),
        term: Some(7),
    };
    let mut pod = Pod::default();
    let patch = label_patch(&wanted);
    pod.metadata.labels = serde_json::from_value(patch["metadata"]["labels"].clone()).unwrap();
    pod.metadata.annotations =
        serde_json::from_value(patch["metadata"]["annotations"].clone()).unwrap();
    assert_eq!(labelled(&pod), wanted);
    let clear = label_patch(&Labelled {
        role: None,
        term: Some(4),
    });
    assert_eq!(clear["metadata"]["labels"][names::LABEL_ROLE], Value::Null);
    assert_eq!(
        clear["metadata"]["annotations"][names::ANNOTATION_ROLE_TERM],
        "4"
    );
}

#[test]
fn an_app_with_an_agent_in_trouble_applies_again() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let now = Timestamp::now();
    let mut dead = status(false, false);
    dead.restart_count = 1;
    let healthy = started(status(true, true), now - SignedDuration::from_secs(60));
    let redis = redis(|_| {});
    assert!(must_reapply(&redis, || vec![running_pod(dead)], now));
    assert!(!must_reapply(&redis, || vec![running_pod(healthy)], now));
    let web = load(&Inputs {
        app_file: "web.yaml".into(),
        app_text: include_str!("../../../../examples/web.yaml").into(),
        ..Default::default()
    })
    .unwrap();
    let unread = || -> Vec<Pod> { panic!("an app without agents reads no pods") };
    assert!(!must_reapply(&web, unread, now));
}

/// The Redis example created from a backup.
fn restored_redis() -> ValidatedApp {
    redis(|text| {
        *text = text.replacen(
            "\nspec:\n",
            "\nspec:\n  restoreFrom: {url: \"s3://berth-backups/redis/redis/X\"}\n",
            1,
        );
    })
}

fn as_pod(spec: PodSpec) -> Pod {
    Pod {
        spec: Some(spec),
        ..Default::default()
    }
}

#[test]
fn with_the_agent_a_member_moves_its_own_backups() {
    let app = restored_redis();
    let spec = pod_spec(&render_for_operator(&app, Some(IMAGE)).unwrap());
    let names: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    // The binary is installed before the restore waits, and the agent starts after it.
    let install = names.iter().position(|n| *n == INSTALL_CONTAINER).unwrap();
    assert_eq!(
        names[install + 1],
        crate::restore::INIT_CONTAINER,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&CONTAINER));
    let pod = as_pod(spec);
    assert!(carries(&pod) && crate::restore::carries(&pod));
    let mut repository = app.parts()[0].state.backup.clone().unwrap().repository;
    assert_eq!(
        transfer_container(&repository, &pod, Transfer::Backup),
        Some(CONTAINER)
    );
    assert_eq!(
        transfer_container(&repository, &pod, Transfer::Restore),
        Some(crate::restore::INIT_CONTAINER)
    );
    repository.carrier = berth_core::spec::Carrier::Operator;
    assert_eq!(
        transfer_container(&repository, &pod, Transfer::Backup),
        None
    );
    assert_eq!(
        transfer_container(&repository, &pod, Transfer::Restore),
        None
    );
}

#[test]
fn without_the_agent_the_operator_moves_the_bytes() {
    let app = restored_redis();
    let spec = pod_spec(&render_for_operator(&app, None).unwrap());
    let first = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(first.name, crate::restore::INIT_CONTAINER);
    let pod = as_pod(spec);
    assert!(!carries(&pod) && !crate::restore::carries(&pod));
    let repository = app.parts()[0].state.backup.clone().unwrap().repository;
    assert_eq!(
        transfer_container(&repository, &pod, Transfer::Backup),
        None
    );
    assert_eq!(
        transfer_container(&repository, &pod, Transfer::Restore),
        None
    );
}

#[test]
fn a_part_with_backups_but_no_role_probe_gets_an_agent_without_credentials() {
    let mut app = redis(|_| {});
    app.app.spec.parts[0].state.topology.role_probe = None;
    let objects = render_for_operator(&app, Some(IMAGE)).unwrap();
    let spec = pod_spec(&objects);
    let agent = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)
        .expect("the agent's sidecar");
    let command = agent.command.as_ref().unwrap();
    assert!(!command.contains(&"--".to_string()), "{command:?}");
    let mounts = agent.volume_mounts.iter().flatten();
    assert!(mounts.clone().all(|m| m.mount_path != TOKEN_DIR));
    assert!(mounts.clone().any(|m| m.mount_path == DIR));
    assert!(
        spec.service_account_name.is_none(),
        "no ServiceAccount of ours"
    );
    assert!(
        !kinds(&objects)
            .iter()
            .any(|k| k == "Role" || k == "RoleBinding"),
        "{:?}",
        kinds(&objects)
    );
    let repository = &app.parts()[0].state.backup.as_ref().unwrap().repository;
    let pod = as_pod(spec);
    assert_eq!(
        transfer_container(repository, &pod, Transfer::Backup),
        Some(CONTAINER)
    );
}
