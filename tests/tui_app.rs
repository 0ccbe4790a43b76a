//! The inspector's app state and rendering, driven with key and mouse
//! events and checked on ratatui `TestBackend` buffers: the list, the field
//! tree and the hex highlight of known packets, the filter, the help screen,
//! the realms view, follow/pause, small terminals and resizing.
//!
//! Packets are the reference vectors: DH-P2P.md §11.2 (cloud request),
//! §11.6 (punch) and the whole §11.8 device session (D1–D23: SYN, AUTH, one
//! realm BIND → CONN → DATA → DISC).

use std::net::SocketAddr;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use dhp2p::decode::record::Record;
use dhp2p::tui::app::{App, Config, Focus, SourceState, View};
use dhp2p::tui::ui::{self, HIGHLIGHT};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

const CLIENT: &str = "127.0.0.1:50000";
const DEVICE: &str = "127.0.0.1:40000";
const CLOUD: &str = "127.0.0.1:8800";

/// DH-P2P.md §11.8: the device session, one realm end to end.
const DEVICE_SESSION: &str = "
## D1 client→device SYN
0000  50 54 43 50 00 00 00 00 00 00 00 00 00 02 ff ff
0010  00 00 00 00 00 00 00 00 00 03 01 00
## D2 device→client SYN
0000  50 54 43 50 00 00 00 00 00 00 00 04 00 02 ff ff
0010  00 00 10 00 00 00 00 00 00 03 01 00
## D3 client→device 0x19 AUTH + sign
0000  50 54 43 50 00 00 00 04 00 00 00 04 00 00 ff ff
0010  00 00 00 01 00 00 10 00 19 00 00 00 00 00 00 00
0020  00 00 00 00 53 49 47 4e 2d 45 58 41 4d 50 4c 45
0030  2d 30 30 31
## D4 device→client empty ACK
0000  50 54 43 50 00 00 00 04 00 00 00 20 00 00 ff ff
0010  00 00 10 01 00 00 00 01
## D5 device→client 0x1A
0000  50 54 43 50 00 00 00 04 00 00 00 20 00 00 ff ff
0010  00 00 10 02 00 00 00 01 1a 00 00 00 00 00 00 00
0020  00 00 00 00
## D6 client→device 0x1B
0000  50 54 43 50 00 00 00 20 00 00 00 10 00 00 ff fe
0010  00 00 00 02 00 00 10 02 1b 00 00 00 00 00 00 00
0020  00 00 00 00
## D7 device→client empty ACK (tunnel ready)
0000  50 54 43 50 00 00 00 10 00 00 00 2c 00 00 ff fe
0010  00 00 10 03 00 00 00 02
## D8 client→device BIND realm 0x0a0b0c0d → 127.0.0.1:554
0000  50 54 43 50 00 00 00 2c 00 00 00 10 00 00 ff fd
0010  00 00 00 03 00 00 10 03 11 00 00 00 0a 0b 0c 0d
0020  00 00 00 00 00 00 02 2a 7f 00 00 01
## D9 device→client empty ACK
0000  50 54 43 50 00 00 00 10 00 00 00 40 00 00 ff fe
0010  00 00 10 04 00 00 00 03
## D10 device→client STATUS CONN
0000  50 54 43 50 00 00 00 10 00 00 00 40 00 00 ff fe
0010  00 00 10 05 00 00 00 03 12 00 00 00 0a 0b 0c 0d
0020  00 00 00 00 43 4f 4e 4e
## D11 client→device empty ACK
0000  50 54 43 50 00 00 00 40 00 00 00 20 00 00 ff fc
0010  00 00 00 04 00 00 10 05
## D12 client→device DATA (RTSP OPTIONS, 51 bytes)
0000  50 54 43 50 00 00 00 40 00 00 00 20 00 00 ff fc
0010  00 00 00 05 00 00 10 05 10 00 00 33 0a 0b 0c 0d
0020  00 00 00 00 4f 50 54 49 4f 4e 53 20 72 74 73 70
0030  3a 2f 2f 31 32 37 2e 30 2e 30 2e 31 3a 35 35 34
0040  2f 20 52 54 53 50 2f 31 2e 30 0d 0a 43 53 65 71
0050  3a 20 31 0d 0a 0d 0a
## D13 device→client empty ACK
0000  50 54 43 50 00 00 00 20 00 00 00 7f 00 00 ff fd
0010  00 00 10 06 00 00 00 05
## D14 device→client DATA (RTSP reply, 28 bytes)
0000  50 54 43 50 00 00 00 20 00 00 00 7f 00 00 ff fd
0010  00 00 10 07 00 00 00 05 10 00 00 1c 0a 0b 0c 0d
0020  00 00 00 00 52 54 53 50 2f 31 2e 30 20 32 30 30
0030  20 4f 4b 0d 0a 43 53 65 71 3a 20 31 0d 0a 0d 0a
## D15 client→device empty ACK
0000  50 54 43 50 00 00 00 7f 00 00 00 48 00 00 ff fb
0010  00 00 00 06 00 00 10 07
## D16 device→client HEARTBEAT
0000  50 54 43 50 00 00 00 48 00 00 00 7f 00 00 ff fc
0010  00 00 10 08 00 00 00 06 13 00 00 00 00 00 00 00
0020  00 00 00 00
## D17 client→device empty ACK
0000  50 54 43 50 00 00 00 7f 00 00 00 54 00 00 ff fb
0010  00 00 00 07 00 00 10 08
## D18 client→device HEARTBEAT
0000  50 54 43 50 00 00 00 7f 00 00 00 54 00 00 ff fb
0010  00 00 00 08 00 00 10 08 13 00 00 00 00 00 00 00
0020  00 00 00 00
## D19 device→client empty ACK
0000  50 54 43 50 00 00 00 54 00 00 00 8b 00 00 ff fb
0010  00 00 10 09 00 00 00 08
## D20 client→device STATUS DISC
0000  50 54 43 50 00 00 00 8b 00 00 00 54 00 00 ff fa
0010  00 00 00 09 00 00 10 09 12 00 00 00 0a 0b 0c 0d
0020  00 00 00 00 44 49 53 43
## D21 device→client empty ACK
0000  50 54 43 50 00 00 00 54 00 00 00 9b 00 00 ff fb
0010  00 00 10 0a 00 00 00 09
## D22 device→client STATUS DISC
0000  50 54 43 50 00 00 00 54 00 00 00 9b 00 00 ff fb
0010  00 00 10 0b 00 00 00 09 12 00 00 00 0a 0b 0c 0d
0020  00 00 00 00 44 49 53 43
## D23 client→device empty ACK
0000  50 54 43 50 00 00 00 9b 00 00 00 64 00 00 ff f9
0010  00 00 00 0a 00 00 10 0b
";

