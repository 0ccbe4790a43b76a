//! Drawing the inspector's state into a ratatui frame. Pure: what is drawn
//! depends only on the [`App`] and the frame size (times are relative to the
//! capture, never to the wall clock), so `TestBackend` buffers are stable.
//!
//! Rendering records the pane areas in the app (for mouse hits and page
//! sizes) and scrolls each pane so its cursor stays visible.

use std::fmt::Write as _;
use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::codec::classify::Kind;

use super::app::{kind_index, App, Areas, Focus, Packet, SourceState, View};

/// The colour of each kind's label, as Wireshark-like as a terminal allows.
pub fn kind_color(kind: Kind) -> Color {
    match kind {
        Kind::Cloud => Color::Cyan,
        Kind::Punch => Color::Magenta,
        Kind::Ptcp => Color::Green,
        Kind::Unknown => Color::Gray,
    }
}

/// Style of the bytes of the selected field in the hex pane.
pub const HIGHLIGHT: Style = Style::new().fg(Color::Black).bg(Color::Yellow);
/// Style of the byte under the hex cursor.
pub const HEX_CURSOR: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::LightRed)
    .add_modifier(Modifier::BOLD);
/// Style of a malformed datagram's row.
pub const MALFORMED: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Style of the selected row of a list or table.
pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);

/// Widths at and above which panes get more detail.
const WIDE_ADDRESSES: u16 = 110;
const SIDE_BY_SIDE: u16 = 150;

/// Every key, as the help screen lists it (also docs/INSPECT.md).
pub const KEYS: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?, F1", "this help (Esc closes)"),
    (
        "/",
        "filter: kind:ptcp realm:0x… session:ADDR malformed WORD",
    ),
    ("r", "toggle the realms and handshake view"),
    (
        "Tab, S-Tab",
        "focus the next/previous pane: list, tree, hex",
    ),
    (
        "↑↓ j k",
        "move in the focused pane (list: pauses following)",
    ),
    ("PgUp PgDn", "move a page"),
    ("Home, g", "first packet / field / byte (pauses following)"),
    ("End, G, F", "follow the newest packet again"),
    (
        "Enter, Space",
        "list: go to the tree; tree: expand/collapse",
    ),
    ("← → h l", "tree: collapse/expand or parent/next; hex: byte"),
    ("C, E", "collapse all / expand all fields"),
    ("w", "write the packets shown (filtered) to a pcap"),
    ("e", "export the selected realm's stream (both directions)"),
    (
        "mouse",
        "wheel scrolls, click selects (list, tree, hex byte)",
    ),
    ("prompt", "Enter accepts, Esc cancels, Ctrl-U clears"),
];

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, app: &mut App) {
    let [body, status, hint] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    match app.view() {
        View::Packets => render_packets(frame, app, body),
        View::Realms => render_realms(frame, app, body),
        View::Help => render_help(frame, body),
    }
    frame.render_widget(Paragraph::new(status_line(app)), status);
    frame.render_widget(Paragraph::new(hint_line(app)), hint);
}

/// A table of `rows` under an underlined `header`, one space between columns.
fn table<'a, const N: usize>(
    rows: Vec<Row<'a>>,
    widths: [Constraint; N],
    header: [&'a str; N],
    block: Block<'a>,
) -> Table<'a> {
    Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::UNDERLINED)))
        .column_spacing(1)
        .block(block)
}

fn pane_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    };
    Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(title, style))
}

// ----------------------------------------------------------------------
// Packets view

fn render_packets(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let (list, tree, hex) = if area.width >= SIDE_BY_SIDE {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
        let [tree, hex] =
            Layout::horizontal([Constraint::Min(30), Constraint::Length(80)]).areas(bottom);
        (top, tree, hex)
    } else {
        let [list, tree, hex] = Layout::vertical([
            Constraint::Percentage(40),
            Constraint::Percentage(32),
            Constraint::Percentage(28),
        ])
        .areas(area);
        (list, tree, hex)
    };
    let hex_width = bytes_per_line(hex.width);
    app.areas = Areas {
        list,
        tree,
        hex,
        hex_width,
        ..Areas::default()
    };
    render_list(frame, app, list);
    render_tree(frame, app, tree);
    render_hex(frame, app, hex, hex_width);
}

/// Bytes per hex line that fit: `0000  ` + `xx ` each + ` ` + one ASCII each.
fn bytes_per_line(width: u16) -> usize {
    match width {
        71.. => 16,
        39.. => 8,
        _ => 4,
    }
}

