//! The actions against a real S3 server (versitygw on 127.0.0.1): a backup's bytes restored
//! both ways, a corrupt or failing restore refused with its reason, and actions that talk a lot
//! never stalling the stream.

use std::path::Path;
use std::time::Duration;

use berth_core::backup::{FORMAT_VERSION, Location, Manifest};
use berth_core::spec::{RepositorySpec, RestoreInput};
use berth_testkit::s3::S3Server;
use tokio::process::Command;

use super::{ActionError, Output, RestoreRun, backup, restore, restore_verified};
use crate::{Credentials, Repository, Stored};

const BUCKET: &str = "actions";
const MINUTE: Duration = Duration::from_secs(60);

fn sh(script: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", script]);
    command
}

fn repository(server: &S3Server) -> Repository {
    server.create_bucket(BUCKET).unwrap();
    let spec = RepositorySpec {
        endpoint: server.endpoint(),
        bucket: BUCKET.into(),
        prefix: String::new(),
        region: server.region().into(),
        path_style: true,
        credentials: None,
        carrier: Default::default(),
    };
    let credentials = Credentials {
        access_key_id: server.access_key().into(),
        secret_access_key: server.secret_key().into(),
    };
    Repository::open(&spec, BUCKET, Some(&credentials)).unwrap()
}

fn at(id: &str) -> Location {
    Location {
        bucket: BUCKET.into(),
        dir: format!("app/part/{id}"),
    }
}

/// A backup of `script`'s stdout, with its manifest.
async fn backed_up(repo: &Repository, id: &str, script: &str) -> Stored {
    let at = at(id);
    let stored = backup(repo, &at, sh(script), &Output::Stdout, MINUTE)
        .await
        .unwrap();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        id: id.into(),
        app: "app".into(),
        part: "part".into(),
        member: "app-0".into(),
        revision: "r".into(),
        engine: "test".into(),
        started_at: 0,
        finished_at: 0,
        size: stored.size,
        sha256: stored.sha256.clone(),
    };
    repo.put_manifest(&at, &manifest).await.unwrap();
    stored
}

fn run(input: RestoreInput, scratch: &Path, keep: bool) -> RestoreRun {
    RestoreRun {
        input,
        scratch: scratch.to_path_buf(),
        keep,
        timeout: MINUTE,
    }
}

/// 3 MiB of numbered lines: several download chunks, more than any pipe holds.
const DATA: &str = "seq 1 400000";

#[tokio::test]
async fn both_inputs_restore_the_same_bytes_and_stdin_needs_no_scratch_file() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    let stored = backed_up(&repo, "b1", DATA).await;
    let dir = tempfile::tempdir().unwrap();
    let (scratch, out) = (dir.path().join("scratch"), dir.path().join("out"));
    let into_out = format!("cat > {}", out.display());

    let streamed = run(RestoreInput::Stdin, &scratch, false);
    let streamed = restore(&repo, &at("b1"), sh(&into_out), &streamed).await;
    assert_eq!(streamed.unwrap(), stored);
    let expected = std::process::Command::new("seq")
        .args(["1", "400000"])
        .output()
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), expected.stdout);
    assert!(!scratch.exists(), "a streamed restore wrote a scratch file");

    // File: the action finds the data at BERTH_RESTORE_FILE too; the file is gone afterwards.
    let from_file = format!(
        "cmp -s \"$BERTH_RESTORE_FILE\" - && cp \"$BERTH_RESTORE_FILE\" {}",
        out.display()
    );
    std::fs::remove_file(&out).unwrap();
    let filed = run(RestoreInput::File, &scratch, false);
    let filed = restore(&repo, &at("b1"), sh(&from_file), &filed).await;
    assert_eq!(filed.unwrap(), stored);
    assert_eq!(std::fs::read(&out).unwrap(), expected.stdout);
    assert!(!scratch.exists());
}

#[tokio::test]
async fn a_kept_stream_feeds_the_other_members_from_the_scratch_file() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    backed_up(&repo, "b2", DATA).await;
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let keep = run(RestoreInput::Stdin, &scratch, true);
    restore(
        &repo,
        &at("b2"),
        sh(&format!("cat > {}", first.display())),
        &keep,
    )
    .await
    .unwrap();
    let again = sh(&format!("cat > {}", second.display()));
    restore_verified(again, &scratch, MINUTE).await.unwrap();
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
}

#[tokio::test]
async fn a_corrupt_backup_fails_a_streamed_restore_for_good() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    backed_up(&repo, "b3", DATA).await;
    let object = server.object_file(BUCKET, &at("b3").data_key());
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for input in [RestoreInput::Stdin, RestoreInput::File] {
        let got = restore(
            &repo,
            &at("b3"),
            sh("cat > /dev/null"),
            &run(input, &dir.path().join("s"), false),
        )
        .await;
        let error = got.unwrap_err();
        assert!(
            matches!(error, ActionError::Corrupt { .. }),
            "{input:?}: {error}"
        );
        assert!(error.is_permanent());
        assert!(error.to_string().contains("sha256"), "{error}");
    }
    let missing = restore(
        &repo,
        &at("none"),
        sh("cat"),
        &run(RestoreInput::Stdin, &dir.path().join("s"), false),
    )
    .await;
    let missing = missing.unwrap_err();
    assert!(
        missing.is_permanent() && missing.to_string().contains("not found"),
        "{missing}"
    );
}