/// DH-P2P.md §11.6: the inverted-STUN Binding Request, client → device.
const PUNCH_REQUEST: &str =
    "fffeffe7deed5bbd000102030405060708090a0b7fd5fff72b619857d42b81e1fffbfff7fffe63bf34ff8ef5";
/// DH-P2P.md §11.6: the Binding Success Response ([rs] form).
const PUNCH_RESPONSE: &str =
    "fefeffe7deed5bbda1a2a3a4a5a6a7a8a9aaabac7fd6fff72b619857d42b81e1fffbfff7fffea8133f57fe37";
/// DH-P2P.md §11.2: `DHGET /probe/p2psrv`, CSeq 1.
const PROBE: &str = "DHGET /probe/p2psrv HTTP/1.1\r\nCSeq: 1\r\nAuthorization: WSSE profile=\"UsernameToken\"\r\nX-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"JpL3CgK92AyJzUvBm3aSlB/MmNM=\", Nonce=\"123456789\", Created=\"2024-01-02T03:04:05Z\"\r\n\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The §11.8 datagrams with their direction, in order.
fn device_session() -> Vec<(bool, Vec<u8>)> {
    let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
    for line in DEVICE_SESSION.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            out.push((head.contains("client→device"), Vec::new()));
        } else if !line.trim().is_empty() {
            let bytes = line
                .split_whitespace()
                .skip(1)
                .map(|b| u8::from_str_radix(b, 16).unwrap());
            out.last_mut().unwrap().1.extend(bytes);
        }
    }
    out
}