/// First row to show so that `cursor` is visible in `height` rows.
fn scroll_to(offset: usize, cursor: usize, height: usize) -> usize {
    if height == 0 {
        return offset;
    }
    if cursor < offset {
        cursor
    } else if cursor >= offset + height {
        cursor + 1 - height
    } else {
        offset
    }
}

fn render_list(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let focused = app.focus() == Focus::List;
    let mut title = format!(" Packets {}", app.shown_len());
    if !app.filter_text().is_empty() {
        let _ = write!(title, " of {} [{}]", app.retained(), app.filter_text());
    }
    title.push(' ');
    let block = pane_block(title, focused);
    let inner = block.inner(area);
    // One row goes to the column header.
    let height = usize::from(inner.height.saturating_sub(1));
    let selected_row = app.selected_row();
    app.list_offset = if app.is_following() {
        app.shown_len().saturating_sub(height)
    } else {
        let offset = app.list_offset.min(app.shown_len().saturating_sub(height));
        selected_row.map_or(offset, |row| scroll_to(offset, row, height))
    };
    let wide = area.width >= WIDE_ADDRESSES;
    let first = app.first_time();
    let rows: Vec<Row> = (app.list_offset..app.shown_len().min(app.list_offset + height))
        .filter_map(|row| {
            let p = app.shown_packet(row)?;
            let r = &p.record;
            let direction = if wide {
                format!("{} → {}", r.src, r.dst)
            } else {
                format!("{}→{}", r.src.port(), r.dst.port())
            };
            let time = seconds(r.time.checked_sub(first).unwrap_or_default());
            let mut style = if p.malformed { MALFORMED } else { Style::new() };
            if Some(row) == selected_row {
                style = style.patch(SELECTED);
            }
            Some(
                Row::new(vec![
                    Cell::from(r.number.to_string()),
                    Cell::from(time),
                    Cell::from(direction),
                    Cell::from(Span::styled(
                        p.kind.label(),
                        Style::new()
                            .fg(kind_color(p.kind))
                            .add_modifier(Modifier::BOLD),
                    )),
                    Cell::from(list_info(p)),
                ])
                .style(style),
            )
        })
        .collect();
    let widths = [
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(if wide { 45 } else { 11 }),
        Constraint::Length(5),
        Constraint::Fill(1),
    ];
    let header = ["No.", "Time", "Direction", "Kind", "Info"];
    frame.render_widget(table(rows, widths, header, block), area);
}

/// The Info column: the summary, with a PTCP packet's body (`BIND realm=…`)
/// moved before its header counters so it survives an 80-column terminal.
fn list_info(p: &Packet) -> String {
    const HEADER: [&str; 5] = ["sent=", "recv=", "pid=", "lmid=", "rmid="];
    if p.kind != Kind::Ptcp || p.malformed {
        return p.summary.clone();
    }
    let mut parts = p.summary.splitn(6, ' ');
    let header: Vec<&str> = parts.by_ref().take(5).collect();
    let body = parts.next().unwrap_or_default();
    let is_header = header.len() == 5 && header.iter().zip(HEADER).all(|(t, k)| t.starts_with(k));
    if !is_header || body.is_empty() {
        return p.summary.clone();
    }
    format!("{body}  {}", header.join(" "))
}

