//! Role-selecting services locally: for every service with a `role` (e.g. Redis `write` →
//! `master`), the supervisor listens on a stable address `127.<slot>.250.<n>` (n counts the
//! app's role services from 1, in part and service order) on each of the service's ports, and
//! forwards every new TCP connection to a ready member of the part holding that role (as its
//! role probe says). Connections to a member that loses the role are closed, so clients
//! reconnect to the new holder.

use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_core::load::ValidatedApp;
use berth_core::spec::Protocol;
use tokio::net::{TcpListener, TcpStream};

use crate::home::{AppState, ServiceState};
use crate::shared::Shared;

/// The third octet of service addresses.
pub const SERVICE_OCTET: u8 = 250;

/// A role-selecting service of the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePlan {
    /// `<part>/<service>`.
    pub name: String,
    /// The part whose members it selects.
    pub part: String,
    /// The role it selects.
    pub role: String,
    /// Its stable address.
    pub ip: Ipv4Addr,
    /// Its TCP ports (the same numbers on the members).
    pub ports: Vec<u16>,
}

/// The role-selecting services of `app` on address slot `slot` (pure).
pub fn plan_services(app: &ValidatedApp, slot: u8) -> Vec<ServicePlan> {
    let mut plans = Vec::new();
    for part in app.parts() {
        let tcp: Vec<_> = part
            .state
            .topology
            .ports
            .iter()
            .filter(|p| p.protocol == Protocol::TCP)
            .collect();
        for service in &part.services {
            let Some(role) = &service.role else { continue };
            let n = u8::try_from(plans.len() + 1).unwrap_or(u8::MAX);
            let ports = tcp
                .iter()
                .filter(|p| service.ports.is_empty() || service.ports.contains(&p.name))
                .filter_map(|p| u16::try_from(p.port).ok())
                .collect();
            plans.push(ServicePlan {
                name: format!("{}/{}", part.name, service.name),
                part: part.name.clone(),
                role: role.clone(),
                ip: Ipv4Addr::new(127, slot, SERVICE_OCTET, n),
                ports,
            });
        }
    }
    plans
}

/// The member that `service` forwards to now: the first ready member of its part with its role.
pub fn target(state: &AppState, service: &ServicePlan) -> Option<(String, Ipv4Addr)> {
    state
        .members
        .iter()
        .filter(|m| m.part == service.part && m.ready && m.role == service.role)
        .find_map(|m| Some((m.name.clone(), m.address.parse().ok()?)))
}

fn published(state: &AppState, services: &[ServicePlan]) -> Vec<ServiceState> {
    services
        .iter()
        .flat_map(|s| {
            s.ports.iter().map(|port| ServiceState {
                name: s.name.clone(),
                role: s.role.clone(),
                address: format!("{}:{port}", s.ip),
                target: target(state, s).map(|t| t.0).unwrap_or_default(),
            })
        })
        .collect()
}

/// Serves the services on a thread of their own (so nothing the supervisor does delays
/// forwarded traffic); keeps `services` in the published state up to date. Ports that cannot be
/// bound are reported in the target column.
pub fn start(services: Vec<ServicePlan>, shared: Arc<Shared>) {
    if services.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("berth-proxy".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    run(services, shared).await;
                    std::future::pending::<()>().await;
                });
            }
        });
    if let Err(e) = spawned {
        eprintln!("berth: cannot start the service proxy: {e}");
    }
}

async fn run(services: Vec<ServicePlan>, shared: Arc<Shared>) {
    let mut failed = Vec::new();
    for service in &services {
        for port in &service.ports {
            match TcpListener::bind((service.ip, *port)).await {
                Ok(listener) => {
                    tokio::spawn(serve(listener, service.clone(), *port, shared.clone()));
                }
                Err(e) => failed.push((format!("{}:{port}", service.ip), e.to_string())),
            }
        }
    }
    tokio::spawn(async move {
        let mut changed = shared.subscribe();
        loop {
            let mut now = published(&shared.snapshot(), &services);
            for s in &mut now {
                if let Some((_, e)) = failed.iter().find(|(a, _)| *a == s.address) {
                    s.target = format!("(cannot listen: {e})");
                }
            }
            if shared.snapshot().services != now {
                shared.update(|s| s.services = now);
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    });
}

async fn serve(listener: TcpListener, service: ServicePlan, port: u16, shared: Arc<Shared>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        // No member holds the role: the connection is refused by closing it.
        if let Some((name, ip)) = target(&shared.snapshot(), &service) {
            let args = (service.clone(), shared.clone());
            tokio::spawn(forward(inbound, name, ip, port, args));
        }
    }
}

/// Copies bytes both ways until either side closes or `member` loses the role.
async fn forward(
    mut inbound: TcpStream,
    member: String,
    ip: Ipv4Addr,
    port: u16,
    (service, shared): (ServicePlan, Arc<Shared>),
) {
    let Ok(mut outbound) = TcpStream::connect((ip, port)).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let mut changed = shared.subscribe();
    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return,
            gone = changed.changed() => {
                let still = target(&shared.snapshot(), &service).is_some_and(|t| t.0 == member)
                    || holds(&shared.snapshot(), &member, &service.role);
                if gone.is_err() || !still {
                    return;
                }
            }
        }
    }
}

/// Whether `member` still has `role` (readiness aside: a slow probe must not cut clients off).
fn holds(state: &AppState, member: &str, role: &str) -> bool {
    state
        .members
        .iter()
        .any(|m| m.name == member && m.role == role && m.pid.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::MemberState;

    fn member(name: &str, ready: bool, role: &str, ip: &str) -> MemberState {
        MemberState {
            name: name.into(),
            part: "redis".into(),
            ready,
            role: role.into(),
            address: ip.into(),
            ..MemberState::default()
        }
    }

    #[test]
    fn the_target_is_a_ready_member_with_the_role() {
        let service = ServicePlan {
            name: "redis/write".into(),
            part: "redis".into(),
            role: "master".into(),
            ip: Ipv4Addr::new(127, 9, 250, 1),
            ports: vec![6379],
        };
        let mut state = AppState {
            members: vec![
                member("redis-0", false, "master", "127.9.1.1"),
                member("redis-1", true, "slave", "127.9.1.2"),
                member("redis-2", true, "master", "127.9.1.3"),
            ],
            ..AppState::default()
        };
        assert_eq!(
            target(&state, &service),
            Some(("redis-2".into(), Ipv4Addr::new(127, 9, 1, 3)))
        );
        state.members[2].role = "slave".into();
        assert_eq!(target(&state, &service), None);
        let shown = published(&state, &[service]);
        assert_eq!(shown[0].address, "127.9.250.1:6379");
        assert_eq!(shown[0].target, "");
    }
}
