//! The live session's control port: a UDP socket a voice agent sends commands to (`clear`: the user
//! interrupted, drop the queued speech) and that tells the sender of the last command what plays
//! (`started SEGMENT RUNNING_MS`, `finished SEGMENT POSITION_MS complete|interrupted`).

use std::net::{SocketAddr, UdpSocket};

use crate::engine::PlaybackEvent;
use crate::error::{Error, Result};

/// A command received on the control port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Drop the speech queued and not yet shown.
    Clear,
}

/// A bound control port, polled without blocking.
pub struct ControlPort {
    socket: UdpSocket,
    /// Who sent the last command: playback events go there.
    peer: Option<SocketAddr>,
    buffer: [u8; 512],
}

impl ControlPort {
    /// Binds `address` (`HOST:PORT`).
    pub fn bind(address: &str) -> Result<Self> {
        let io = |source| Error::Io { path: address.into(), source };
        let socket = UdpSocket::bind(address).map_err(io)?;
        socket.set_nonblocking(true).map_err(io)?;
        Ok(ControlPort { socket, peer: None, buffer: [0; 512] })
    }

    /// The address bound (its port, when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// The next command waiting, if any; a datagram that is no command is answered with an error line
    /// and skipped.
    pub fn poll(&mut self) -> Option<Command> {
        while let Ok((n, from)) = self.socket.recv_from(&mut self.buffer) {
            self.peer = Some(from);
            let text = String::from_utf8_lossy(&self.buffer[..n]).trim().to_ascii_lowercase();
            match text.as_str() {
                "clear" => return Some(Command::Clear),
                other => {
                    let reply = format!("error unknown command `{other}`: send `clear`\n");
                    let _ = self.socket.send_to(reply.as_bytes(), from);
                }
            }
        }
        None
    }

    /// Tells the sender of the last command about `event` (nothing when nobody sent one yet).
    pub fn report(&self, event: &PlaybackEvent) {
        if let Some(peer) = self.peer {
            let _ = self.socket.send_to(format!("{event}\n").as_bytes(), peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_come_in_and_events_go_back_to_their_sender() {
        let mut port = ControlPort::bind("127.0.0.1:0").unwrap();
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        agent.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let to = port.local_addr().unwrap();
        assert_eq!(port.poll(), None);
        agent.send_to(b"hello", to).unwrap();
        agent.send_to(b"CLEAR\n", to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(port.poll(), Some(Command::Clear));
        let mut buf = [0u8; 128];
        let n = agent.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("unknown command `hello`"));
        port.report(&PlaybackEvent::Finished { segment: 3, position: 1_234_000_000, interrupted: true });
        let n = agent.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"finished 3 1234 interrupted\n");
    }
}
