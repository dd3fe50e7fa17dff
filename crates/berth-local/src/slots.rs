//! The machine-wide slot registry: which berth home holds which address slot.
//!
//! Addresses (`127.<slot>.*.*`) belong to the whole machine, not to one berth home, so two
//! homes (two projects, two checkouts, two test runs) must never pick the same slot. Each home
//! used to pick the lowest slot free among its own apps, so a second home picked the same one
//! and its members failed with "address already in use".
//!
//! Why a registry and not probing: probing whether a slot's addresses are free only sees apps
//! that are running *now*; a stopped app keeps its slot (its data and config name its
//! addresses), and two `up`s probing at the same moment would both see the slot free. So each
//! slot taken is recorded in a file `<registry>/<slot>` holding the canonical directory of the
//! app that holds it (`<home>/<app>`). The registry is `$BERTH_SLOTS_DIR` or `/tmp/berth-slots`
//! (machine-wide, like the addresses; `$XDG_RUNTIME_DIR` would be per user). Every decision is
//! taken under an exclusive `flock` of `<registry>/lock`, so concurrent `up`s never race.
//!
//! A claim is **stale** (and the slot free) when its app directory no longer records that slot
//! in its `slot` file: the app was purged, its home deleted (temporary homes), or it moved to
//! another slot. So nothing needs releasing by hand, and a registry lost on reboot (`/tmp`
//! cleared) is rebuilt as apps come up again.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::HomeError;
use crate::home::write_atomic;

/// The highest slot given (250 and above stay free; 127.255.255.255 is a broadcast address).
pub const LAST_SLOT: u8 = 249;

/// The machine-wide registry of address slots.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Registry {
    /// Opens the registry (`$BERTH_SLOTS_DIR`, else `/tmp/berth-slots`) and locks it until
    /// dropped.
    ///
    /// # Errors
    /// The directory or its lock file cannot be created.
    pub fn open() -> Result<Self, HomeError> {
        let dir = std::env::var_os("BERTH_SLOTS_DIR")
            .map_or_else(|| PathBuf::from("/tmp/berth-slots"), PathBuf::from);
        Self::open_at(&dir)
    }

    /// Opens and locks the registry in `dir`.
    ///
    /// # Errors
    /// The directory or its lock file cannot be created.
    pub fn open_at(dir: &Path) -> Result<Self, HomeError> {
        let err = |p: &Path| {
            let path = p.to_path_buf();
            move |source| HomeError::Registry { path, source }
        };
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(err(dir))?;
            // Every user of the machine shares the addresses, so every user may claim slots.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        let path = dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err(&path))?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| err(&path)(std::io::Error::from(errno)))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The app directory that holds `slot`, when it is not `app_dir` and its claim is live.
    pub fn holder(&self, slot: u8, app_dir: &Path) -> Option<PathBuf> {
        let text = std::fs::read_to_string(self.dir.join(slot.to_string())).ok()?;
        let holder = PathBuf::from(text.trim());
        let live = read_slot_file(&holder.join("slot")) == Some(slot);
        (live && holder != app_dir).then_some(holder)
    }

    /// The lowest slot from `first` up that no other app directory holds and `skip` allows.
    pub fn free(&self, first: u8, app_dir: &Path, skip: &dyn Fn(u8) -> bool) -> Option<u8> {
        (first..=LAST_SLOT).find(|&s| !skip(s) && self.holder(s, app_dir).is_none())
    }

    /// Records that `app_dir` holds `slot`, releasing its claim on `previous` (if another).
    ///
    /// # Errors
    /// The claim cannot be written.
    pub fn claim(&self, slot: u8, app_dir: &Path, previous: Option<u8>) -> Result<(), HomeError> {
        let path = self.dir.join(slot.to_string());
        write_atomic(&path, app_dir.display().to_string().as_bytes())?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
        if let Some(old) = previous.filter(|&old| old != slot) {
            let old_path = self.dir.join(old.to_string());
            let ours =
                std::fs::read_to_string(&old_path).is_ok_and(|t| Path::new(t.trim()) == app_dir);
            if ours {
                let _ = std::fs::remove_file(old_path);
            }
        }
        Ok(())
    }
}

/// The slot recorded in an app's `slot` file.
pub fn read_slot_file(path: &Path) -> Option<u8> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The message for a slot another home holds: who holds it and how to choose another.
pub fn held_message(slot: u8, holder: &Path, free: Option<u8>) -> String {
    let app = holder
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let home = holder.parent().unwrap_or(holder).display();
    let choose = free.map_or_else(
        || "no slot is free".to_string(),
        |f| format!("choose another with `--slot {f}` (free) or leave out `--slot`"),
    );
    format!(
        "address slot {slot} (127.{slot}.*.*) is held by app `{app}` in berth home {home}: \
         {choose}, or free it with `berth down {app} --purge --home {home}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_live_while_the_app_records_the_slot() {
        let reg_dir = tempfile::tempdir().unwrap();
        let apps = tempfile::tempdir().unwrap();
        let a = apps.path().join("a");
        let b = apps.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        let registry = Registry::open_at(reg_dir.path()).unwrap();
        std::fs::write(a.join("slot"), "10").unwrap();
        registry.claim(10, &a, None).unwrap();
        assert_eq!(registry.holder(10, &b), Some(a.clone()));
        assert_eq!(
            registry.holder(10, &a),
            None,
            "its own slot is not held by another"
        );
        assert_eq!(registry.free(10, &b, &|_| false), Some(11));
        std::fs::remove_dir_all(&a).unwrap();
        assert_eq!(
            registry.holder(10, &b),
            None,
            "a purged app's claim is stale"
        );
        let message = held_message(10, &a, Some(11));
        assert!(message.contains("app `a`") && message.contains("--slot 11"));
    }
}
