//! Whether the client of an HTTP request is still connected, so that the
//! server stops generating for a client that left (closed its connection, or
//! shut down its sending side: as nginx does, that counts as leaving).
//!
//! tiny_http does not hand out a request's socket, so on Linux the watch
//! finds it among the process's open descriptors (the one connected to the
//! request's peer on the server's port), duplicates it, and asks the kernel
//! for the connection's TCP state: anything but "established" (the peer sent
//! its FIN, or a reset) means the client is gone. A peek at the bytes would
//! not do: tiny_http shuts down the reading side itself once it has read a
//! `Connection: close` request, which reads as end-of-stream too. Elsewhere
//! the watch never reports a departure, and a departed client is noticed
//! only when a write to it fails.

use std::net::SocketAddr;

/// The connection of one request, as far as it can be watched.
pub(super) struct ClientWatch {
    #[cfg(target_os = "linux")]
    socket: Option<std::os::fd::OwnedFd>,
}

impl ClientWatch {
    /// The watch of the connection from `peer` to the server's `port`.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    pub(super) fn new(peer: Option<&SocketAddr>, port: u16) -> ClientWatch {
        #[cfg(target_os = "linux")]
        return ClientWatch { socket: peer.and_then(|peer| linux::find_socket(peer, port)) };
        #[cfg(not(target_os = "linux"))]
        return ClientWatch {};
    }

    /// True once the client has closed or reset its connection.
    pub(super) fn gone(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.socket.as_ref().is_some_and(linux::closed_by_peer);
        #[cfg(not(target_os = "linux"))]
        return false;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::SocketAddr;
    use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

    use std::os::fd::AsRawFd;

    use rustix::net::{getpeername, getsockname};

    /// A duplicate of this process's socket connected to `peer` on local `port`.
    pub(super) fn find_socket(peer: &SocketAddr, port: u16) -> Option<OwnedFd> {
        let listing = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"));
        let fds: Vec<RawFd> = listing
            .ok()?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.into_iter().find_map(|raw| {
            // SAFETY: the descriptor may be closed by another thread meanwhile;
            // the calls below then fail with EBADF (or look at an unrelated
            // descriptor and do not match): nothing is read or written through it.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let local = SocketAddr::try_from(getsockname(fd).ok()?).ok()?;
            let remote = SocketAddr::try_from(getpeername(fd).ok()??).ok()?;
            (local.port() == port && remote == *peer)
                .then(|| rustix::io::fcntl_dupfd_cloexec(fd, 0).ok())
                .flatten()
        })
    }

    /// Whether the connection has left the established state (the peer
    /// closed or reset it); false when the kernel does not say.
    pub(super) fn closed_by_peer(socket: &OwnedFd) -> bool {
        // SAFETY: `tcp_info` is plain data; the kernel fills at most `length` bytes of it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: a valid descriptor, and a buffer of `length` bytes.
        let status = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut length,
            )
        };
        status == 0 && info.tcpi_state != TCP_ESTABLISHED
    }

    /// `TCP_ESTABLISHED` of the kernel's `tcp_states.h`.
    const TCP_ESTABLISHED: u8 = 1;
}