/// The whole reference conversation as records 1 ms apart: cloud probe and
/// answer, punch request and answer, then D1–D23.
fn conversation() -> Vec<Record> {
    let mut datagrams: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = vec![
        (addr(CLIENT), addr(CLOUD), PROBE.as_bytes().to_vec()),
        (
            addr(CLOUD),
            addr(CLIENT),
            b"HTTP/1.1 200 OK\r\nCSeq: 1\r\n\r\n".to_vec(),
        ),
        (
            addr(CLIENT),
            addr(DEVICE),
            hex::decode(PUNCH_REQUEST).unwrap(),
        ),
        (
            addr(DEVICE),
            addr(CLIENT),
            hex::decode(PUNCH_RESPONSE).unwrap(),
        ),
    ];
    for (to_device, payload) in device_session() {
        let (src, dst) = if to_device {
            (addr(CLIENT), addr(DEVICE))
        } else {
            (addr(DEVICE), addr(CLIENT))
        };
        datagrams.push((src, dst, payload));
    }
    datagrams
        .into_iter()
        .enumerate()
        .map(|(i, (src, dst, payload))| Record {
            number: i as u64 + 1,
            time: Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64),
            src,
            dst,
            payload,
        })
        .collect()
}

/// Frame number of D8 (the BIND) in [`conversation`].
const BIND_NUMBER: u64 = 4 + 8;

fn loaded_app(live: bool) -> App {
    let mut app = App::new(Config::new("reference.pcap", live));
    for record in conversation() {
        app.push(record);
    }
    app.set_source_state(if live {
        SourceState::Live
    } else {
        SourceState::Ended
    });
    app
}

