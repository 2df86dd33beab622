//! Listening sockets handed over by a service manager (docs/reference.md §9, "Socket
//! activation"): systemd's `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` protocol, for every
//! listener tandem opens (the HTTP port today; each names itself when it asks).
//!
//! Why not the `listenfd` crate: it reads no `LISTEN_FDNAMES` (names are how several listeners
//! find their socket), takes the descriptors when `LISTEN_PID` is missing (a leftover variable in
//! a shell would hand tandem whatever fd 3 is), does not check that a socket is listening, and
//! removes the variables with `env::remove_var`, which is unsound once threads run. What it would
//! save is the few lines of parsing below; the socket checks are socket2's, already a dependency.

use std::{
    net::{SocketAddr, TcpListener},
    os::fd::{BorrowedFd, FromRawFd, RawFd},
    sync::{Mutex, OnceLock},
};

use socket2::{Domain, SockRef, Type};

/// The first descriptor the protocol passes (`SD_LISTEN_FDS_START`); the others follow it.
const FIRST_FD: RawFd = 3;

/// Who owns a listening socket, which decides what the stop sequence may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// tandem bound it: no one else holds it, so the stop may filter SYNs and shut it down.
    Own,
    /// A service manager bound it and keeps a copy for the next process: the stop only stops
    /// accepting, and connections that arrive meanwhile wait in its queue.
    Shared,
}

/// Why the inherited sockets cannot be used, as one sentence (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InheritError(String);

impl std::fmt::Display for InheritError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InheritError {}

/// One descriptor the service manager passed, checked to be a listening TCP socket.
#[derive(Debug)]
struct Passed {
    fd: RawFd,
    name: Option<String>,
    addr: SocketAddr,
}

/// The passed sockets not taken yet, read from the environment once per process: the
/// descriptors belong to whoever takes them first, and no one may take one twice.
static PASSED: OnceLock<Result<Mutex<Vec<Passed>>, InheritError>> = OnceLock::new();

/// The inherited listening socket for the listener called `name` (`http`, …): the one passed
/// under that name (`FileDescriptorName=` in the socket unit), else the one bound to `addr`.
/// `None` when there is none and the caller should bind `addr` itself. The socket comes back
/// non-blocking and close-on-exec; its backlog and options are the service manager's.
pub(crate) fn take(name: &str, addr: SocketAddr) -> Result<Option<TcpListener>, InheritError> {
    let passed = PASSED.get_or_init(|| passed_from_env().map(Mutex::new));
    let passed = passed.as_ref().map_err(Clone::clone)?;
    let mut passed = passed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let index = passed
        .iter()
        .position(|p| p.name.as_deref() == Some(name))
        .or_else(|| passed.iter().position(|p| p.addr == addr));
    let Some(index) = index else {
        return Ok(None);
    };
    let Passed {
        fd,
        name: passed_name,
        addr,
    } = passed.remove(index);
    // SAFETY: the protocol hands these descriptors to this process (LISTEN_PID is ours), they
    // were checked to be open sockets, and `remove` above makes this the only owner.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let sock = SockRef::from(&listener);
    let fail = |err: std::io::Error| InheritError(format!("inherited file descriptor {fd}: {err}"));
    // A child tandem starts must not hold the socket open after this process is gone.
    sock.set_cloexec(true).map_err(fail)?;
    sock.set_nonblocking(true).map_err(fail)?;
    log::info!(
        "the {name} listener uses the socket inherited from the service manager (fd {fd}{}, {addr}); it stays open across restarts",
        passed_name.map_or(String::new(), |n| format!(", named {n:?}")),
    );
    Ok(Some(listener))
}

