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

mod keys;
mod mouse;
mod save;

pub use self::save::{Output, OutputFile, RealmExport};

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
}
