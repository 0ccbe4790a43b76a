//! The inspector's state and everything a key or a click does to it. No
//! terminal here: the driver feeds [`App::push`] with records and
//! [`App::handle_key`]/[`App::handle_mouse`] with input events, and
//! [`crate::tui::ui::render`] draws the state into any ratatui backend, so
//! tests drive the whole inspector against a `TestBackend`.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use crate::codec::classify::{classify, Datagram, Kind};
use crate::decode::describe::{describe_with, Description, Options};
use crate::decode::follow::Follower;
use crate::decode::model::Conversation;
use crate::decode::pcap::{udp_pcap_bytes, PcapBytes};
use crate::decode::record::{Record, SessionKey};

use super::filter::{Filter, Subject};
use super::tree::{flatten, path_at, FieldPath, TreeRow};

/// Packets kept when `--max-packets` is not given.
pub const DEFAULT_MAX_PACKETS: usize = 100_000;

/// Rows a mouse wheel notch moves.
const WHEEL_STEP: isize = 3;

/// How the inspector was started.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the status line names as the source (`direct.pcap`, `stdin`,
    /// `tap 127.0.0.1:4000`).
    pub source: String,
    /// Packets kept (a ring: the oldest go first).
    pub max_packets: usize,
    /// A live source: start in follow mode. A file starts at its first packet.
    pub live: bool,
    /// Redact secrets (DevAuth, Authorization credentials) in the panes.
    pub redact: bool,
}

impl Config {
    pub fn new(source: impl Into<String>, live: bool) -> Config {
        Config {
            source: source.into(),
            max_packets: DEFAULT_MAX_PACKETS,
            live,
            redact: true,
        }
    }
}

/// One received datagram and what the list needs of it, computed once.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Arrival order in this inspector, from 0 (a tap that reconnects
    /// restarts its frame numbers; this does not).
    pub seq: u64,
    pub record: Record,
    pub kind: Kind,
    pub summary: String,
    pub malformed: bool,
    /// The PTCP realm the body names, if any.
    pub realm: Option<u32>,
}

impl Packet {
    fn subject(&self) -> Subject<'_> {
        Subject {
            kind: self.kind,
            realm: self.realm,
            src: self.record.src,
            dst: self.record.dst,
            malformed: self.malformed,
            summary: &self.summary,
        }
    }
}

/// Which screen is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Packets,
    Realms,
    Help,
}

/// Which pane of the packets view the keys move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    List,
    Tree,
    Hex,
}

/// What the one-line prompt at the bottom is asking for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Filter,
    WritePcap,
    ExportRealm,
}

impl PromptKind {
    pub fn label(self) -> &'static str {
        match self {
            PromptKind::Filter => "/",
            PromptKind::WritePcap => "write shown packets to pcap: ",
            PromptKind::ExportRealm => "export realm stream to: ",
        }
    }
}

/// The prompt being edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
}

/// A note in the status line, until the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub error: bool,
}

/// The connection state of the source, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Waiting for the first bytes (or connecting to a tap).
    Connecting,
    /// Receiving.
    Live,
    /// A file or stream that ended.
    Ended,
    /// A tap that went away; retrying (with the reason).
    Reconnecting(String),
    /// The source failed for good (with the reason).
    Failed(String),
}

/// The selected packet's decoded view, rebuilt when the selection or the
/// collapsed set changes.
#[derive(Debug, Clone)]
pub struct Detail {
    pub seq: u64,
    pub description: Description,
    /// The payload as shown: secret bytes masked when redacting.
    pub bytes: Vec<u8>,
    pub rows: Vec<TreeRow>,
}

/// Screen areas of the last frame, for mouse hits and page sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Areas {
    pub list: Rect,
    pub tree: Rect,
    pub hex: Rect,
    pub realms: Rect,
    pub timeline: Rect,
    /// Bytes per line the hex pane used.
    pub hex_width: usize,
}

/// The inspector.
#[derive(Debug)]
pub struct App {
    config: Config,
    packets: VecDeque<Packet>,
    next_seq: u64,
    /// Datagrams seen per kind, evicted ones included (indexed by `kind_index`).
    counts: [u64; 4],
    malformed: u64,
    evicted: u64,
    first_time: Option<Duration>,
    last_time: Duration,

