//! Descriptors sent along with bytes over a Unix socket (SCM_RIGHTS), for
//! both ends of the helper's socket. Neither function allocates, so the
//! helper may call them between its fork and its exec.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The most descriptors one message carries: the helper gets stdio, the
/// pidfd and a cgroup file per hierarchy (cgroup v1 has fewer than 20).
pub const MAX_FDS: usize = 64;

/// Room for MAX_FDS descriptors and the cmsghdr, aligned as cmsghdr wants.
type Control = [u64; (MAX_FDS * size_of::<RawFd>() + 64) / 8];

/// One sendmsg of the start of `bytes` with `fds` (at most MAX_FDS)
/// attached; how many bytes went.
pub fn send(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let payload = size_of_val(fds) as u32;
    let mut control: Control = [0; _];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; the buffers outlive the call, and the
    // header and data written lie within `control` (sized for MAX_FDS).
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        if !fds.is_empty() {
            message.msg_control = control.as_mut_ptr().cast();
            message.msg_controllen = libc::CMSG_SPACE(payload) as _;
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(payload) as _;
            let data = libc::CMSG_DATA(header).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
        loop {
            let sent = libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL);
            if sent >= 0 || *libc::__errno_location() != libc::EINTR {
                break sent;
            }
        }
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// One recvmsg into `buffer`; the descriptors that came with the bytes are
/// appended to `fds`, close-on-exec. More than MAX_FDS in one message is an
/// error (the ones that came are closed).
pub fn receive(
    socket: BorrowedFd<'_>,
    buffer: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> std::io::Result<usize> {
    let mut control: Control = [0; _];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: msghdr is plain data; the buffers outlive the call; the
    // control messages walked are those the kernel wrote into `control`.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = size_of::<Control>() as _;
        let n = loop {
            let n = libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 || *libc::__errno_location() != libc::EINTR {
                break n;
            }
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let count =
                    ((*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
        if message.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(std::io::Error::other("too many descriptors in one message"));
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn bytes_and_descriptors_arrive_together() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let sent = send(a.as_fd(), b"hello", &[file.as_fd(), a.as_fd()]).unwrap();
        assert_eq!(sent, 5);
        let mut buffer = [0u8; 16];
        let mut fds = Vec::new();
        let n = receive(b.as_fd(), &mut buffer, &mut fds).unwrap();
        assert_eq!(&buffer[..n], b"hello");
        assert_eq!(fds.len(), 2);
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn too_many_descriptors_are_refused_before_sending() {
        let (a, _b) = UnixStream::pair().unwrap();
        let many = vec![a.as_fd(); MAX_FDS + 1];
        assert!(send(a.as_fd(), b"x", &many).is_err());
    }
}
