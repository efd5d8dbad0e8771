//! Descriptors passed over the local socket (SCM_RIGHTS): a foreground `run` hands the agent its
//! stdin/stdout/stderr so the container writes straight to the user's terminal or pipe. The
//! syscall side of `berth_proto::socket`, which itself has no unsafe code.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

const MAX_FDS: usize = 4;

/// sendmsg of `data` with `fds` attached.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is a plain C struct; every pointer in it refers to `iov`/`cbuf`, which live
    // across the sendmsg call, and the control message is laid out with the CMSG_* macros.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
        }
        let n = libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// recvmsg into `buf`; descriptors that came with the bytes are returned owned (close-on-exec).
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: pure size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut fds = Vec::new();
    // SAFETY: as in send_with_fds; the kernel writes at most `space` bytes of control data, and
    // each received descriptor is taken into an OwnedFd exactly once.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::socket::{decode, encode, take_frame, Request};
    use std::os::fd::AsRawFd;

    #[test]
    fn frames_and_fds_round_trip() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let req = Request::Start { id: "abc".into(), attach: true, wait: true };
        let devnull = std::fs::File::open("/dev/null").unwrap();
        send_with_fds(a.as_raw_fd(), &encode(&req).unwrap(), &[devnull.as_raw_fd()]).unwrap();
        let mut buf = vec![0u8; 256];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        let mut v = buf[..n].to_vec();
        let body = take_frame(&mut v).unwrap().unwrap();
        assert_eq!(decode::<Request>(&body).unwrap(), req);
        assert_eq!(fds.len(), 1);
        assert!(v.is_empty());
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        assert!(take_frame(&mut huge).is_err());
    }
}