    filter: Filter,
    filter_text: String,
    /// Sequence numbers of the retained packets that pass the filter, in order.
    shown: VecDeque<u64>,

    selected: Option<u64>,
    follow: bool,
    /// Packets shown since following paused.
    new_while_paused: u64,
    pub(crate) list_offset: usize,

    view: View,
    view_before_help: View,
    focus: Focus,

    collapsed: HashSet<FieldPath>,
    tree_cursor: FieldPath,
    pub(crate) tree_offset: usize,
    hex_cursor: Option<usize>,
    pub(crate) hex_offset: usize,
    detail: Option<Detail>,

    /// What the stream means (realms, timeline): the decode layer's model.
    model: Conversation,
    /// Saves asked for and not yet written (the driver writes them).
    outputs: Vec<Output>,
    realm_cursor: usize,
    pub(crate) realm_offset: usize,

    prompt: Option<Prompt>,
    note: Option<Note>,
    source_state: SourceState,
    quit: bool,
    pub(crate) areas: Areas,
}

/// Index of a kind in per-kind arrays, in status-line order.
pub fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Cloud => 0,
        Kind::Punch => 1,
        Kind::Ptcp => 2,
        Kind::Unknown => 3,
    }
}

impl App {
    pub fn new(config: Config) -> App {
        let follow = config.live;
        App {
            config,
            packets: VecDeque::new(),
            next_seq: 0,
            counts: [0; 4],
            malformed: 0,
            evicted: 0,
            first_time: None,
            last_time: Duration::ZERO,
            filter: Filter::default(),
            filter_text: String::new(),
            shown: VecDeque::new(),
            selected: None,
            follow,
            new_while_paused: 0,
            list_offset: 0,
            view: View::Packets,
            view_before_help: View::Packets,
            focus: Focus::List,
            collapsed: HashSet::new(),
            tree_cursor: vec![0],
            tree_offset: 0,
            hex_cursor: None,
            hex_offset: 0,
            detail: None,
            model: Conversation::new(),
            outputs: Vec::new(),
            realm_cursor: 0,
            realm_offset: 0,
            prompt: None,
            note: None,
            source_state: SourceState::Connecting,
            quit: false,
            areas: Areas::default(),
        }
    }

    // ------------------------------------------------------------------
    // Input from the source

    /// Takes one captured datagram: decoded once here, kept in the ring.
    pub fn push(&mut self, record: Record) {
        let description = describe_with(
            &record.payload,
            Options {
                redact: self.config.redact,
            },
        );
        let datagram = classify(&record.payload);
        let realm = match &datagram {
            Datagram::Ptcp(Ok(packet)) => packet.body.realm(),
            _ => None,
        };
        self.model.observe_classified(&record, &datagram);
        drop(datagram);

        self.counts[kind_index(description.kind)] += 1;
        let malformed = description.error.is_some();
        if malformed {
            self.malformed += 1;
        }
        if self.first_time.is_none() {
            self.first_time = Some(record.time);
        }
        self.last_time = self.last_time.max(record.time);

        let seq = self.next_seq;
        self.next_seq += 1;
        let packet = Packet {
            seq,
            record,
            kind: description.kind,
            summary: description.summary,
            malformed,
            realm,
        };
        while self.packets.len() >= self.config.max_packets.max(1) {
            let Some(old) = self.packets.pop_front() else {
                break;
            };
            if self.shown.front() == Some(&old.seq) {
                self.shown.pop_front();
                self.list_offset = self.list_offset.saturating_sub(1);
            }
            self.evicted += 1;
        }
        let passes = self.filter.matches(&packet.subject());
        self.packets.push_back(packet);
        if passes {
            self.shown.push_back(seq);
            if !self.follow && self.config.live {
                self.new_while_paused += 1;
            }
        }
        self.fix_selection();
    }

    /// The source's connection state, for the status line.
    pub fn set_source_state(&mut self, state: SourceState) {
        self.source_state = state;
    }

