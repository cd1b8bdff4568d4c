//! Zero-copy forwarding of a TCP connection on Linux: each direction moves bytes socket ->
//! pipe -> socket with splice(2), so they never enter user space (as HAProxy does), driven by
//! tokio's readiness. Copying through a buffer instead costs two copies per byte and, on a
//! small machine shared with the replica and the client, most of the throughput.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, SpliceFFlags, splice};
use nix::sys::socket::{Shutdown, shutdown};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// At most this much is moved per call.
const CHUNK: usize = 1 << 20;
/// The pipe's capacity asked for (64 KiB by default).
const PIPE_SIZE: i32 = 1 << 20;

/// Forwards `a` and `b` to each other until both directions end; the bytes each way.
pub async fn both_ways(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b), one_way(b, a))
}

/// Moves everything `from` sends to `to`, then shuts `to`'s sending side.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // A larger pipe moves more per call; the kernel may refuse (a user's pipe quota), which
    // only costs calls.
    let _ = nix::fcntl::fcntl(&pipe_in, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        // Socket -> pipe.
        let moved = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, pipe_in.as_fd(), None, CHUNK, flags).map_err(errno_to_io)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if moved == 0 {
            let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
            return Ok(total);
        }
        total += moved as u64;
        // Pipe -> socket, all of it.
        drain(&pipe_out, to, moved, flags).await?;
    }
}

async fn drain(
    pipe: &OwnedFd,
    to: &TcpStream,
    mut left: usize,
    flags: SpliceFFlags,
) -> io::Result<()> {
    while left > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            splice(pipe.as_fd(), None, to.as_fd(), None, left, flags).map_err(errno_to_io)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn errno_to_io(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}
