//! Realm failures are the port's or the slot's problem, not the session's
//! (issue 11 items 4 and 5): a device port with nothing listening must not
//! cost a cloud handshake per client, and a client whose BIND went
//! unanswered is moved to another session within its hold time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::media::Background;

const SN: &str = "DEMO00000000001";

fn emulator(args: &[&str]) -> (Background, String) {
    common::media::start_emulator(args)
}

fn tunnel(cloud: &str, args: &[&str]) -> (Background, String) {
    common::media::start_tunnel(SN, cloud, args)
}

/// Echoes `message` through `addr`; None when the tunnel closed the client.
fn echo(addr: &str, message: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(message).ok()?;
    let mut back = vec![0u8; message.len()];
    s.read_exact(&mut back).ok()?;
    Some(back)
}

#[test]
fn a_closed_device_port_closes_the_client_and_keeps_the_session() {
    let (emu, cloud) = emulator(&[]);
    // Device port 9999: nothing listens there, every BIND gets DISC.
    let (t, addr) = tunnel(&cloud, &["-p", "127.0.0.1:0:9999"]);
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 16];
        // The tunnel closes the client: EOF (or a reset), never a hang.
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "bytes from a refused port");
    }
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "{stderr}");
    let handshakes = stderr.matches(": connecting to ").count();
    assert_eq!(
        handshakes, 1,
        "refused BINDs cost new device sessions:\n{stderr}"
    );
    assert!(
        stderr.contains("device port 9999 refused"),
        "the log names the refusing port:\n{stderr}"
    );
    drop(emu);
}

#[test]
fn a_client_whose_bind_goes_unanswered_gets_another_session() {
    // One realm per device session, and BINDs beyond it are ignored.
    let (emu, cloud) = emulator(&[
        "--service",
        "7=echo",
        "--max-realms",
        "1",
        "--refuse-bind",
        "silent",
    ]);
    let (t, addr) = tunnel(&cloud, &["-p", "127.0.0.1:0:7"]);
    // The first client holds the session's only realm.
    let mut first = TcpStream::connect(&addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    first.write_all(b"first").unwrap();
    let mut back = [0u8; 5];
    first.read_exact(&mut back).unwrap();
    // Two more clients: their BINDs on the first session go unanswered,
    // so each must be moved to a new session within its 15 s hold time.
    let started = Instant::now();
    let others: Vec<_> = (0..2u8)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || echo(&addr, &[b'a' + i; 64], Duration::from_secs(20)))
        })
        .collect();
    for (i, o) in others.into_iter().enumerate() {
        let got = o.join().unwrap();
        assert_eq!(
            got,
            Some(vec![b'a' + i as u8; 64]),
            "client {i} was dropped"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(first);
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "{stderr}");
    drop(emu);
}