    /// Keeps the selection on a retained, shown packet: the newest when
    /// following, the nearest otherwise.
    fn fix_selection(&mut self) {
        if self.follow {
            self.selected = self.shown.back().copied();
            return;
        }
        let first = self.packets.front().map(|p| p.seq);
        self.selected = match (self.selected, first) {
            (Some(sel), Some(first)) if sel >= first => match self.shown.binary_search(&sel) {
                Ok(_) => Some(sel),
                Err(row) => self.shown.get(row).or_else(|| self.shown.back()).copied(),
            },
            _ => self.shown.front().copied(),
        };
    }

    // ------------------------------------------------------------------
    // Read access (for rendering and tests)

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn view(&self) -> View {
        self.view
    }
    pub fn focus(&self) -> Focus {
        self.focus
    }
    pub fn is_following(&self) -> bool {
        self.follow
    }
    pub fn new_while_paused(&self) -> u64 {
        self.new_while_paused
    }
    pub fn should_quit(&self) -> bool {
        self.quit
    }
    pub fn prompt(&self) -> Option<&Prompt> {
        self.prompt.as_ref()
    }
    pub fn note(&self) -> Option<&Note> {
        self.note.as_ref()
    }
    pub fn source_state(&self) -> &SourceState {
        &self.source_state
    }
    pub fn filter_text(&self) -> &str {
        &self.filter_text
    }
    pub fn filter(&self) -> &Filter {
        &self.filter
    }
    /// Datagrams seen per kind (evicted ones included), in [`kind_index`] order.
    pub fn counts(&self) -> [u64; 4] {
        self.counts
    }
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
    /// Datagrams seen in all.
    pub fn total(&self) -> u64 {
        self.next_seq
    }
    /// Datagrams dropped from the ring to keep memory bounded.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
    pub fn retained(&self) -> usize {
        self.packets.len()
    }
    pub fn shown_len(&self) -> usize {
        self.shown.len()
    }
    /// Row of the shown list at the top of the list pane.
    pub fn list_offset(&self) -> usize {
        self.list_offset
    }
    /// Pane areas of the last frame drawn.
    pub fn areas(&self) -> Areas {
        self.areas
    }
    /// The conversation model the realms view and timeline read.
    pub fn model(&self) -> &Conversation {
        &self.model
    }
    pub fn realm_cursor(&self) -> usize {
        self.realm_cursor
    }
    pub fn hex_cursor(&self) -> Option<usize> {
        self.hex_cursor
    }
    /// Time of the first packet: the list's times count from it.
    pub fn first_time(&self) -> Duration {
        self.first_time.unwrap_or_default()
    }
    /// Time of the newest packet: "last activity" counts back from it.
    pub fn last_time(&self) -> Duration {
        self.last_time
    }

    /// The packet with sequence number `seq`, if still retained.
    pub fn packet(&self, seq: u64) -> Option<&Packet> {
        let first = self.packets.front()?.seq;
        self.packets
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }

    /// The `row`-th shown packet.
    pub fn shown_packet(&self, row: usize) -> Option<&Packet> {
        self.packet(*self.shown.get(row)?)
    }

    pub fn selected(&self) -> Option<&Packet> {
        self.packet(self.selected?)
    }

    /// Row of the selection among the shown packets.
    pub fn selected_row(&self) -> Option<usize> {
        self.shown.binary_search(&self.selected?).ok()
    }

    /// The selected packet's description and tree rows (computed on demand).
    pub fn detail(&mut self) -> Option<&Detail> {
        let seq = self.selected?;
        if self.detail.as_ref().is_none_or(|d| d.seq != seq) {
            let packet = self.packet(seq)?;
            let description = describe_with(
                &packet.record.payload,
                Options {
                    redact: self.config.redact,
                },
            );
            let bytes = description.masked(&packet.record.payload).into_owned();
            let payload_len = packet.record.payload.len();
            let rows = flatten(&description.fields, &self.collapsed);
            if self.hex_cursor.is_some_and(|c| c >= payload_len) {
                self.hex_cursor = None;
            }
            self.detail = Some(Detail {
                seq,
                description,
                bytes,
                rows,
            });
        }
        self.detail.as_ref()
    }

    fn refresh_rows(&mut self) {
        if let Some(detail) = &mut self.detail {
            detail.rows = flatten(&detail.description.fields, &self.collapsed);
        }
    }

    /// Row of the tree cursor among the visible tree rows.
    pub fn tree_cursor_row(&mut self) -> usize {
        let cursor = self.tree_cursor.clone();
        self.detail()
            .and_then(|d| d.rows.iter().position(|r| r.path == cursor))
            .unwrap_or(0)
    }