fn render_tree(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let focused = app.focus() == Focus::Tree;
    let cursor = app.tree_cursor_row();
    let block = pane_block(" Fields ".to_owned(), focused);
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let Some(detail) = app.detail() else {
        frame.render_widget(Paragraph::new("no packet selected").block(block), area);
        return;
    };
    let count = detail.rows.len();
    let offset = scroll_to(
        app.tree_offset.min(count.saturating_sub(height)),
        cursor,
        height,
    );
    app.tree_offset = offset;
    let Some(detail) = app.detail() else { return };
    let lines: Vec<Line> = detail
        .rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, row)| {
            let marker = match (row.has_children, row.expanded) {
                (false, _) => "  ",
                (true, true) => "▾ ",
                (true, false) => "▸ ",
            };
            let mut text = "  ".repeat(row.depth);
            text.push_str(marker);
            text.push_str(&row.text);
            let mut style = if row.text.starts_with("Malformed") {
                MALFORMED
            } else {
                Style::new()
            };
            if i == cursor {
                style = style.patch(SELECTED);
            }
            Line::from(Span::styled(text, style))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_hex(frame: &mut Frame<'_>, app: &mut App, area: Rect, width: usize) {
    let focused = app.focus() == Focus::Hex;
    let highlight = app.highlighted_range().unwrap_or(0..0);
    let cursor = if focused { app.hex_cursor() } else { None };
    let mut title = " Bytes ".to_owned();
    if !highlight.is_empty() {
        title = format!(" Bytes {}..{} ", highlight.start, highlight.end);
    }
    let block = pane_block(title, focused);
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let hex_offset = app.hex_offset;
    let Some(detail) = app.detail() else {
        frame.render_widget(block, area);
        return;
    };
    let bytes = &detail.bytes;
    let lines_total = bytes.len().div_ceil(width);
    let focus_line = cursor.unwrap_or(highlight.start) / width;
    let offset = if cursor.is_some() || !highlight.is_empty() {
        scroll_to(hex_offset, focus_line, height)
    } else {
        hex_offset
    }
    .min(lines_total.saturating_sub(height));
    let style_of = |at: usize| {
        if Some(at) == cursor {
            HEX_CURSOR
        } else if highlight.contains(&at) {
            HIGHLIGHT
        } else {
            Style::new()
        }
    };
    let lines: Vec<Line> = bytes
        .chunks(width)
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(line, chunk)| {
            let start = line * width;
            let mut spans = vec![Span::raw(format!("{start:04x}  "))];
            for (i, byte) in chunk.iter().enumerate() {
                spans.push(Span::styled(format!("{byte:02x}"), style_of(start + i)));
                // The gap takes the highlight when both neighbours are in the field.
                let gap = if highlight.contains(&(start + i))
                    && highlight.contains(&(start + i + 1))
                    && i + 1 < chunk.len()
                {
                    HIGHLIGHT
                } else {
                    Style::new()
                };
                spans.push(Span::styled(" ", gap));
            }
            spans.push(Span::raw(" ".repeat((width - chunk.len()) * 3 + 1)));
            for (i, &byte) in chunk.iter().enumerate() {
                let c = if (0x20..0x7f).contains(&byte) {
                    char::from(byte)
                } else {
                    '.'
                };
                spans.push(Span::styled(c.to_string(), style_of(start + i)));
            }
            Line::from(spans)
        })
        .collect();
    app.hex_offset = offset;
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

// ----------------------------------------------------------------------
// Realms view

fn render_realms(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let [realms_area, timeline_area] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    app.areas = Areas {
        realms: realms_area,
        timeline: timeline_area,
        ..app.areas
    };
    let wide = area.width >= WIDE_ADDRESSES;
    let now = app.last_time();

    let realms = app.model().realms();
    let block = pane_block(format!(" Realms {} ", realms.len()), true);
    let height = usize::from(block.inner(realms_area).height.saturating_sub(1));
    let cursor = app.realm_cursor().min(realms.len().saturating_sub(1));
    let offset = scroll_to(app.realm_offset, cursor, height);
    let rows: Vec<Row> = realms
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, r)| {
            let target = match (r.target, wide) {
                (Some(t), true) => t.to_string(),
                (Some(t), false) => t.port().to_string(),
                (None, _) => "?".to_owned(),
            };
            let session = if wide {
                r.session.to_string()
            } else {
                format!("{}↔{}", r.session.a.port(), r.session.b.port())
            };
            let ago = seconds_short(now.checked_sub(r.last_activity).unwrap_or_default());
            let state_style = match r.state.as_str() {
                "CONN" => Style::new().fg(Color::Green),
                "DISC" => Style::new().fg(Color::DarkGray),
                _ => Style::new().fg(Color::Yellow),
            };
            let retx_style = if r.retransmissions > 0 {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            let row = Row::new(vec![
                Cell::from(format!("0x{:08x}", r.realm)),
                Cell::from(target),
                Cell::from(Span::styled(r.state.as_str(), state_style)),
                Cell::from(bytes(r.to_device)),
                Cell::from(bytes(r.from_device)),
                Cell::from(Span::styled(r.retransmissions.to_string(), retx_style)),
                Cell::from(ago),
                Cell::from(session),
            ]);
            if i == cursor {
                row.style(SELECTED)
            } else {
                row
            }
        })
        .collect();
    app.realm_offset = offset;
    let widths = [
        Constraint::Length(10),
        Constraint::Length(if wide { 21 } else { 5 }),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let header = [
        "Realm", "Port", "State", "→dev", "←dev", "Retx", "Last", "Session",
    ];
    frame.render_widget(table(rows, widths, header, block), realms_area);

    let stages: Vec<_> = app.model().timeline_stages().collect();
    let block = pane_block(format!(" Handshake timeline {} ", stages.len()), false);
    let height = usize::from(block.inner(timeline_area).height.saturating_sub(1));
    let first = app.first_time();
    // The newest stages matter most while watching: show the tail.
    let rows: Vec<Row> = stages
        .iter()
        .skip(stages.len().saturating_sub(height))
        .map(|s| {
            let took = match s.took() {
                Some(took) => millis(took),
                None => "…".to_owned(),
            };
            let session = format!("{}↔{}", s.session.a.port(), s.session.b.port());
            Row::new(vec![
                Cell::from(seconds(s.started.checked_sub(first).unwrap_or_default())),
                Cell::from(s.name.clone()),
                Cell::from(took),
                Cell::from(s.result.clone()),
                Cell::from(session),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(10),
        Constraint::Fill(3),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Length(11),
    ];
    let header = ["Time", "Stage", "Took", "Answer", "Session"];
    frame.render_widget(table(rows, widths, header, block), timeline_area);
}

// ----------------------------------------------------------------------
// Help, status

fn render_help(frame: &mut Frame<'_>, area: Rect) {
    let key_style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<13}"), key_style),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(pane_block(" Keys ".to_owned(), true)),
        area,
    );
}

fn status_line(app: &App) -> Line<'static> {
    let mut spans = Vec::new();
    let source: String = app.config().source.chars().take(28).collect();
    spans.push(Span::styled(
        format!(" {source} "),
        Style::new().add_modifier(Modifier::BOLD),
    ));
    let (state, color) = match app.source_state() {
        SourceState::Connecting => ("CONNECTING".to_owned(), Color::Yellow),
        SourceState::Live => ("LIVE".to_owned(), Color::Green),
        SourceState::Ended => ("END".to_owned(), Color::Gray),
        SourceState::Reconnecting(_) => ("RECONNECTING".to_owned(), Color::Yellow),
        SourceState::Failed(_) => ("FAILED".to_owned(), Color::Red),
    };
    spans.push(Span::styled(state, Style::new().fg(color)));
    spans.push(Span::raw(" "));
    if app.is_following() {
        spans.push(Span::styled(
            " FOLLOW ",
            Style::new().fg(Color::Black).bg(Color::Green),
        ));
    } else {
        let mut text = " PAUSED".to_owned();
        if app.new_while_paused() > 0 {
            let _ = write!(text, " +{}", app.new_while_paused());
        }
        text.push_str(" F ");
        spans.push(Span::styled(
            text,
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    let counts = app.counts();
    for kind in Kind::all() {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            kind.label(),
            Style::new()
                .fg(kind_color(kind))
                .add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(format!(" {}", counts[kind_index(kind)])));
    }
    if app.malformed() > 0 {
        spans.push(Span::styled(
            format!(" bad {}", app.malformed()),
            Style::new().fg(Color::Red),
        ));
    }
    if app.evicted() > 0 {
        spans.push(Span::raw(format!(" (ring: {} dropped)", app.evicted())));
    }
    Line::from(spans)
}

fn hint_line(app: &App) -> Line<'static> {
    if let Some(prompt) = app.prompt() {
        let mut spans = vec![
            Span::styled(
                prompt.kind.label(),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw(prompt.text.clone()),
            Span::styled(" ", Style::new().add_modifier(Modifier::REVERSED)),
        ];
        if let Some(note) = app.note() {
            spans.push(Span::styled(
                format!("  {}", note.text),
                Style::new().fg(Color::Red),
            ));
        }
        return Line::from(spans);
    }
    if let Some(note) = app.note() {
        let style = if note.error {
            Style::new().fg(Color::Red)
        } else {
            Style::new().fg(Color::Green)
        };
        return Line::from(Span::styled(format!(" {}", note.text), style));
    }
    let mut text = String::from(" ? help  / filter  r realms  Tab pane  w pcap  e export  q quit");
    match app.source_state() {
        SourceState::Reconnecting(why) | SourceState::Failed(why) => {
            text = format!(" source: {why}");
        }
        _ => {}
    }
    Line::from(Span::styled(text, Style::new().fg(Color::DarkGray)))
}

// ----------------------------------------------------------------------
// Number formats

/// Seconds with microseconds, like tshark's relative time column.
fn seconds(d: Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// Seconds with one decimal (`12.3s`).
fn seconds_short(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Byte counts that fit 8 columns: exact below 100 000, then k/M/G.
fn bytes(n: u64) -> String {
    match n {
        0..100_000 => n.to_string(),
        100_000..100_000_000 => format!("{:.1}k", n as f64 / 1e3),
        100_000_000..100_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}