fn draw(app: &mut App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

fn lines(buffer: &Buffer) -> Vec<String> {
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn screen(buffer: &Buffer) -> String {
    lines(buffer).join("\n")
}

/// Row and column (in cells) of the first occurrence of `needle`.
fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    lines(buffer).iter().enumerate().find_map(|(y, line)| {
        let byte = line.find(needle)?;
        Some((line[..byte].chars().count() as u16, y as u16))
    })
}

fn key(app: &mut App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn keys(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn select_number(app: &mut App, number: u64) {
    key(app, KeyCode::Home);
    while app.selected().unwrap().record.number != number {
        key(app, KeyCode::Down);
    }
}

/// Moves the tree cursor down to the row whose text starts with `label`.
fn tree_to(app: &mut App, label: &str) {
    while app.focus() != Focus::Tree {
        key(app, KeyCode::Tab);
    }
    key(app, KeyCode::Home);
    for _ in 0..100 {
        let row = app.tree_cursor_row();
        if app.detail().unwrap().rows[row].text.starts_with(label) {
            return;
        }
        key(app, KeyCode::Down);
    }
    panic!("no field {label:?} in the tree");
}

#[test]
fn list_shows_number_time_direction_kind_and_summary_in_kind_colours() {
    let mut app = loaded_app(false);
    let buffer = draw(&mut app, 80, 24);
    let text = screen(&buffer);
    assert!(
        text.contains("No.    Time       Direction   Kind  Info"),
        "{text}"
    );
    // The file starts at its first packet: the cloud probe.
    let (x, y) = find(&buffer, "CLOUD").expect("CLOUD label");
    assert_eq!(buffer[(x, y)].fg, Color::Cyan);
    let row = &lines(&buffer)[y as usize];
    assert!(
        row.starts_with("1      0.000000   50000→8800  CLOUD DHGET /probe/p2psrv CSeq=1"),
        "{row}"
    );
    let (x, y) = find(&buffer, "PUNCH").expect("PUNCH label");
    assert_eq!(buffer[(x, y)].fg, Color::Magenta);
    assert!(lines(&buffer)[y as usize].contains("Binding Request txid=fffefdfcfb"));
    let (x, y) = find(&buffer, "PTCP ").expect("PTCP label");
    assert_eq!(buffer[(x, y)].fg, Color::Green);
    assert!(lines(&buffer)[y as usize]
        .contains("5      0.004000   50000→40000 PTCP  SYN  sent=0 recv=0 pid=0x0002ffff"));
    // The status line: source, state, paused (a file starts paused), counts.
    let status = &lines(&buffer)[22];
    assert!(
        status.starts_with(" reference.pcap END  PAUSED F  CLOUD 2 PUNCH 2 PTCP 23 UDP 0"),
        "{status}"
    );
}

#[test]
fn wide_terminal_shows_full_addresses_and_panes_side_by_side() {
    let mut app = loaded_app(false);
    let buffer = draw(&mut app, 160, 40);
    let text = screen(&buffer);
    assert!(text.contains("127.0.0.1:50000 → 127.0.0.1:8800"), "{text}");
    let areas = app.areas();
    assert_eq!(areas.tree.y, areas.hex.y, "tree and hex side by side");
    assert!(areas.tree.x < areas.hex.x);
}

#[test]
fn bind_packet_tree_and_hex_highlight_of_the_target_port() {
    let mut app = loaded_app(false);
    select_number(&mut app, BIND_NUMBER);
    tree_to(&mut app, "Target Port");
    let buffer = draw(&mut app, 80, 40);
    let text = screen(&buffer);
    // The tree is describe()'s, as `dissect -V` prints it.
    let rows: Vec<String> = app
        .detail()
        .unwrap()
        .rows
        .iter()
        .map(|r| r.text.clone())
        .collect();
    assert_eq!(rows[0], "Phony TCP (Dahua P2P)");
    assert_eq!(rows[2], "Bytes Sent: 44");
    for field in [
        "▾ Body: BIND (0x11)",
        "Realm: 0x0a0b0c0d",
        "Target Port: 554",
    ] {
        assert!(text.contains(field), "no {field:?} in\n{text}");
    }
    assert!(text.contains(" Bytes 36..40 "), "{text}");
    let (x, y) = find(&buffer, "0020  00 00 00 00 00 00 02 2a 7f 00 00 01").expect("hex line");
    let hex = app.areas().hex;
    assert!(y > hex.y && y < hex.bottom());
    // Bytes 36..40 are bytes 4..8 of line 0x20: highlighted, the rest not.
    for byte in 0..12u16 {
        let cell = &buffer[(x + 6 + 3 * byte, y)];
        let highlighted = (4..8).contains(&byte);
        assert_eq!(
            cell.bg == HIGHLIGHT.bg.unwrap(),
            highlighted,
            "byte {} of line 0x20: {cell:?}",
            byte
        );
        assert_eq!(cell.fg == Color::Black, highlighted, "byte {byte}");
    }
    // The ASCII column highlights the same bytes: `..*.` of 00 00 02 2a.
    let ascii_x = x + 6 + 16 * 3 + 1;
    assert_eq!(buffer[(ascii_x + 7, y)].symbol(), "*");
    assert_eq!(buffer[(ascii_x + 7, y)].bg, Color::Yellow);
    assert_eq!(buffer[(ascii_x + 8, y)].bg, Color::Reset);
}

#[test]
fn hex_cursor_selects_the_field_under_it() {
    let mut app = loaded_app(false);
    select_number(&mut app, BIND_NUMBER);
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus(), Focus::Hex);
    key(&mut app, KeyCode::Home);
    assert_eq!(app.hex_cursor(), Some(0));
    let row = app.tree_cursor_row();
    assert_eq!(app.detail().unwrap().rows[row].text, "Magic: PTCP");
    for _ in 0..4 {
        key(&mut app, KeyCode::Right);
    }
    let row = app.tree_cursor_row();
    assert_eq!(app.detail().unwrap().rows[row].text, "Bytes Sent: 44");
    // Down moves a whole hex line (16 bytes at 80 columns): byte 20, rmid.
    draw(&mut app, 80, 24);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.hex_cursor(), Some(20));
    assert_eq!(app.highlighted_range(), Some(20..24));
}

#[test]
fn tree_fields_collapse_and_expand() {
    let mut app = loaded_app(false);
    select_number(&mut app, BIND_NUMBER);
    tree_to(&mut app, "Body: BIND");
    let before = app.detail().unwrap().rows.len();
    key(&mut app, KeyCode::Enter);
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("▸ Body: BIND (0x11)"), "{text}");
    assert!(!text.contains("Target Port"), "{text}");
    assert!(app.detail().unwrap().rows.len() < before);
    key(&mut app, KeyCode::Right);
    assert_eq!(app.detail().unwrap().rows.len(), before);
    // Collapsed stays collapsed on the next packet with a body (D10).
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::BackTab);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("▸ Body: STATUS (0x12)"), "{text}");
}

