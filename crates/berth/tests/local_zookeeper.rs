//! End to end: examples/zookeeper.yaml run locally with Debian's zookeeper 3.8: the three
//! members form an ensemble with one leader and two followers (by the `srvr` command).

mod local_common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use local_common::{LocalApp, example, require, wait_until};

const SLOT: u8 = 63;

/// The `Mode:` a member reports to `srvr` (empty when it does not answer).
fn mode(ordinal: u8) -> String {
    let ask = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect((format!("127.{SLOT}.1.{}", ordinal + 1), 2181))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"srvr")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    };
    let text = ask().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn zookeeper_forms_an_ensemble() {
    if !require(&[
        ("java", "zookeeper"),
        ("/usr/share/java/zookeeper.jar", "zookeeper"),
    ]) {
        return;
    }
    let app = LocalApp::new("zookeeper");
    app.up(&example("zookeeper.yaml"), SLOT);
    let mut modes = Vec::new();
    wait_until("1 leader and 2 followers", Duration::from_secs(60), || {
        modes = (0..3).map(mode).collect();
        modes.sort();
        modes == ["follower", "follower", "leader"]
    });
}