/// The sockets `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` pass to this process.
fn passed_from_env() -> Result<Vec<Passed>, InheritError> {
    let var = |key: &str| std::env::var(key).ok();
    let fds = listed_fds(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?;
    fds.into_iter()
        .map(|(fd, name)| {
            let addr = listening_tcp_address(fd).map_err(|what| {
                let named = name.as_ref().map_or(String::new(), |n| format!(" (named {n:?})"));
                InheritError(format!(
                    "inherited file descriptor {fd}{named} from LISTEN_FDS {what}, not a listening TCP socket; the socket unit must use ListenStream= lines only"
                ))
            })?;
            Ok(Passed { fd, name, addr })
        })
        .collect()
}

/// The descriptors and names the variables describe, as `sd_listen_fds_with_names` reads them:
/// nothing unless `LISTEN_PID` is this process (the variables may have leaked from a parent).
fn listed_fds(
    pid_var: Option<&str>,
    fds_var: Option<&str>,
    names_var: Option<&str>,
    pid: u32,
) -> Result<Vec<(RawFd, Option<String>)>, InheritError> {
    let (Some(pid_var), Some(fds_var)) = (pid_var, fds_var) else {
        return Ok(Vec::new());
    };
    let listen_pid: u32 = pid_var.trim().parse().map_err(|_| {
        InheritError(format!(
            "LISTEN_PID is {pid_var:?}, which is not a process ID"
        ))
    })?;
    if listen_pid != pid {
        return Ok(Vec::new());
    }
    let count: RawFd = fds_var
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=1024).contains(n))
        .ok_or_else(|| {
            InheritError(format!(
                "LISTEN_FDS is {fds_var:?}, which is not a number of file descriptors (0-1024)"
            ))
        })?;
    let names: Vec<Option<String>> = match names_var {
        None => vec![None; count as usize],
        Some(names) => names
            .split(':')
            .map(|n| (!n.is_empty()).then(|| n.to_string()))
            .collect(),
    };
    if names.len() != count as usize {
        return Err(InheritError(format!(
            "LISTEN_FDNAMES names {} sockets but LISTEN_FDS passes {count}",
            names.len()
        )));
    }
    Ok((FIRST_FD..).zip(names).collect())
}

/// The address `fd` listens on, or what it is instead ("is not open", "is a UDP socket", …).
fn listening_tcp_address(fd: RawFd) -> Result<SocketAddr, String> {
    // SAFETY: fcntl(2) on any number is defined; EBADF says nothing is open there.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err("is not open".to_string());
    }
    // SAFETY: open (checked above) and only borrowed for the checks below, while start-up runs
    // on one thread; `take` is what assumes ownership, later.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let sock = SockRef::from(&borrowed);
    let kind = sock.r#type().map_err(|err| match err.raw_os_error() {
        Some(libc::ENOTSOCK) => "is not a socket".to_string(),
        _ => format!("cannot be inspected ({err})"),
    })?;
    let domain = sock
        .domain()
        .map_err(|err| format!("cannot be inspected ({err})"))?;
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err("is a Unix socket".to_string());
    }
    if kind != Type::STREAM {
        return Err("is a datagram socket".to_string());
    }
    if !sock.is_listener().unwrap_or(false) {
        return Err("is a TCP socket that is not listening".to_string());
    }
    sock.local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .ok_or_else(|| "has no IP address".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_are_for_this_process_only() {
        assert_eq!(listed_fds(Some("41"), Some("1"), None, 42), Ok(vec![]));
        assert_eq!(listed_fds(None, Some("1"), None, 42), Ok(vec![]));
        assert_eq!(listed_fds(Some("42"), None, None, 42), Ok(vec![]));
        assert_eq!(
            listed_fds(Some("42"), Some("2"), None, 42),
            Ok(vec![(3, None), (4, None)])
        );
    }

    #[test]
    fn names_follow_the_descriptors_in_order() {
        assert_eq!(
            listed_fds(Some("42"), Some("3"), Some("http::metrics"), 42),
            Ok(vec![
                (3, Some("http".to_string())),
                (4, None),
                (5, Some("metrics".to_string()))
            ])
        );
    }

    #[test]
    fn malformed_variables_are_one_sentence_each() {
        let err = listed_fds(Some("me"), Some("1"), None, 42).unwrap_err();
        assert!(err.0.contains("LISTEN_PID is \"me\""), "{err}");
        let err = listed_fds(Some("42"), Some("two"), None, 42).unwrap_err();
        assert!(err.0.contains("LISTEN_FDS is \"two\""), "{err}");
        let err = listed_fds(Some("42"), Some("2"), Some("http"), 42).unwrap_err();
        assert!(
            err.0.contains("names 1 sockets but LISTEN_FDS passes 2"),
            "{err}"
        );
    }

    #[test]
    fn only_a_listening_tcp_socket_passes_the_check() {
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            listening_tcp_address(listener.as_raw_fd()),
            Ok(listener.local_addr().unwrap())
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            listening_tcp_address(udp.as_raw_fd()),
            Err("is a datagram socket".to_string())
        );
        let bound = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        bound
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        assert_eq!(
            listening_tcp_address(bound.as_raw_fd()),
            Err("is a TCP socket that is not listening".to_string())
        );
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            listening_tcp_address(file.as_raw_fd()),
            Err("is not a socket".to_string())
        );
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            listening_tcp_address(unix.as_raw_fd()),
            Err("is a Unix socket".to_string())
        );
    }
}