#[test]
fn filter_by_realm_kind_and_word_and_a_bad_term() {
    let mut app = loaded_app(false);
    key(&mut app, KeyCode::Char('/'));
    keys(&mut app, "realm:0x0a0b0c0d");
    let buffer = draw(&mut app, 80, 24);
    assert!(
        lines(&buffer)[23].starts_with("/realm:0x0a0b0c0d"),
        "{:?}",
        lines(&buffer)[23]
    );
    key(&mut app, KeyCode::Enter);
    // BIND, CONN, two DATA, two DISC.
    assert_eq!(app.shown_len(), 6);
    let text = screen(&draw(&mut app, 80, 24));
    assert!(
        text.contains(" Packets 6 of 27 [realm:0x0a0b0c0d] "),
        "{text}"
    );
    assert!(
        text.contains("BIND realm=0x0a0b0c0d 127.0.0.1:554"),
        "{text}"
    );
    assert!(!text.contains("SYN"), "{text}");

    // decode's flag syntax, several kinds.
    key(&mut app, KeyCode::Char('/'));
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    keys(&mut app, "--kind cloud kind:punch");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.shown_len(), 4);

    // A word of the summary, with a session.
    key(&mut app, KeyCode::Char('/'));
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    keys(&mut app, "session:127.0.0.1:40000 heartbeat");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.shown_len(), 2);

    // A bad term keeps the prompt open and says why.
    key(&mut app, KeyCode::Char('/'));
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    keys(&mut app, "realm:zz");
    key(&mut app, KeyCode::Enter);
    assert!(app.prompt().is_some());
    let bottom = lines(&draw(&mut app, 80, 24))[23].clone();
    assert!(
        bottom.contains("realm: \"zz\" is not a realm id"),
        "{bottom}"
    );
    assert_eq!(app.shown_len(), 2, "the old filter stays");
    key(&mut app, KeyCode::Esc);
    // An empty filter shows everything again.
    key(&mut app, KeyCode::Char('/'));
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.shown_len(), 27);
}

#[test]
fn help_screen_lists_every_key_and_closes() {
    let mut app = loaded_app(false);
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.view(), View::Help);
    let text = screen(&draw(&mut app, 80, 24));
    for (keys, what) in ui::KEYS {
        assert!(text.contains(keys), "{keys} missing:\n{text}");
        let start: String = what.chars().take(20).collect();
        assert!(text.contains(&start), "{what} missing:\n{text}");
    }
    // Keys do nothing else while help is up; Esc closes it.
    key(&mut app, KeyCode::Char('r'));
    assert_eq!(app.view(), View::Help);
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.view(), View::Packets);
}

#[test]
fn realms_view_shows_the_realm_and_the_handshake_timeline() {
    let mut app = loaded_app(false);
    key(&mut app, KeyCode::Char('r'));
    assert_eq!(app.view(), View::Realms);
    let buffer = draw(&mut app, 80, 24);
    let text = screen(&buffer);
    let (_, y) = find(&buffer, "0x0a0b0c0d").expect("realm row");
    let row = &lines(&buffer)[y as usize];
    // Port 554, closed, 51 bytes (OPTIONS) to the device, 28 (reply) back,
    // no retransmissions, last activity 1 ms before the newest packet.
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "0x0a0b0c0d",
            "554",
            "DISC",
            "51",
            "28",
            "0",
            "0.0s",
            "40000↔50000"
        ],
        "{row}"
    );
    // Stages and how long each answer took (records are 1 ms apart).
    for (stage, took, answer) in [
        ("DHGET /probe/p2psrv", "1.0ms", "200 OK"),
        ("punch", "1.0ms", "success"),
        ("PTCP SYN", "1.0ms", "SYN"),
        ("AUTH", "2.0ms", "AUTH-REPLY"),
        ("BIND 0x0a0b0c0d", "2.0ms", "CONN"),
    ] {
        let (_, y) = find(&buffer, stage).unwrap_or_else(|| panic!("{stage} missing:\n{text}"));
        let line = &lines(&buffer)[y as usize];
        assert!(line.contains(took) && line.contains(answer), "{line}");
    }
    key(&mut app, KeyCode::Char('r'));
    assert_eq!(app.view(), View::Packets);
}