#[tokio::test]
async fn an_action_that_stops_reading_is_reported_with_its_own_failure() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    backed_up(&repo, "b4", DATA).await;
    let dir = tempfile::tempdir().unwrap();
    let quits = sh("head -c 10 > /dev/null; echo 'disk full' >&2; exit 3");
    let got = restore(
        &repo,
        &at("b4"),
        quits,
        &run(RestoreInput::Stdin, &dir.path().join("s"), false),
    )
    .await;
    match got.unwrap_err() {
        ActionError::Exited { code, tail, .. } => {
            assert_eq!(code, Some(3));
            assert!(tail.contains("disk full"), "{tail}");
        }
        other => panic!("expected the action's exit, got {other}"),
    }
}

#[tokio::test]
async fn chatty_actions_do_not_stall_and_a_failed_backup_leaves_nothing() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    backed_up(&repo, "b5", DATA).await;
    let dir = tempfile::tempdir().unwrap();
    // A restore action printing more than a pipe holds while it reads.
    let chatty = || sh("tee /dev/stderr");
    for input in [RestoreInput::Stdin, RestoreInput::File] {
        let got = restore(
            &repo,
            &at("b5"),
            sh("cat >/dev/null"),
            &run(input, &dir.path().join("s"), false),
        )
        .await;
        got.unwrap();
        let (b5, settings) = (at("b5"), run(input, &dir.path().join("s"), false));
        let talk = restore(&repo, &b5, chatty(), &settings);
        tokio::time::timeout(MINUTE, talk)
            .await
            .expect("stalled")
            .unwrap();
    }
    let failing = sh("seq 1 100000; exit 1");
    let failed = backup(&repo, &at("b6"), failing, &Output::Stdout, MINUTE).await;
    assert!(matches!(
        failed,
        Err(ActionError::Exited { code: Some(1), .. })
    ));
    assert!(!server.object_file(BUCKET, &at("b6").data_key()).exists());
    let slow = backup(
        &repo,
        &at("b7"),
        sh("echo x; sleep 30"),
        &Output::Stdout,
        Duration::from_millis(300),
    )
    .await;
    assert!(matches!(slow, Err(ActionError::TimedOut { .. })));
}

#[tokio::test]
async fn a_file_backup_stores_the_file_its_action_wrote_and_removes_it() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.data");
    let output = Output::File(file.clone());
    // a file an earlier run left is never stored in place of this run's
    std::fs::write(&file, "stale").unwrap();
    let writes = sh("echo progress; seq 1 400000 > \"$BERTH_BACKUP_FILE\"");
    let stored = backup(&repo, &at("f1"), writes, &output, MINUTE).await;
    let streamed = backup(&repo, &at("f2"), sh(DATA), &Output::Stdout, MINUTE).await;
    assert_eq!(
        stored.unwrap(),
        streamed.unwrap(),
        "the same bytes either way"
    );
    assert!(!file.exists(), "the file is removed once stored");

    std::fs::write(&file, "stale").unwrap();
    let nothing = backup(&repo, &at("f3"), sh("true"), &output, MINUTE).await;
    assert!(
        matches!(&nothing, Err(ActionError::NoBackupFile { path }) if *path == file),
        "{nothing:?}"
    );
    let failing = sh("echo partial > \"$BERTH_BACKUP_FILE\"; exit 3");
    let failed = backup(&repo, &at("f4"), failing, &output, MINUTE).await;
    assert!(matches!(
        failed,
        Err(ActionError::Exited { code: Some(3), .. })
    ));
    assert!(!file.exists(), "a failed action's file is removed too");
    for id in ["f3", "f4"] {
        assert!(!server.object_file(BUCKET, &at(id).data_key()).exists());
    }
}

#[test]
fn a_stream_that_broke_after_its_action_started_is_never_retried() {
    let broke = || ActionError::Store(crate::Error::Write(std::io::Error::other("reset")));
    assert!(!broke().is_permanent(), "a broken stream alone may pass");
    let started = broke().after_start();
    assert!(matches!(started, ActionError::Started(_)), "{started}");
    assert!(started.facts().reached_member && started.facts().may_pass);
    assert!(started.is_permanent(), "{started}");
    let exited = ActionError::Exited {
        what: "restore",
        code: Some(1),
        tail: "disk full".into(),
    };
    assert!(matches!(exited.after_start(), ActionError::Exited { .. }));
}

#[tokio::test]
async fn a_write_that_fails_stops_the_download_with_its_error() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    // More than the batches read ahead: the reading has to notice that the writing stopped.
    backed_up(&repo, "b6", "head -c 16777216 /dev/zero").await;
    let (mut gone, reader) = tokio::io::duplex(64);
    drop(reader);
    let key = at("b6").data_key();
    let got = tokio::time::timeout(MINUTE, repo.download(&key, &mut gone)).await;
    let got = got.expect("the download ends when its output fails");
    assert!(matches!(got, Err(crate::Error::Write(_))), "{got:?}");
}

/// One part in flight (the operator's exec stream) stores the same bytes, over several parts
/// and a short last one, as the default.
#[tokio::test]
async fn one_part_in_flight_stores_the_same_bytes() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    let repo = repository(&server);
    // 2.5 parts of numbered lines
    let data: Vec<u8> = (0..)
        .flat_map(|i: u64| format!("{i}\n").into_bytes())
        .take(crate::PART_SIZE * 5 / 2)
        .collect();
    let one = repo
        .upload_with("one", &mut data.as_slice(), 1)
        .await
        .unwrap();
    let two = repo.upload("two", &mut data.as_slice()).await.unwrap();
    assert_eq!(one, two);
    let mut back = Vec::new();
    let read = repo.download("one", &mut back).await.unwrap();
    assert_eq!(read, one);
    assert!(back == data, "the stored bytes differ");
}
