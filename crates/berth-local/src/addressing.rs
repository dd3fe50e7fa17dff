//! Local addressing: every member gets its own loopback address `127.<slot>.<part+1>.<ordinal+1>`
//! (so all members bind the same ports) and its own directory, to which every container path the
//! part declares (volume mounts with subPath, config files, secret directories) is mapped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_core::spec::{PartSpec, StatefulApp};
use berth_core::topology::{Addressing, MemberAddress, MemberRef};

/// Addressing of one app on this machine.
#[derive(Clone, Debug)]
pub struct LocalAddressing {
    /// The app's directory in the berth home.
    pub app_dir: PathBuf,
    /// The app's address slot (second octet).
    pub slot: u8,
    /// Part index by part name.
    parts: BTreeMap<String, usize>,
    /// Declared container paths by part name: (container path, path inside the member dir).
    mappings: BTreeMap<String, Vec<(String, String)>>,
}

impl LocalAddressing {
    /// Addressing of `app` whose files live under `app_dir`, on addresses `127.<slot>.*.*`.
    pub fn new(app: &StatefulApp, app_dir: &Path, slot: u8) -> Self {
        let parts = &app.spec.parts;
        Self {
            app_dir: app_dir.to_path_buf(),
            slot,
            parts: parts
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), i))
                .collect(),
            mappings: parts
                .iter()
                .map(|p| (p.name.clone(), mappings(p)))
                .collect(),
        }
    }

    /// The loopback address of `member`.
    pub fn ip(&self, member: &MemberRef) -> Ipv4Addr {
        let part = self.parts.get(&member.part).copied().unwrap_or(0);
        let part_octet = u8::try_from(part + 1).unwrap_or(u8::MAX);
        let host = u8::try_from(member.ordinal + 1).unwrap_or(u8::MAX);
        Ipv4Addr::new(127, self.slot, part_octet, host)
    }

    /// The directory of `member`.
    pub fn member_dir(&self, member: &MemberRef) -> PathBuf {
        self.app_dir.join(member.name())
    }

    /// The host path of a declared container `path` for `member`; `None` when not declared.
    pub fn host_path(&self, member: &MemberRef, path: &str) -> Option<PathBuf> {
        let table = self.mappings.get(&member.part)?;
        let (declared, inside) = table
            .iter()
            .filter(|(declared, _)| is_under(path, declared))
            .max_by_key(|(declared, _)| declared.len())?;
        let rest = path[declared.len()..].trim_start_matches('/');
        let base = self.member_dir(member).join(inside);
        Some(if rest.is_empty() {
            base
        } else {
            base.join(rest)
        })
    }
}

impl Addressing for LocalAddressing {
    fn address(&self, member: &MemberRef, _headless: &str) -> MemberAddress {
        let ip = self.ip(member).to_string();
        MemberAddress {
            host: ip.clone(),
            fqdn: ip,
        }
    }

    fn container_path(&self, member: Option<&MemberRef>, path: &str) -> String {
        member
            .and_then(|m| self.host_path(m, path))
            .map_or_else(|| path.to_string(), |p| p.display().to_string())
    }
}

/// Whether container path `path` is `declared` or below it.
fn is_under(path: &str, declared: &str) -> bool {
    let declared = declared.trim_end_matches('/');
    path == declared
        || path
            .strip_prefix(declared)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The declared container paths of a part and where they live inside a member's directory.
fn mappings(part: &PartSpec) -> Vec<(String, String)> {
    let mut table = Vec::new();
    for volume in &part.state.persistent {
        for m in volume.all_mounts() {
            let mut inside = format!("volumes/{}", volume.name);
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                inside = format!("{inside}/{sub}");
            }
            table.push((m.path.trim_end_matches('/').to_string(), inside));
        }
    }
    for f in &part.state.config.files {
        table.push((f.path.clone(), format!("config/{}", f.name)));
    }
    for (i, s) in part.state.config.secrets.iter().enumerate() {
        table.push((
            s.path.trim_end_matches('/').to_string(),
            format!("secrets/{i}-{}", s.secret_name),
        ));
    }
    table
}

/// The directories a member needs before it starts (one per volume mount and secret).
pub fn member_dirs(
    addressing: &LocalAddressing,
    part: &PartSpec,
    member: &MemberRef,
) -> Vec<PathBuf> {
    let mut dirs = vec![addressing.member_dir(member).join("config")];
    let declared = part
        .state
        .persistent
        .iter()
        .flat_map(|v| v.all_mounts().into_iter().map(|m| m.path))
        .chain(part.state.config.secrets.iter().map(|s| s.path.clone()));
    dirs.extend(declared.filter_map(|p| addressing.host_path(member, &p)));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::spec::{MountSpec, VolumeSpec};

    fn part() -> PartSpec {
        let mut part: PartSpec =
            serde_json::from_value(serde_json::json!({"name": "server", "template": {}})).unwrap();
        part.state.persistent.push(VolumeSpec {
            name: "zkdata".into(),
            size: "1Gi".into(),
            storage_class: None,
            access_modes: vec![],
            mount_path: None,
            mounts: vec![MountSpec {
                path: "/data".into(),
                sub_path: Some("zk_data".into()),
                containers: vec![],
                read_only: false,
            }],
            retention: Default::default(),
        });
        part
    }

    fn app() -> StatefulApp {
        let mut app: StatefulApp = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.io/v1alpha1", "kind": "StatefulApp",
            "metadata": {"name": "zk"}, "spec": {"parts": []}
        }))
        .unwrap();
        app.spec.parts.push(part());
        app
    }

    fn member(ordinal: i32) -> MemberRef {
        MemberRef {
            part: "server".into(),
            workload: "zk-server".into(),
            ordinal,
        }
    }

    #[test]
    fn members_get_distinct_loopback_addresses() {
        let a = LocalAddressing::new(&app(), Path::new("/h/zk"), 12);
        assert_eq!(a.ip(&member(0)).to_string(), "127.12.1.1");
        assert_eq!(a.address(&member(2), "x").fqdn, "127.12.1.3");
    }

    #[test]
    fn declared_paths_map_into_the_member_directory() {
        let a = LocalAddressing::new(&app(), Path::new("/h/zk"), 12);
        let m = member(1);
        assert_eq!(
            a.container_path(Some(&m), "/data/myid"),
            "/h/zk/zk-server-1/volumes/zkdata/zk_data/myid"
        );
        assert_eq!(a.container_path(Some(&m), "/database"), "/database");
        assert_eq!(a.container_path(None, "/data"), "/data");
    }
}
