//! A minimal client of Redis's protocol (RESP) for the tests that count acknowledged writes:
//! one connection, one command at a time, short timeouts.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A minimal RESP client: one connection, one command at a time.
pub struct Redis {
    reader: BufReader<TcpStream>,
}

impl Redis {
    /// Connects to `addr` (`ip:port`) within a second; replies are awaited up to 5 s.
    pub fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Sends a command; the reply's first line (`+OK`, `-READONLY ...`, `$5`, `*3`...) and,
    /// for a bulk string, its content.
    pub fn call(&mut self, args: &[&str]) -> std::io::Result<(String, Option<String>)> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.reader.get_mut().write_all(out.as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_string();
        if let Some(n) = line.strip_prefix('$').and_then(|n| n.parse::<i64>().ok())
            && n >= 0
        {
            let mut body = String::new();
            self.reader.read_line(&mut body)?;
            return Ok((line, Some(body.trim_end().to_string())));
        }
        if let Some(n) = line.strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) {
            // ROLE: the first element names the role; drain the rest line by line.
            let mut first = None;
            for i in 0..n {
                let mut head = String::new();
                self.reader.read_line(&mut head)?;
                if head.starts_with('$') {
                    let mut body = String::new();
                    self.reader.read_line(&mut body)?;
                    if i == 0 {
                        first = Some(body.trim_end().to_string());
                    }
                } else if head.starts_with('*') {
                    // Replica lists of a master: nested arrays of bulk strings.
                    let m: usize = head.trim_end()[1..].parse().unwrap_or(0);
                    for _ in 0..m {
                        let mut inner = String::new();
                        self.reader.read_line(&mut inner)?;
                        if inner.starts_with('*') {
                            let k: usize = inner.trim_end()[1..].parse().unwrap_or(0);
                            for _ in 0..(2 * k) {
                                self.reader.read_line(&mut String::new())?;
                            }
                        } else if inner.starts_with('$') {
                            self.reader.read_line(&mut String::new())?;
                        }
                    }
                }
            }
            return Ok((line, first));
        }
        Ok((line, None))
    }
}

/// The acknowledged writes (`key:N` = `N` for each N in `acked`) that `conn` does not return.
pub fn lost_writes(conn: &mut Redis, acked: &[u32]) -> Vec<u32> {
    acked
        .iter()
        .copied()
        .filter(|n| {
            let (_, value) = conn.call(&["GET", &format!("key:{n}")]).unwrap();
            value != Some(n.to_string())
        })
        .collect()
}

/// What a client writing `key:N` = `N` saw.
pub struct Writes {
    /// The N whose write was acknowledged.
    pub acked: Vec<u32>,
    /// Failed writes (each followed by a reconnect).
    pub errors: u32,
    /// The longest time between two acknowledged writes.
    pub longest_gap: Duration,
}

/// Writes `key:N` for N = 0, 1, ... every `every` until `stop`, on the connection `connect`
/// gives (asked again after any error); `progress` counts the acknowledged writes.
pub fn write_keys(
    stop: &AtomicBool,
    progress: &AtomicUsize,
    every: Duration,
    connect: impl Fn() -> Option<Redis>,
) -> Writes {
    let mut writes = Writes {
        acked: Vec::new(),
        errors: 0,
        longest_gap: Duration::ZERO,
    };
    let mut conn: Option<Redis> = None;
    let mut last_ack = Instant::now();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = connect();
        }
        let key = format!("key:{n}");
        match conn
            .as_mut()
            .map(|c| c.call(&["SET", &key, &n.to_string()]))
        {
            Some(Ok((line, _))) if line == "+OK" => {
                writes.acked.push(n);
                writes.longest_gap = writes.longest_gap.max(last_ack.elapsed());
                last_ack = Instant::now();
                progress.store(writes.acked.len(), Ordering::Relaxed);
            }
            _ => {
                writes.errors += 1;
                conn = None;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        n += 1;
        std::thread::sleep(every);
    }
    writes
}
