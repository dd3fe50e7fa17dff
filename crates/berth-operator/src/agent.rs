//! `berth agent`: the role agent that runs inside a member's pod (a native sidecar the operator
//! adds, `berth_k8s::agent`). It runs the part's role probe next to the member at its period,
//! and writes the pod's `berth.io/role` label (and `berth.io/role-term` annotation) only when
//! the core says the role changed (`berth_core::agent::next_label`), so while roles hold it
//! sends no request at all: it only watches its own pod.
//!
//! Readiness: the agent keeps a file in its directory while it must be unready
//! (`berth_core::agent::unready`): a change it could not write, or a writable role held while
//! the API server is out of reach for longer than a period. `berth agent ready`, the sidecar's
//! readiness probe, fails while that file exists, and the pod leaves every Service.
//!
//! What it cannot see: an API server whose connection hangs without an error. The watch then
//! looks healthy until the client's read timeout; a member that must change its label still
//! goes unready at once, since the patch fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::agent::{AgentView, Labelled, Observation, next_label, unready};
use berth_k8s::agent::{label_patch, labelled};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

/// The agent's field manager.
const MANAGER: &str = "berth-agent";
/// The file whose presence makes `berth agent ready` fail.
const UNREADY_FILE: &str = "unready";

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A variable the sidecar's env must set is missing.
    #[error("the environment variable {0} is not set (the operator's sidecar sets it)")]
    MissingEnv(&'static str),
    /// No in-cluster client.
    #[error("cannot build a Kubernetes client from the pod's token: {0}")]
    Client(#[source] kube::Error),
    /// The readiness file could not be written or the binary copied.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What `berth agent run` was told.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Seconds between probes.
    pub period: Duration,
    /// The part's writable roles.
    pub writable: Vec<String>,
    /// The role probe's argv.
    pub probe: Vec<String>,
    /// Where the readiness file lives (the agent's `emptyDir`).
    pub state_dir: PathBuf,
}

/// Copies the running `berth` binary to `dest` (through a temporary name, so a half-written
/// binary is never run), executable by anyone.
///
/// # Errors
/// The file that could not be read or written.
pub fn install(dest: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AgentError::Io { path, source }
    };
    let source = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    let partial = dest.with_extension("partial");
    std::fs::copy(&source, &partial).map_err(io(&partial))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .map_err(io(&partial))?;
    std::fs::rename(&partial, dest).map_err(io(dest))
}

/// Whether the agent keeping its state in `state_dir` is ready.
pub fn ready(state_dir: &Path) -> bool {
    !state_dir.join(UNREADY_FILE).exists()
}

/// What the agent knows of its pod and of the API server.
#[derive(Default)]
struct View {
    /// The pod's label and term, once the watch has delivered the pod.
    labelled: Option<Labelled>,
    /// Since when the watch has been failing.
    lost_since: Option<Instant>,
}

/// Runs the agent until SIGTERM or SIGINT.
///
/// # Errors
/// A missing variable, no client, or an unwritable state directory.
pub async fn run(options: AgentOptions) -> Result<(), AgentError> {
    crate::telemetry::init_logs(false);
    if options.probe.is_empty() {
        // A part without a role probe: the agent is only there for `berth agent transfer`.
        tracing::info!("no role probe: waiting to serve backup transfers");
        stopped().await;
        return Ok(());
    }
    let pod = env(berth_k8s::agent::ENV_POD)?;
    let namespace = env(berth_k8s::agent::ENV_NAMESPACE)?;
    let client = Client::try_default().await.map_err(AgentError::Client)?;
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let view = Arc::new(Mutex::new(View::default()));
    set_unready(&options.state_dir, true)?;
    tokio::spawn(follow(api.clone(), pod.clone(), view.clone()));
    tracing::info!(pod = %pod, period = ?options.period, "role agent started");
    let mut tick = tokio::time::interval(options.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stopped());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return Ok(()),
        }
        let seen = probe(&options.probe, options.period).await;
        let pending = step(&api, &pod, &view, &seen).await;
        let view = view.lock().unwrap_or_else(|e| e.into_inner());
        let judged = AgentView {
            pending,
            label: view.labelled.as_ref(),
            writable: &options.writable,
            api_lost_for: view.lost_since.map(|t| t.elapsed()),
            period: options.period,
        };
        set_unready(&options.state_dir, unready(&judged))?;
    }
}

fn env(name: &'static str) -> Result<String, AgentError> {
    std::env::var(name).map_err(|_| AgentError::MissingEnv(name))
}

/// Resolves on SIGTERM (the kubelet stopping the sidecar) or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Writes the label change `seen` calls for, if any; whether a change is still pending (it
/// could not be written, or the pod has not been seen yet).
async fn step(api: &Api<Pod>, pod: &str, view: &Mutex<View>, seen: &Observation) -> bool {
    let current = view
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .labelled
        .clone();
    let Some(current) = current else {
        return true;
    };
    let Some(wanted) = next_label(&current, seen) else {
        return false;
    };
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    match api
        .patch(pod, &params, &Patch::Merge(label_patch(&wanted)))
        .await
    {
        Ok(updated) => {
            tracing::info!(pod = %pod, role = ?wanted.role, term = ?wanted.term, "role changed");
            view.lock().unwrap_or_else(|e| e.into_inner()).labelled = Some(labelled(&updated));
            false
        }
        Err(e) => {
            tracing::warn!(pod = %pod, error = %e, "could not write the role label");
            true
        }
    }
}

/// Watches the agent's own pod: its label as others see it, and whether the API server answers.
async fn follow(api: Api<Pod>, pod: String, view: Arc<Mutex<View>>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={pod}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        let mut view = view.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                view.labelled = Some(labelled(&pod));
                view.lost_since = None;
            }
            Ok(_) => view.lost_since = None,
            Err(e) => {
                if view.lost_since.is_none() {
                    tracing::warn!(error = %e, "lost the API server");
                }
                view.lost_since.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Runs the probe once, for at most `limit`.
async fn probe(argv: &[String], limit: Duration) -> Observation {
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output()).await;
    match output {
        Ok(Ok(out)) if out.status.success() => {
            berth_core::topology::report_from_probe_output(&String::from_utf8_lossy(&out.stdout))
                .map_or(Observation::Failed, Observation::Reported)
        }
        _ => Observation::Failed,
    }
}

fn set_unready(dir: &Path, unready: bool) -> Result<(), AgentError> {
    let path = dir.join(UNREADY_FILE);
    let result = if unready {
        std::fs::write(&path, b"")
    } else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    result.map_err(|source| AgentError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_reports_its_first_line_or_fails() {
        let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        let second = Duration::from_secs(1);
        assert_eq!(
            probe(&sh("echo leader 3"), second).await,
            Observation::Reported(berth_core::agent::Report {
                role: "leader".into(),
                term: Some(3)
            })
        );
        assert_eq!(
            probe(&sh("echo master; exit 1"), second).await,
            Observation::Failed
        );
        assert_eq!(probe(&sh("true"), second).await, Observation::Failed);
        let started = Instant::now();
        let slow = probe(&sh("sleep 5; echo leader"), Duration::from_millis(200)).await;
        assert_eq!(slow, Observation::Failed);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn readiness_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        set_unready(dir.path(), true).unwrap();
        assert!(!ready(dir.path()));
        set_unready(dir.path(), false).unwrap();
        set_unready(dir.path(), false).unwrap();
        assert!(ready(dir.path()));
    }

    #[test]
    fn install_copies_an_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("berth");
        install(&dest).unwrap();
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!dest.with_extension("partial").exists());
    }
}
