//! Taking a backup on Kubernetes, the pure half: where a `backupOutput: File` action writes its
//! backup in the member's pod, and the command the operator runs for such an action when it
//! carries the bytes itself (`carrier: Operator`, or a pod without berth's binary). In the pod,
//! `berth agent transfer` reads that file straight from disk (`berth_backup::action::backup`).

use berth_core::backup::BACKUP_FILE_ENV as FILE_ENV;

/// Where a `File` backup action writes in the member's container: its own `/tmp`, not one of the
/// member's volumes, which a live member keeps writing to and a backup must not fill.
pub const FILE: &str = "/tmp/berth-backup.data";

/// The command the operator streams a `File` backup from: the rendered `action` with [`FILE`]
/// in `BERTH_BACKUP_FILE` (its own stdout sent to stderr), then the file on stdout; the file is
/// removed before and after either way. An action that exits 0 without writing the file fails
/// with a message saying so.
pub fn file_command(action: &[String]) -> Vec<String> {
    let script = format!(
        "rm -f \"${FILE_ENV}\" && \"$@\" >&2 && {{ [ -e \"${FILE_ENV}\" ] || {{ echo \"the backup action exited 0 but wrote no file at ${FILE_ENV} ({FILE_ENV})\" >&2; false; }}; }} && cat \"${FILE_ENV}\"; s=$?; rm -f \"${FILE_ENV}\"; exit $s"
    );
    let mut argv = vec![
        "env".to_string(),
        format!("{FILE_ENV}={FILE}"),
        "/bin/sh".into(),
        "-c".into(),
        script,
        "berth-backup".into(),
    ];
    argv.extend(action.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `file_command(action)` with [`FILE`] moved into `dir`: exit code, stdout, stderr.
    fn run(action: &str, dir: &std::path::Path) -> (Option<i32>, String, String) {
        let file = dir.join("backup.data");
        let argv: Vec<String> = file_command(&["/bin/sh".into(), "-c".into(), action.into()])
            .into_iter()
            .map(|a| a.replace(FILE, file.to_str().unwrap()))
            .collect();
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    #[test]
    fn the_file_the_action_wrote_is_streamed_and_removed_and_its_stdout_kept_out_of_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("backup.data"), "stale").unwrap();
        let (code, out, err) = run(
            "echo progress; echo data > \"$BERTH_BACKUP_FILE\"",
            dir.path(),
        );
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (Some(0), "data\n", "progress\n")
        );
        assert!(!dir.path().join("backup.data").exists());

        std::fs::write(dir.path().join("backup.data"), "stale").unwrap();
        let (code, out, err) = run("true", dir.path());
        assert_eq!(
            (code, out.as_str()),
            (Some(1), ""),
            "a stale file is not the backup"
        );
        assert!(err.contains("wrote no file"), "{err}");

        let (code, out, _) = run("echo partial > \"$BERTH_BACKUP_FILE\"; exit 3", dir.path());
        assert_eq!((code, out.as_str()), (Some(3), ""));
        assert!(!dir.path().join("backup.data").exists());
    }
}
