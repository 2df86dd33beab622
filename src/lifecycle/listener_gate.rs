//! Closing the listening socket at the end of the drain (docs/reference.md §9) without resetting
//! connections the kernel already accepted, and without touching a socket tandem only borrowed.

use super::inherited::Ownership;

/// The listening socket, seen from the stop sequence: it closes the door without dropping anyone
/// standing in the doorway.
///
/// Closing a listener resets every connection the kernel has completed but the server has not yet
/// accepted, and a listener left open while workers finish keeps queueing connections that will
/// never be served. Both lose requests a client believes were accepted. So the gate first makes
/// the kernel ignore new SYNs (a socket filter), lets the accept loop take what is queued, and
/// only then shuts the socket: late clients retry their SYN and find the port closed.
///
/// An inherited socket ([`Ownership::Shared`]) is the opposite case: the service manager holds
/// the same socket and hands it to the next process, so the queue is exactly where connections
/// should wait. A filter or a `shutdown()` acts on the socket, not on this process's descriptor:
/// the filter would keep dropping SYNs for the next process, and the shutdown would stop the
/// socket listening for everyone. So on a shared socket the gate does neither; the stop sequence
/// only stops accepting.
#[derive(Debug)]
pub(crate) struct ListenerGate {
    socket: std::net::TcpListener,
    ownership: Ownership,
}

impl ListenerGate {
    pub(crate) fn new(socket: std::net::TcpListener, ownership: Ownership) -> Self {
        Self { socket, ownership }
    }

    /// Whether the socket outlives this process (inherited): the stop must leave it listening.
    pub(crate) fn is_shared(&self) -> bool {
        self.ownership == Ownership::Shared
    }

    /// New connection attempts (SYN without ACK) are dropped; established ones are untouched.
    /// Does nothing on a shared socket, whose new connections belong to the next process.
    pub(crate) fn refuse_new_connections(&self) -> std::io::Result<()> {
        use socket2::{SockFilter, SockRef};
        if self.is_shared() {
            return Ok(());
        }
        // Classic BPF over the TCP header: load the flags byte, keep SYN and ACK, drop a bare SYN.
        const BPF_LD_B_ABS: u16 = 0x30;
        const BPF_ALU_AND_K: u16 = 0x54;
        const BPF_JMP_JEQ_K: u16 = 0x15;
        const BPF_RET_K: u16 = 0x06;
        let program = [
            SockFilter::new(BPF_LD_B_ABS, 0, 0, 13),
            SockFilter::new(BPF_ALU_AND_K, 0, 0, 0x12),
            SockFilter::new(BPF_JMP_JEQ_K, 0, 1, 0x02),
            SockFilter::new(BPF_RET_K, 0, 0, 0),
            SockFilter::new(BPF_RET_K, 0, 0, u32::MAX),
        ];
        SockRef::from(&self.socket).attach_filter(&program)
    }

    /// Stops listening: from now on connection attempts are refused. Does nothing on a shared
    /// socket, which keeps listening (and queueing) for the next process.
    pub(crate) fn close(&self) -> std::io::Result<()> {
        if self.is_shared() {
            return Ok(());
        }
        socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Both)
    }
}