#[test]
fn a_retransmitted_data_counts_once_and_as_a_retransmission() {
    let mut app = loaded_app(false);
    let d12 = conversation()
        .into_iter()
        .find(|r| r.number == 4 + 12)
        .unwrap();
    app.push(Record {
        number: 100,
        time: d12.time + Duration::from_secs(1),
        ..d12
    });
    let realms = app.model().realms();
    let realm = &realms[0];
    assert_eq!(realm.retransmissions, 1);
    assert_eq!(realm.to_device, 51);
    assert_eq!(realm.from_device, 28);
}

#[test]
fn live_source_follows_and_pauses_like_less() {
    let records = conversation();
    let mut app = App::new(Config::new("tap 127.0.0.1:4000", true));
    app.set_source_state(SourceState::Live);
    for r in records.iter().take(10).cloned() {
        app.push(r);
    }
    assert!(app.is_following());
    assert_eq!(app.selected().unwrap().record.number, 10);
    let status = lines(&draw(&mut app, 80, 24))[22].clone();
    assert!(
        status.starts_with(" tap 127.0.0.1:4000 LIVE  FOLLOW "),
        "{status}"
    );
    // Scrolling away pauses; new packets are counted, the selection stays.
    key(&mut app, KeyCode::Up);
    assert!(!app.is_following());
    for r in records.iter().skip(10).take(3).cloned() {
        app.push(r);
    }
    assert_eq!(app.selected().unwrap().record.number, 9);
    let status = lines(&draw(&mut app, 80, 24))[22].clone();
    assert!(status.contains(" PAUSED +3 F "), "{status}");
    // F resumes and jumps to the newest.
    key(&mut app, KeyCode::Char('F'));
    assert!(app.is_following());
    assert_eq!(app.selected().unwrap().record.number, 13);
    for r in records.iter().skip(13).cloned() {
        app.push(r);
    }
    assert_eq!(app.selected().unwrap().record.number, 27);
    let buffer = draw(&mut app, 80, 24);
    // The newest packet is on screen (the last list row), selected.
    let (_, y) = find(&buffer, "27     0.026000").expect("newest row");
    assert!(y < app.areas().list.bottom());
}

#[test]
fn ring_keeps_the_newest_packets_only() {
    let mut config = Config::new("x", true);
    config.max_packets = 5;
    let mut app = App::new(config);
    for r in conversation() {
        app.push(r);
    }
    assert_eq!(app.retained(), 5);
    assert_eq!(app.evicted(), 22);
    assert_eq!(app.total(), 27);
    assert_eq!(app.shown_packet(0).unwrap().record.number, 23);
    let text = screen(&draw(&mut app, 80, 24));
    assert!(text.contains("(ring: 22 dropped)"), "{text}");
    // Counts still cover every packet seen.
    assert!(text.contains("PTCP 23"), "{text}");
}

#[test]
fn every_view_renders_at_80x24_and_at_tiny_sizes_and_after_resizes() {
    let mut app = loaded_app(true);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    for view_key in ['x', 'r', 'r', '?'] {
        key(&mut app, KeyCode::Char(view_key));
        for (w, h) in [(80, 24), (200, 60), (40, 10), (20, 5), (1, 1), (80, 24)] {
            terminal.backend_mut().resize(w, h);
            terminal.autoresize().unwrap();
            terminal.draw(|frame| ui::render(frame, &mut app)).unwrap();
            assert_eq!(terminal.backend().buffer().area.width, w);
        }
        key(&mut app, KeyCode::Esc);
    }
    // After the resizes the panes fill the 80x24 frame again.
    key(&mut app, KeyCode::Char('r'));
    key(&mut app, KeyCode::Char('r'));
    terminal.draw(|frame| ui::render(frame, &mut app)).unwrap();
    let areas = app.areas();
    assert_eq!(areas.list.width, 80);
    assert_eq!(areas.hex.bottom(), 22);
}

