//! The systemd notification protocol (`sd_notify(3)`), without libsystemd.
//!
//! A service started with `Type=notify` finds a datagram socket in
//! `NOTIFY_SOCKET` and sends it newline-separated `KEY=value` lines:
//! `READY=1` once it serves, `WATCHDOG=1` at least every `WatchdogSec`,
//! `STOPPING=1` when it begins to stop, `RELOADING=1` around a reload, and
//! `STATUS=...` for `systemctl status`. Without `NOTIFY_SOCKET` (started by
//! hand, in tests, under another supervisor) every call does nothing.
//!
//! The socket is a path, or an abstract name written with a leading `@`
//! (what systemd uses inside containers). Sending never blocks for long and
//! never fails the caller: a lost notification is logged at debug level, and
//! systemd's own timeouts deal with a service that never says it is ready.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use crate::core::node::Mode;
use crate::core::Node;
use crate::store::Store;

/// Least time between two `STATUS=` updates that only move the cycle on:
/// with a short interval, one per cycle would be a stream of D-Bus property
/// changes nobody reads. A change of mode is sent at once.
const STATUS_MIN_GAP: Duration = Duration::from_secs(1);

/// Where notifications go; does nothing when the service manager gave none.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`. A value that is not a usable address is
    /// logged once and treated as absent.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Notifier::disabled(),
            Some(v) => match v.to_str().map(Notifier::connect) {
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    log::warn!("NOTIFY_SOCKET is set but unusable, not notifying systemd: {e}");
                    Notifier::disabled()
                }
                None => {
                    log::warn!("NOTIFY_SOCKET is not UTF-8, not notifying systemd");
                    Notifier::disabled()
                }
            },
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// A notifier sending to `socket`: a path, or `@name` for an abstract
    /// socket.
    pub fn connect(socket: &str) -> Result<Notifier, String> {
        let addr = parse_addr(socket)?;
        let sock =
            UnixDatagram::unbound().map_err(|e| format!("cannot create a datagram socket: {e}"))?;
        // systemd reads its socket promptly; a full buffer must not stall a
        // stopping node or the watchdog task for more than a moment.
        sock.set_write_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| format!("cannot set a send timeout: {e}"))?;
        Ok(Notifier {
            target: Some((sock, addr)),
        })
    }

    /// True when notifications go somewhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (one or more `KEY=value` lines) as one datagram.
    pub fn notify(&self, state: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                log::debug!("notifying systemd of {state:?} failed: {e}");
            }
        }
    }

    /// The service is up: store open, topology loaded, listener bound.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// The service has begun to stop.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// The service is alive and well.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    /// A reload has begun; [`Notifier::reloaded`] ends it.
    pub fn reloading(&self) {
        self.notify("RELOADING=1");
    }

    /// A reload has ended (whatever came of it), with a status line.
    pub fn reloaded(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// The one-line status `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }
}

/// The status line for `systemctl status`: mode, cycle and data held, like
/// "mode ring, cycle 123, 42 keys".
pub fn status_line<S: Store>(node: &Node<S>) -> String {
    let (mode, _, reason) = node.mode();
    let (keys, tombstones) = node.counts();
    let cycle = node
        .cycle()
        .map_or_else(|| "no cycle yet".to_string(), |c| format!("cycle {c}"));
    let mode = match mode {
        Mode::Ring => "mode ring".to_string(),
        Mode::Fallback => format!("mode fallback ({reason})"),
    };
    format!("{mode}, {cycle}, {keys} keys, {tombstones} tombstones")
}

/// Decides when a new status line is worth sending: when it differs from
/// the last one sent, and either the mode changed or [`STATUS_MIN_GAP`]
/// has passed. Called at most once per cycle, so never more often.
#[derive(Debug, Default)]
pub struct StatusUpdates {
    last: Option<(String, Instant)>,
}

impl StatusUpdates {
    /// `Some(line)` if `line` should be sent now.
    pub fn due(&mut self, line: String, now: Instant) -> Option<String> {
        let mode = |l: &str| l.split(',').next().map(str::to_string);
        let send = match &self.last {
            None => true,
            Some((last, at)) => {
                *last != line
                    && (mode(last) != mode(&line) || now.duration_since(*at) >= STATUS_MIN_GAP)
            }
        };
        if send {
            self.last = Some((line.clone(), now));
            Some(line)
        } else {
            None
        }
    }
}

/// A notification value must not contain a newline: it would start a new
/// assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// `NOTIFY_SOCKET` as an address: `@name` is an abstract socket (Linux
/// only), anything else must be an absolute path.
pub fn parse_addr(socket: &str) -> Result<SocketAddr, String> {
    if let Some(name) = socket.strip_prefix('@') {
        return abstract_addr(name);
    }
    if !socket.starts_with('/') {
        return Err(format!(
            "{socket:?} is neither an absolute path nor an abstract name starting with '@'"
        ));
    }
    SocketAddr::from_pathname(socket).map_err(|e| format!("{socket:?}: {e}"))
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &str) -> Result<SocketAddr, String> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| format!("@{name}: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(name: &str) -> Result<SocketAddr, String> {
    Err(format!("@{name}: abstract sockets exist only on Linux"))
}

/// How often to send `WATCHDOG=1`, from `WATCHDOG_USEC` and `WATCHDOG_PID`
/// (the values of those variables, and our pid): half the watchdog
/// timeout, as `sd_watchdog_enabled(3)` advises, so one late ping is not
/// fatal. `None` when there is no watchdog, it is meant for another
/// process, or the values are not numbers.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// [`watchdog_interval`] from this process's environment.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_us() {
        let d = watchdog_interval(Some("30000000"), None, 7);
        assert_eq!(d, Some(Duration::from_secs(15)));
        assert_eq!(
            watchdog_interval(Some("400000"), Some("7"), 7),
            Some(Duration::from_millis(200))
        );
        assert_eq!(watchdog_interval(Some("400000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("400000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn status_updates_are_sent_on_change_at_most_once_a_second_unless_the_mode_changed() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        let mut u = StatusUpdates::default();
        let ring = |c: u64| format!("mode ring, cycle {c}, 1 keys, 0 tombstones");
        assert_eq!(u.due(ring(1), ms(0)), Some(ring(1)));
        assert_eq!(u.due(ring(1), ms(2000)), None);
        assert_eq!(u.due(ring(2), ms(2100)), Some(ring(2)));
        assert_eq!(u.due(ring(3), ms(2200)), None);
        let fb = "mode fallback (b failed), cycle 4, 1 keys, 0 tombstones".to_string();
        assert_eq!(u.due(fb.clone(), ms(2300)), Some(fb));
        assert_eq!(u.due(ring(5), ms(2400)), Some(ring(5)));
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(parse_addr("/run/systemd/notify").is_ok());
        assert!(parse_addr("relative/path").is_err());
        assert!(parse_addr("").is_err());
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let a = parse_addr("@ringsync-test").unwrap();
            assert_eq!(a.as_abstract_name(), Some(&b"ringsync-test"[..]));
        }
    }

    #[test]
    fn notifications_arrive_as_one_datagram_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        assert!(n.enabled());
        n.ready("mode ring,\ncycle 1");
        n.watchdog();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=mode ring, cycle 1");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        // Without a socket nothing happens, and nothing fails.
        Notifier::disabled().ready("x");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_sockets_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringsync-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Notifier::connect(&format!("@{name}")).unwrap().stopping();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }
}
