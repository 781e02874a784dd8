//! Kernel uevents over a `NETLINK_KOBJECT_UEVENT` socket.
//!
//! The kernel multicasts a message to group 1 for every device added, removed or changed,
//! whether or not udevd runs. (udevd re-broadcasts processed events to group 2 with a
//! `libudev` header; we listen to the kernel's group, so we also work without udevd.) A
//! message is `ACTION@DEVPATH\0KEY=VALUE\0...`.
//!
//! The socket is read on a dedicated thread with a 1 s receive timeout so it notices a stop
//! request; block-subsystem events are forwarded into a tokio channel.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt,
    socket, sockopt,
};
use nix::sys::time::TimeVal;
use tokio::sync::mpsc;

use crate::{Error, Result};

/// One kernel uevent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UEvent {
    /// add, remove, change, move, online, offline, bind, unbind.
    pub action: String,
    /// sysfs path without `/sys`.
    pub devpath: String,
    pub subsystem: String,
    /// Kernel name, e.g. `sdb`.
    pub devname: Option<String>,
    /// disk or partition.
    pub devtype: Option<String>,
}

/// Parse one kernel uevent message; `None` for udevd's re-broadcasts and garbage.
pub fn parse_uevent(msg: &[u8]) -> Option<UEvent> {
    if msg.starts_with(b"libudev") {
        return None;
    }
    let mut fields = msg.split(|b| *b == 0).filter(|f| !f.is_empty());
    let header = std::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = header.split_once('@')?;
    let mut ev = UEvent {
        action: action.to_owned(),
        devpath: devpath.to_owned(),
        ..Default::default()
    };
    for f in fields {
        let Ok(s) = std::str::from_utf8(f) else {
            continue;
        };
        let Some((k, v)) = s.split_once('=') else {
            continue;
        };
        match k {
            "ACTION" => ev.action = v.to_owned(),
            "DEVPATH" => ev.devpath = v.to_owned(),
            "SUBSYSTEM" => ev.subsystem = v.to_owned(),
            "DEVNAME" => ev.devname = Some(v.rsplit('/').next().unwrap_or(v).to_owned()),
            "DEVTYPE" => ev.devtype = Some(v.to_owned()),
            _ => {}
        }
    }
    Some(ev)
}

/// A bound uevent socket.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
}

const KERNEL_GROUP: u32 = 1;

impl UeventSocket {
    /// Open and bind to the kernel's uevent group (needs no privileges).
    pub fn open() -> Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(|source| Error::Netlink {
            op: "socket",
            source,
        })?;
        // a big buffer: a hot-plug storm (e.g. 100 loop devices) must not overflow
        let _ = setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(1, 0)).map_err(|source| {
            Error::Netlink {
                op: "setsockopt",
                source,
            }
        })?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP))
            .map_err(|source| Error::Netlink { op: "bind", source })?;
        Ok(UeventSocket { fd })
    }

    /// Wait up to 1 s for the next message; `Ok(None)` on timeout.
    pub fn recv(&self) -> Result<Option<UEvent>> {
        let mut buf = vec![0u8; 16 * 1024];
        match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => Ok(parse_uevent(&buf[..n])),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => Ok(None),
            Err(nix::errno::Errno::ENOBUFS) => {
                // the kernel dropped events: report a synthetic "change" so callers rescan
                Ok(Some(UEvent {
                    action: "overflow".into(),
                    subsystem: "block".into(),
                    ..Default::default()
                }))
            }
            Err(source) => Err(Error::Netlink { op: "recv", source }),
        }
    }
}

/// Stops the listener thread when dropped or when [`UeventListener::stop`] is called.
#[derive(Debug)]
pub struct UeventListener {
    stop: Arc<AtomicBool>,
}

impl UeventListener {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for UeventListener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Open the socket and forward every block-subsystem uevent into the returned channel, from
/// a dedicated thread. Errors opening the socket are returned (callers fall back to polling).
pub fn listen_block() -> Result<(UeventListener, mpsc::UnboundedReceiver<UEvent>)> {
    let sock = UeventSocket::open()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name("uevent".into())
        .spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match sock.recv() {
                    Ok(Some(ev)) if ev.subsystem == "block" => {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "uevent socket failed; discovery falls back to polling");
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        })
        .map_err(|source| Error::Io { path: "uevent thread".into(), source })?;
    Ok((UeventListener { stop }, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_messages_and_skips_udev_ones() {
        let msg = b"add@/devices/virtual/block/loop3\0ACTION=add\0DEVPATH=/devices/virtual/block/loop3\0SUBSYSTEM=block\0MAJOR=7\0MINOR=3\0DEVNAME=loop3\0DEVTYPE=disk\0DISKSEQ=12\0SEQNUM=4711\0";
        let ev = parse_uevent(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.devpath, "/devices/virtual/block/loop3");
        assert_eq!(ev.subsystem, "block");
        assert_eq!(ev.devname.as_deref(), Some("loop3"));
        assert_eq!(ev.devtype.as_deref(), Some("disk"));
        assert!(parse_uevent(b"libudev\0\xfe\xed\xca\xfe").is_none());
        assert!(parse_uevent(b"garbage").is_none());
    }

    #[test]
    fn socket_opens_without_privileges() {
        // NETLINK_KOBJECT_UEVENT needs no capability; this proves the safe nix path works here
        let s = UeventSocket::open().unwrap();
        drop(s);
    }
}