    /// The byte range of the field under the tree cursor (what the hex pane
    /// highlights). A root row (the whole datagram) highlights nothing.
    pub fn highlighted_range(&mut self) -> Option<std::ops::Range<usize>> {
        let row = self.tree_cursor_row();
        let row = self.detail()?.rows.get(row)?;
        if row.depth == 0 {
            return None;
        }
        row.range.clone()
    }

    // ------------------------------------------------------------------
    // Keys

    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            self.quit = true;
            return;
        }
        if self.prompt.is_some() {
            self.prompt_key(key);
            return;
        }
        self.note = None;
        if self.view == View::Help {
            if matches!(
                key.code,
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
            ) {
                self.view = self.view_before_help;
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.view_before_help = self.view;
                self.view = View::Help;
            }
            KeyCode::Char('/') => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Filter,
                    text: self.filter_text.clone(),
                })
            }
            KeyCode::Char('r') => {
                self.view = if self.view == View::Realms {
                    View::Packets
                } else {
                    View::Realms
                }
            }
            KeyCode::Char('w') => {
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                self.prompt = Some(Prompt {
                    kind: PromptKind::WritePcap,
                    text: format!("dhp2p-inspect-{secs}.pcap"),
                })
            }
            KeyCode::Char('e') => match self.export_target() {
                Some((_, realm)) => {
                    self.prompt = Some(Prompt {
                        kind: PromptKind::ExportRealm,
                        text: format!("realm-{realm:08x}"),
                    })
                }
                None => self.say_error("no realm here: select a PTCP packet with a realm, or one in the realms view (r)"),
            },
            KeyCode::Char('F') | KeyCode::Char('G') | KeyCode::End => self.resume_follow(),
            KeyCode::Char('g') | KeyCode::Home => self.go_first(),
            KeyCode::Tab => self.cycle_focus(true),
            KeyCode::BackTab => self.cycle_focus(false),
            KeyCode::Esc => {}
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-self.page()),
            KeyCode::PageDown => self.move_by(self.page()),
            KeyCode::Left | KeyCode::Char('h') => self.left(),
            KeyCode::Right | KeyCode::Char('l') => self.right(),
            KeyCode::Enter | KeyCode::Char(' ') => self.toggle(),
            KeyCode::Char('E') => {
                self.collapsed.clear();
                self.refresh_rows();
            }
            KeyCode::Char('C') => self.collapse_all(),
            _ => {}
        }
    }

    fn prompt_key(&mut self, key: KeyEvent) {
        let Some(prompt) = &mut self.prompt else {
            return;
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => self.prompt = None,
            KeyCode::Enter => {
                let prompt = prompt.clone();
                self.submit(prompt);
            }
            KeyCode::Backspace => {
                prompt.text.pop();
            }
            KeyCode::Char('u') if ctrl => prompt.text.clear(),
            KeyCode::Char(c) if !ctrl => prompt.text.push(c),
            _ => {}
        }
    }

    fn submit(&mut self, prompt: Prompt) {
        match prompt.kind {
            PromptKind::Filter => match Filter::parse(&prompt.text) {
                Ok(filter) => {
                    self.prompt = None;
                    self.set_filter(filter, prompt.text.trim().to_owned());
                }
                // Keep the prompt open so the term can be fixed.
                Err(e) => self.say_error(&e.to_string()),
            },
            PromptKind::WritePcap => {
                self.prompt = None;
                let path = prompt.text.trim().to_owned();
                match self.shown_pcap() {
                    Ok(pcap) => {
                        let mut done = format!("wrote {} packets to {path}", pcap.written);
                        if pcap.skipped > 0 {
                            done.push_str(&format!(" ({} IPv6 skipped)", pcap.skipped));
                        }
                        self.outputs.push(Output {
                            failed: format!("cannot write {path}"),
                            files: vec![OutputFile {
                                path,
                                bytes: pcap.bytes,
                            }],
                            done,
                        });
                    }
                    Err(e) => self.say_error(&format!("cannot write {path}: {e}")),
                }
            }
            PromptKind::ExportRealm => {
                self.prompt = None;
                let base = prompt.text.trim().to_owned();
                match self.export_realm(&base) {
                    Some(export) => {
                        let mut done = format!(
                            "realm 0x{:08x}: {} bytes to device in {}, {} bytes from device in {}",
                            export.realm,
                            export.to_device.bytes.len(),
                            export.to_device.path,
                            export.from_device.bytes.len(),
                            export.from_device.path
                        );
                        if export.gaps > 0 {
                            done.push_str(&format!(" ({} gaps)", export.gaps));
                        }
                        self.outputs.push(Output {
                            files: vec![export.to_device, export.from_device],
                            done,
                            failed: "cannot export".to_owned(),
                        });
                    }
                    None => self.say_error("cannot export: no realm selected"),
                }
            }
        }
    }

    fn say(&mut self, text: &str) {
        self.note = Some(Note {
            text: text.to_owned(),
            error: false,
        });
    }

    fn say_error(&mut self, text: &str) {
        self.note = Some(Note {
            text: text.to_owned(),
            error: true,
        });
    }

    /// Applies a filter: the shown list is rebuilt from the retained packets.
    pub fn set_filter(&mut self, filter: Filter, text: String) {
        self.filter = filter;
        self.filter_text = text;
        self.shown = self
            .packets
            .iter()
            .filter(|p| self.filter.matches(&p.subject()))
            .map(|p| p.seq)
            .collect();
        self.list_offset = 0;
        self.fix_selection();
        self.detail = None;
    }

    fn page(&self) -> isize {
        let area = match (self.view, self.focus) {
            (View::Realms, _) => self.areas.realms,
            (_, Focus::List) => self.areas.list,
            (_, Focus::Tree) => self.areas.tree,
            (_, Focus::Hex) => self.areas.hex,
        };
        isize::try_from(area.height.saturating_sub(2).max(1)).unwrap_or(1)
    }

    fn cycle_focus(&mut self, forward: bool) {
        self.focus = match (self.focus, forward) {
            (Focus::List, true) | (Focus::Hex, false) => Focus::Tree,
            (Focus::Tree, true) | (Focus::List, false) => Focus::Hex,
            (Focus::Hex, true) | (Focus::Tree, false) => Focus::List,
        };
        if self.focus == Focus::Hex && self.hex_cursor.is_none() {
            self.hex_cursor = self.highlighted_range().map(|r| r.start).or(Some(0));
        }
    }

    /// Follow mode again, like `F` in `less`: select the newest packet.
    pub fn resume_follow(&mut self) {
        self.follow = true;
        self.new_while_paused = 0;
        self.fix_selection();
    }

    fn pause(&mut self) {
        if self.follow {
            self.follow = false;
            self.new_while_paused = 0;
        }
    }

    fn go_first(&mut self) {
        match self.view {
            View::Realms => self.realm_cursor = 0,
            _ => match self.focus {
                Focus::List => {
                    self.pause();
                    self.select_row(0);
                }
                Focus::Tree => self.set_tree_row(0),
                Focus::Hex => self.set_hex_cursor(0),
            },
        }
    }

    fn move_by(&mut self, delta: isize) {
        match self.view {
            View::Realms => {
                let last = self.model.realm_count().saturating_sub(1);
                self.realm_cursor = self.realm_cursor.saturating_add_signed(delta).min(last);
            }
            _ => match self.focus {
                Focus::List => self.move_list(delta),
                Focus::Tree => {
                    let row = self.tree_cursor_row().saturating_add_signed(delta);
                    self.set_tree_row(row);
                }
                Focus::Hex => {
                    let width = self.areas.hex_width.max(1) as isize;
                    let at = self.hex_cursor.unwrap_or(0);
                    self.set_hex_cursor(at.saturating_add_signed(delta * width));
                }
            },
        }
    }

    /// Moves the list selection; any move pauses following.
    fn move_list(&mut self, delta: isize) {
        if self.shown.is_empty() {
            return;
        }
        let row = self.selected_row().unwrap_or(self.shown.len() - 1);
        let target = row.saturating_add_signed(delta).min(self.shown.len() - 1);
        if target != row || delta < 0 {
            self.pause();
        }
        self.select_row(target);
    }

    fn select_row(&mut self, row: usize) {
        if let Some(&seq) = self.shown.get(row) {
            self.selected = Some(seq);
        }
    }

    fn set_tree_row(&mut self, row: usize) {
        let Some(detail) = self.detail() else { return };
        let Some(last) = detail.rows.len().checked_sub(1) else {
            return;
        };
        let path = detail.rows[row.min(last)].path.clone();
        self.tree_cursor = path;
        if self.focus != Focus::Hex {
            self.hex_cursor = None;
        }
    }

    fn set_hex_cursor(&mut self, offset: usize) {
        let Some(detail) = self.detail() else { return };
        let Some(last) = detail.bytes.len().checked_sub(1) else {
            return;
        };
        let offset = offset.min(last);
        let path = path_at(&detail.description.fields, offset);
        self.hex_cursor = Some(offset);
        if let Some(path) = path {
            // Open the field's ancestors so the tree can show it.
            for depth in 1..path.len() {
                self.collapsed.remove(&path[..depth]);
            }
            self.tree_cursor = path;
            self.refresh_rows();
        }
    }

    fn left(&mut self) {
        match (self.view, self.focus) {
            (View::Packets, Focus::Tree) => {
                let row = self.tree_cursor_row();
                let Some(r) = self.detail().and_then(|d| d.rows.get(row)).cloned() else {
                    return;
                };
                if r.has_children && r.expanded {
                    self.collapsed.insert(r.path);
                    self.refresh_rows();
                } else if r.path.len() > 1 {
                    self.tree_cursor = r.path[..r.path.len() - 1].to_vec();
                }
            }
            (View::Packets, Focus::Hex) => {
                let at = self.hex_cursor.unwrap_or(0);
                self.set_hex_cursor(at.saturating_sub(1));
            }
            _ => {}
        }
    }

    fn right(&mut self) {
        match (self.view, self.focus) {
            (View::Packets, Focus::Tree) => {
                let row = self.tree_cursor_row();
                let Some(r) = self.detail().and_then(|d| d.rows.get(row)).cloned() else {
                    return;
                };
                if r.has_children && !r.expanded {
                    self.collapsed.remove(&r.path);
                    self.refresh_rows();
                } else {
                    self.set_tree_row(row + 1);
                }
            }
            (View::Packets, Focus::Hex) => {
                let at = self.hex_cursor.map_or(0, |c| c + 1);
                self.set_hex_cursor(at);
            }
            _ => {}
        }
    }

    /// Enter/Space: expand or collapse the field under the cursor; on the
    /// list, move the focus to the tree.
    fn toggle(&mut self) {
        if self.view != View::Packets {
            return;
        }
        match self.focus {
            Focus::List => self.focus = Focus::Tree,
            Focus::Tree => {
                let row = self.tree_cursor_row();
                let Some(r) = self.detail().and_then(|d| d.rows.get(row)).cloned() else {
                    return;
                };
                if r.has_children {
                    if r.expanded {
                        self.collapsed.insert(r.path);
                    } else {
                        self.collapsed.remove(&r.path);
                    }
                    self.refresh_rows();
                }
            }
            Focus::Hex => {}
        }
    }

    /// Collapses every field below the roots.
    fn collapse_all(&mut self) {
        let Some(detail) = self.detail() else { return };
        let paths: Vec<FieldPath> = detail
            .rows
            .iter()
            .filter(|r| r.has_children && r.depth >= 1)
            .map(|r| r.path.clone())
            .collect();
        self.collapsed.extend(paths);
        self.tree_cursor.truncate(1);
        self.refresh_rows();
    }

    // ------------------------------------------------------------------
    // Mouse

    pub fn handle_mouse(&mut self, mouse: MouseEvent) {
        let at = Position::new(mouse.column, mouse.row);
        let areas = self.areas;
        let step = match mouse.kind {
            MouseEventKind::ScrollUp => -WHEEL_STEP,
            MouseEventKind::ScrollDown => WHEEL_STEP,
            MouseEventKind::Down(MouseButton::Left) => 0,
            _ => return,
        };
        let inner_row = |area: Rect, skip: u16| -> Option<usize> {
            (area.contains(at) && at.y >= area.y + skip).then(|| usize::from(at.y - area.y - skip))
        };
        match self.view {
            View::Help => {}
            View::Realms => {
                if step != 0 {
                    if areas.realms.contains(at) {
                        self.move_by(step);
                    }
                } else if let Some(row) = inner_row(areas.realms, 2) {
                    let row = row + self.realm_offset;
                    if row < self.model.realm_count() {
                        self.realm_cursor = row;
                    }
                }
            }
            View::Packets => {
                if areas.list.contains(at) {
                    self.focus = Focus::List;
                    if step != 0 {
                        self.move_list(step);
                    } else if let Some(row) = inner_row(areas.list, 2) {
                        let row = row + self.list_offset;
                        if row < self.shown.len() {
                            self.pause();
                            self.select_row(row);
                        }
                    }
                } else if areas.tree.contains(at) {
                    self.focus = Focus::Tree;
                    if step != 0 {
                        let row = self.tree_cursor_row().saturating_add_signed(step);
                        self.set_tree_row(row);
                    } else if let Some(row) = inner_row(areas.tree, 1) {
                        self.set_tree_row(row + self.tree_offset);
                    }
                } else if areas.hex.contains(at) {
                    self.focus = Focus::Hex;
                    if step != 0 {
                        self.hex_offset = self.hex_offset.saturating_add_signed(step);
                    } else if let Some(line) = inner_row(areas.hex, 1) {
                        let width = areas.hex_width.max(1);
                        let column = usize::from(at.x - areas.hex.x);
                        let byte = if (6..6 + 3 * width).contains(&column) {
                            Some((column - 6) / 3)
                        } else {
                            column.checked_sub(7 + 3 * width).filter(|&b| b < width)
                        };
                        if let Some(byte) = byte {
                            self.set_hex_cursor((line + self.hex_offset) * width + byte);
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Saving: the bytes are built here, the files written by the driver

    /// The packets currently shown (after the filter) as a pcap file.
    /// IPv6 datagrams cannot go in the writer's IPv4 frames and are skipped.
    pub fn shown_pcap(&self) -> io::Result<PcapBytes> {
        udp_pcap_bytes(
            self.shown
                .iter()
                .filter_map(|&seq| self.packet(seq))
                .map(|p| &p.record),
        )
    }

    /// The realm `e` exports: the selected one in the realms view, else the
    /// selected packet's.
    pub fn export_target(&self) -> Option<(SessionKey, u32)> {
        match self.view {
            View::Realms => self
                .model
                .realms()
                .get(self.realm_cursor)
                .map(|r| (r.session, r.realm)),
            _ => {
                let packet = self.selected()?;
                Some((packet.record.session(), packet.realm?))
            }
        }
    }

    /// The export target's stream like `decode --follow` (the decode layer's
    /// [`Follower`], fed with the retained packets of the realm's session),
    /// each direction for its own file: `BASE-to-device.bin`,
    /// `BASE-from-device.bin`.
    pub fn export_realm(&self, base: &str) -> Option<RealmExport> {
        let (session, realm) = self.export_target()?;
        let mut follower = Follower::new(realm);
        for packet in self
            .packets
            .iter()
            .filter(|p| p.record.session() == session)
        {
            follower.add(&packet.record);
        }
        let followed = follower.finish();
        Some(RealmExport {
            realm,
            gaps: followed.gaps().len(),
            to_device: OutputFile {
                path: format!("{base}-to-device.bin"),
                bytes: followed.to_device().to_vec(),
            },
            from_device: OutputFile {
                path: format!("{base}-from-device.bin"),
                bytes: followed.from_device().to_vec(),
            },
        })
    }

    /// Saves the app asked for since the last call, for the driver to write.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Tells the user how writing `output` went.
    pub fn output_written(&mut self, output: &Output, result: io::Result<()>) {
        match result {
            Ok(()) => self.say(&output.done),
            Err(e) => self.say_error(&format!("{}: {e}", output.failed)),
        }
    }
}

/// What `e` saves: the realm's two streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmExport {
    pub realm: u32,
    /// Holes in either direction (bytes the capture or the ring lacks).
    pub gaps: usize,
    pub to_device: OutputFile,
    pub from_device: OutputFile,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// A save the user asked for: the files, what to say once they are written,
/// and what a failure is prefixed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub files: Vec<OutputFile>,
    pub done: String,
    pub failed: String,
}