#[test]
fn mouse_click_selects_a_row_and_the_wheel_scrolls() {
    let mut app = loaded_app(true);
    let buffer = draw(&mut app, 80, 24);
    let list = app.areas().list;
    let (_, header_y) = find(&buffer, "No.").unwrap();
    assert_eq!(header_y, list.y + 1);
    // The fourth packet row on screen.
    let y = header_y + 4;
    let clicked = app
        .shown_packet(app.list_offset() + 3)
        .unwrap()
        .record
        .number;
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 30,
        row: y,
        modifiers: KeyModifiers::NONE,
    });
    assert!(!app.is_following(), "a click pauses following");
    assert_eq!(app.selected().unwrap().record.number, clicked);
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 30,
        row: y,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(app.selected().unwrap().record.number, clicked + 3);
    // A click on a hex byte puts the cursor there and selects its field.
    draw(&mut app, 80, 24);
    let hex = app.areas().hex;
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: hex.x + 6 + 3 * 5,
        row: hex.y + 1,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(app.focus(), Focus::Hex);
    assert_eq!(app.hex_cursor(), Some(5));
    assert_eq!(app.highlighted_range(), Some(4..8));
}

#[test]
fn w_writes_the_filtered_packets_to_a_pcap() {
    let dir = std::env::temp_dir().join(format!("dhp2p-tui-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("realm.pcap");
    let mut app = loaded_app(false);
    app.set_filter(
        dhp2p::tui::filter::Filter::parse("realm:0x0a0b0c0d").unwrap(),
        "realm:0x0a0b0c0d".into(),
    );
    key(&mut app, KeyCode::Char('w'));
    assert!(app.prompt().unwrap().text.ends_with(".pcap"));
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    keys(&mut app, path.to_str().unwrap());
    key(&mut app, KeyCode::Enter);
    // The app only builds the bytes; the driver's writer saves them.
    assert!(!path.exists());
    dhp2p::tui::driver::write_outputs(&mut app);
    let note = app.note().expect("a note").clone();
    assert!(!note.error, "{}", note.text);
    assert_eq!(note.text, format!("wrote 6 packets to {}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut payloads = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let frame = packet.unwrap().data.into_owned();
        // Ethernet (14) + IPv4 (20) + UDP (8).
        payloads.push(frame[42..].to_vec());
    }
    let expected: Vec<Vec<u8>> = device_session()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| [7, 9, 11, 13, 19, 21].contains(i))
        .map(|(_, (_, p))| p)
        .collect();
    assert_eq!(payloads, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn e_exports_the_realm_stream_each_direction() {
    let dir = std::env::temp_dir().join(format!("dhp2p-tui-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut app = loaded_app(false);
    // Not on a packet without a realm.
    select_number(&mut app, 5);
    key(&mut app, KeyCode::Char('e'));
    assert!(app.prompt().is_none());
    assert!(app.note().unwrap().error);
    // From the realms view.
    key(&mut app, KeyCode::Char('r'));
    key(&mut app, KeyCode::Char('e'));
    assert_eq!(app.prompt().unwrap().text, "realm-0a0b0c0d");
    let base = dir.join("realm");
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    keys(&mut app, base.to_str().unwrap());
    key(&mut app, KeyCode::Enter);
    dhp2p::tui::driver::write_outputs(&mut app);
    assert!(!app.note().unwrap().error, "{}", app.note().unwrap().text);
    let sent = std::fs::read(dir.join("realm-to-device.bin")).unwrap();
    let received = std::fs::read(dir.join("realm-from-device.bin")).unwrap();
    assert_eq!(
        sent,
        b"OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    );
    assert_eq!(received, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn q_and_ctrl_c_quit_but_not_while_typing_a_filter() {
    let mut app = loaded_app(false);
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.should_quit());
    assert_eq!(app.prompt().unwrap().text, "q");
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('q'));
    assert!(app.should_quit());
    let mut app = loaded_app(false);
    key(&mut app, KeyCode::Char('/'));
    app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.should_quit());
}

#[test]
fn malformed_datagram_row_is_highlighted() {
    let mut app = App::new(Config::new("x", false));
    let mut record = conversation().remove(4);
    record.payload.truncate(10);
    app.push(record);
    let buffer = draw(&mut app, 80, 24);
    let (x, y) = find(&buffer, "[malformed] PTCP header truncated").expect("malformed row");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
    assert!(lines(&buffer)[22].contains("bad 1"));
}

#[test]
fn filter_terms_in_both_spellings() {
    use dhp2p::codec::classify::Kind;
    use dhp2p::decode::filter::SessionFilter;
    use dhp2p::decode::record::SessionKey;
    use dhp2p::tui::filter::{Endpoint, Filter};
    let filter = Filter::parse(
        "--kind ptcp kind:cloud,udp --realm=0x0a0b0c0d realm:42 --session 127.0.0.1:5000 session:10.0.0.1 session:127.0.0.1:1<->127.0.0.1:2 --malformed RTSP",
    )
    .unwrap();
    assert_eq!(filter.kinds, [Kind::Ptcp, Kind::Cloud, Kind::Unknown]);
    assert_eq!(filter.realms, [0x0a0b0c0d, 42]);
    assert_eq!(
        filter.sessions,
        [
            Endpoint::Session(SessionFilter::Endpoint(addr("127.0.0.1:5000"))),
            Endpoint::Ip("10.0.0.1".parse().unwrap()),
            Endpoint::Session(SessionFilter::Pair(SessionKey::of(
                addr("127.0.0.1:2"),
                addr("127.0.0.1:1")
            ))),
        ]
    );
    assert!(filter.malformed_only);
    assert_eq!(filter.words, ["rtsp"]);
    assert!(Filter::parse("").unwrap().is_empty());
    assert_eq!(
        Filter::parse("--kind").unwrap_err().to_string(),
        "--kind needs a value"
    );
    assert!(Filter::parse("kind:bogus")
        .unwrap_err()
        .to_string()
        .contains("unknown kind"));
    assert!(Filter::parse("--colour red")
        .unwrap_err()
        .to_string()
        .contains("unknown filter --colour"));
}

#[test]
fn direct_capture_bind_realm_highlighted() {
    let file =
        std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/captures/direct.pcap")).unwrap();
    let reader = dhp2p::decode::pcap::PcapReader::new(std::io::BufReader::new(file)).unwrap();
    let mut app = App::new(Config::new("direct.pcap", false));
    for record in reader {
        app.push(record.unwrap());
    }
    assert_eq!(app.total(), 87);
    assert_eq!(app.counts(), [21, 10, 56, 0]);
    let bind = (0..app.shown_len())
        .map(|row| app.shown_packet(row).unwrap())
        .find(|p| p.summary.contains(" BIND realm="))
        .expect("a BIND")
        .record
        .number;
    select_number(&mut app, bind);
    tree_to(&mut app, "Realm: 0x");
    assert_eq!(app.highlighted_range(), Some(28..32));
    let buffer = draw(&mut app, 80, 24);
    let hex = app.areas().hex;
    let (x, y) = find(&buffer, "0010  ").expect("second hex line");
    assert!(y > hex.y && y < hex.bottom());
    for byte in 0..16u16 {
        let cell = &buffer[(x + 6 + 3 * byte, y)];
        assert_eq!(
            cell.bg == Color::Yellow,
            (12..16).contains(&byte),
            "byte {byte}"
        );
    }
    // The realm row in the realms view: the RTSP port, closed at the end.
    key(&mut app, KeyCode::Char('r'));
    let text = screen(&draw(&mut app, 80, 24));
    let row = text
        .lines()
        .find(|l| l.starts_with("0x"))
        .expect("a realm row");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[1..3], ["554", "DISC"], "{row}");
}
