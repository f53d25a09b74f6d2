//! The test hosts of `sessionkit_tests::netns` do what they say, on a TCP
//! echo server inside the namespace: a clear path is fast, a delay holds
//! each packet its time each way, a partition passes nothing (and the
//! connection carries on once it heals), loss drops some and TCP carries
//! everything through, and nothing is left behind once the host is dropped.
//! Needs root, `ip`, `nft` and `iptables` (skips without, unless
//! `SESSIONKIT_REQUIRE_NETNS` is set).

#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use sessionkit_tests::netns::{self, Impairment, TestHost};

/// Echoes every byte on every connection, each on a thread of its own.
fn echo(listener: TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0_u8; 64];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// One byte there and back; how long it took.
fn round_trip(stream: &mut TcpStream, byte: u8) -> Duration {
    let started = Instant::now();
    stream.write_all(&[byte]).unwrap();
    let mut back = [0_u8];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back[0], byte);
    started.elapsed()
}

fn listed(program: &str, args: &[&str], needle: &str) -> bool {
    let out = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(needle)
}

#[test]
fn a_test_host_delays_partitions_and_loses_packets_and_leaves_nothing_behind() {
    if !netns::available("netns") {
        return;
    }
    let host = TestHost::new().unwrap();
    let listener = host.listen(0).unwrap();
    let addr = (host.addr(), listener.local_addr().unwrap().port());
    echo(listener);
    let connect = || {
        let stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    };

    // Clear.
    let mut stream = connect();
    let clear = round_trip(&mut stream, 1);
    assert!(clear < Duration::from_millis(100), "{clear:?}");

    // 200 ms each way: a round trip takes 400 ms, and so does the handshake.
    host.impair(Impairment::Delay(Duration::from_millis(200)))
        .unwrap();
    let delayed = round_trip(&mut stream, 2);
    eprintln!("round trip with 200 ms each way: {delayed:?}");
    assert!(delayed >= Duration::from_millis(400), "{delayed:?}");
    assert!(delayed < Duration::from_millis(600), "{delayed:?}");
    let started = Instant::now();
    let mut second = connect();
    let handshake = started.elapsed();
    assert!(handshake >= Duration::from_millis(400), "{handshake:?}");
    round_trip(&mut second, 3);

    // Partitioned: nothing comes back, nothing is closed; healed, the byte
    // held in TCP's retransmissions arrives.
    host.impair(Impairment::Partition).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    stream.write_all(&[4]).unwrap();
    let mut back = [0_u8];
    let cut = stream.read_exact(&mut back).unwrap_err();
    assert!(
        matches!(
            cut.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{cut:?}"
    );
    assert!(host.dropped() > 0, "the partition dropped the byte");
    host.impair(Impairment::Clear).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back[0], 4);

    // 30 % loss: some packets go, every byte still comes back in order.
    // On a connection that has seen only the clear path: the one above has
    // learnt a 400 ms round trip, so its retransmission timer starts near
    // 1 s and five losses of one segment in a row (0.3^5, a few percent
    // over this loop) outlasted a 20 s read. Here it starts at 200 ms, and
    // the read waits 60 s: eight losses in a row (0.3^8 ≈ 7e-5 a segment).
    host.impair(Impairment::Clear).unwrap();
    let mut lossy = connect();
    round_trip(&mut lossy, 9);
    lossy
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    host.impair(Impairment::Loss(30)).unwrap();
    for byte in 10..25 {
        round_trip(&mut lossy, byte);
    }
    let dropped = host.dropped();
    eprintln!("15 round trips under 30 % loss: {dropped} packets dropped");
    assert!(dropped > 0);

    let (ns, table) = (
        host.namespace().to_owned(),
        host.namespace().replace('-', "_"),
    );
    let dev = format!("sknf{}r", ns.split('-').nth(1).unwrap());
    host.impair(Impairment::Delay(Duration::from_millis(10)))
        .unwrap();
    assert!(listed("iptables", &["-S", "INPUT"], &ns));
    drop(host);
    assert!(!std::path::Path::new(&format!("/run/netns/{ns}")).exists());
    assert!(!listed("ip", &["link", "show"], &dev));
    assert!(!listed("nft", &["list", "tables"], &table));
    assert!(!listed("iptables", &["-S", "INPUT"], &ns));
}
